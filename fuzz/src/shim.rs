//! The one place that names the crate's service types, so a rename
//! (`pipe::Pipe` → `pipe::Service`, `signal::Signal` → `signal::Service`,
//! `park::StatusService` → `park::Service`) touches only this file. The
//! targets call the services through `hyper::service::Service`.
//!
//! Every request of a target comes from one client: in-process requests
//! carry no `RemoteAddr`, so the per-client caps see one shared key. The
//! shims say which caps each target reaches.

use std::time::Duration;

use bytes::Bytes;
use delayed_response::hub::{Hub, Namespace, Publishers};
use delayed_response::Heartbeat;

/// The pipe type of the targets.
pub type Pipe = delayed_response::pipe::Service;

/// The pipe's settings in the targets: short timers (virtual time anyway),
/// reservations on, small limits so that their edges are reached. With
/// `per_client` the per-client caps (uploads waiting, reservations) are
/// that small too, so that `429` is reached; else they are the defaults
/// (100), which a script of at most 12 requests never reaches.
pub fn pipe(max_upload_bytes: u64, required_referer: bool, per_client: Option<usize>) -> Pipe {
    let mut builder = Pipe::builder()
        .heartbeat(Heartbeat::every(Duration::from_secs(1)))
        .ttl(Duration::from_secs(30))
        .max_upload_bytes(max_upload_bytes)
        .max_waiting(8)
        .reservations(true);
    if let Some(cap) = per_client {
        builder = builder
            .max_waiting_per_client(cap)
            .max_reservations_per_client(cap);
    }
    if required_referer {
        builder = builder.required_referer("http://fuzz.test/page");
    }
    builder.build()
}

/// A pipe in the Piping mode (Piping Server's protocol): the same timers
/// and global cap as [`pipe`], at most `max_receivers` receivers a path,
/// and the per-client cap of waiting requests when given.
pub fn piping(max_upload_bytes: u64, max_receivers: u32, per_client: Option<usize>) -> Pipe {
    let mut builder = Pipe::builder()
        .protocol(delayed_response::pipe::Protocol::Piping)
        .heartbeat(Heartbeat::every(Duration::from_secs(1)))
        .ttl(Duration::from_secs(30))
        .max_upload_bytes(max_upload_bytes)
        .max_waiting(8)
        .max_receivers(max_receivers);
    if let Some(cap) = per_client {
        builder = builder.max_waiting_per_client(cap);
    }
    builder.build()
}

/// A pipe whose `opened` line is the download URL, a tab and the upload's
/// query string as the pipe saw it (or `-`), so the query target can check
/// that the query reaches the hooks unchanged.
pub fn pipe_echoing_query() -> Pipe {
    Pipe::builder()
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

/// The pipe's number of reserved or waiting sockets (Piping mode: waiting
/// senders and receivers).
pub fn pipe_waiting(pipe: &Pipe) -> usize {
    pipe.waiting()
}

/// The Piping mode's paths in use (waiting, or busy with a transfer).
pub fn piping_paths(pipe: &Pipe) -> usize {
    pipe.paths_in_use()
}

/// The signal type of the targets.
pub type Signal = delayed_response::signal::Service;

/// The signal service, with a small body limit and peer queue so their
/// edges are reached. The per-client caps are the defaults (64 streams,
/// 16 swarms): a script opens at most 14 streams.
pub fn signal() -> Signal {
    Signal::builder()
        .keep_alive(Duration::from_secs(5))
        .body_limit(4096)
        .peer_queue_bytes(16 * 1024)
        .max_peers(4)
        .build()
}

/// The status service of a park store.
pub fn park_status(store: delayed_response::park::Store) -> delayed_response::park::Service {
    delayed_response::park::Service::new(store)
}

/// The hub type of the targets.
pub type HubService = delayed_response::hub::Service;

/// A hub where anyone may publish (the fuzz client is anonymous), with a
/// history long enough in messages and age that a cursor the hub issued in
/// a script (at most 12 requests, 120 virtual seconds each) is never
/// outrun: a reconnect with it must replay, never answer `gap`. No rate
/// limits or connection cap (every request is one client). Its `history`
/// namespace (`history.*`) keeps 2 messages, so that gaps happen too.
pub fn hub() -> Hub {
    Hub::builder()
        .keep_alive(Duration::from_secs(5))
        .body_limit(4096)
        .max_wait(Duration::from_secs(25))
        .default_namespace(
            Namespace::new()
                .history(1000, Duration::from_secs(24 * 3600))
                .publishers(Publishers::Anyone),
        )
        .namespace(
            "history.",
            Namespace::new()
                .history(2, Duration::from_secs(24 * 3600))
                .publishers(Publishers::Anyone),
        )
        .no_limits()
        .build()
}

/// The HTTP service of `hub`.
pub fn hub_service(hub: &Hub) -> HubService {
    hub.service()
}
