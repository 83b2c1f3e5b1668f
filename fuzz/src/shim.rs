//! The one place that names the crate's service types, so a rename
//! (`pipe::Pipe` → `pipe::Service`, `signal::Signal` → `signal::Service`,
//! `park::StatusService` → `park::Service`) touches only this file. The
//! targets call the services through `hyper::service::Service`.

use std::time::Duration;

use bytes::Bytes;
use delayed_response::Heartbeat;

/// The pipe's settings in the targets: short timers (virtual time anyway),
/// reservations on, small limits so that their edges are reached.
pub fn pipe(max_upload_bytes: u64, required_referer: bool) -> delayed_response::pipe::Pipe {
    let mut builder = delayed_response::pipe::Pipe::builder()
        .heartbeat(Heartbeat::every(Duration::from_secs(1)))
        .ttl(Duration::from_secs(30))
        .max_upload_bytes(max_upload_bytes)
        .max_waiting(8)
        .reservations(true);
    if required_referer {
        builder = builder.required_referer("http://fuzz.test/page");
    }
    builder.build()
}

/// A pipe whose `opened` line is the download URL, a tab and the upload's
/// query string as the pipe saw it (or `-`), so the query target can check
/// that the query reaches the hooks unchanged.
pub fn pipe_echoing_query() -> delayed_response::pipe::Pipe {
    delayed_response::pipe::Pipe::builder()
        .heartbeat(Heartbeat::every(Duration::from_secs(1)))
        .ttl(Duration::from_secs(30))
        .reservations(true)
        .hooks(EchoQuery)
        .build()
}

struct EchoQuery;

impl delayed_response::pipe::Hooks for EchoQuery {
    fn opened(&self, socket: &delayed_response::pipe::Socket) -> Bytes {
        format!(
            "{}\t{}\n",
            socket.url,
            socket.query.as_deref().unwrap_or("-")
        )
        .into()
    }
}

/// The pipe's number of reserved or waiting sockets.
pub fn pipe_waiting(pipe: &delayed_response::pipe::Pipe) -> usize {
    pipe.waiting()
}

/// The signal service, with a small body limit and peer queue so their
/// edges are reached.
pub fn signal() -> delayed_response::signal::Signal {
    delayed_response::signal::Signal::builder()
        .keep_alive(Duration::from_secs(5))
        .body_limit(4096)
        .peer_queue_bytes(16 * 1024)
        .max_peers(4)
        .build()
}

/// The status service of a park store.
pub fn park_status(store: delayed_response::park::Store) -> delayed_response::park::StatusService {
    delayed_response::park::StatusService::new(store)
}
