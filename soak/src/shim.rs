//! The one place that names the crate's service types, so a rename
//! (`pipe::Pipe` → `pipe::Service`, `signal::Signal` → `signal::Service`,
//! `park::StatusService` → `park::Service`) touches only this file.

use std::time::Duration;

use delayed_response::Heartbeat;

/// The pipe of the soak: `pipe_server`'s routes, with short timers so that
/// senders that vanished are found quickly.
pub fn pipe() -> delayed_response::pipe::Pipe {
    delayed_response::pipe::Pipe::builder()
        .heartbeat(Heartbeat::every(Duration::from_millis(500)))
        .ttl(Duration::from_secs(5))
        .max_upload_bytes(4 << 20)
        .reservations(true)
        .build()
}

/// The signal service of `signal_server`, with a short keep-alive and a
/// small per-peer queue so that slow peers are cut within the run.
pub fn signal() -> delayed_response::signal::Signal {
    delayed_response::signal::Signal::builder()
        .keep_alive(Duration::from_millis(500))
        .peer_queue_bytes(16 * 1024)
        .build()
}

/// The status service of `async_jobs`' store.
pub fn park_status(store: delayed_response::park::Store) -> delayed_response::park::StatusService {
    delayed_response::park::StatusService::new(store)
}
