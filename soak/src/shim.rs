//! The one place that names the crate's service types, so a rename
//! (`pipe::Pipe` → `pipe::Service`, `signal::Signal` → `signal::Service`,
//! `park::StatusService` → `park::Service`) touches only this file.
//!
//! Per-client caps: the well-behaved clients all come from 127.0.0.1 and
//! the misbehaving ones from 127.0.0.2 (see `rude::connect`), so each group
//! is one client to the services. The caps are the defaults, which the
//! four well-behaved clients stay far below, except where said.

use std::time::Duration;

use delayed_response::hub::{Hub, Namespace, Publishers};
use delayed_response::Heartbeat;

/// The pipe of the soak: `pipe_server`'s routes, with short timers so that
/// senders that vanished are found quickly.
pub fn pipe() -> delayed_response::pipe::Service {
    delayed_response::pipe::Service::builder()
        .heartbeat(Heartbeat::every(Duration::from_millis(500)))
        .ttl(Duration::from_secs(5))
        .max_upload_bytes(4 << 20)
        .reservations(true)
        .build()
}

/// The signal service of `signal_server`, with a short keep-alive and a
/// small per-peer queue so that slow peers are cut within the run.
pub fn signal() -> delayed_response::signal::Service {
    delayed_response::signal::Service::builder()
        .keep_alive(Duration::from_millis(500))
        .peer_queue_bytes(16 * 1024)
        .build()
}

/// The status service of `async_jobs`' store.
pub fn park_status(store: delayed_response::park::Store) -> delayed_response::park::Service {
    delayed_response::park::Service::new(store)
}

/// The hub of `hub_server`, anonymous clients publishing too, with a short
/// keep-alive, long-poll wait and lease, and a small per-stream queue, so
/// that vanished, slow and silent clients are found within the run.
///
/// History is what the clients need, no more, since it stays in the heap
/// after the run (the hub drops it by age only when a channel is used
/// again, or at its housekeeping, up to a minute apart), where the harness
/// compares the heap with its baseline: the well-behaved clients' channels
/// (`soak.c{n}`) keep 8 messages (they resume from the message just before),
/// the misbehaving clients' (`r{n}`, flooded with 4 KB messages) none. No
/// connect or publish rate: the well-behaved clients' fixed pace asks more
/// than the defaults (10 connects a second per address) by design; the
/// connection cap stays (64 per address).
pub fn hub() -> Hub {
    Hub::builder()
        .keep_alive(Duration::from_millis(500))
        .max_wait(Duration::from_secs(3))
        .poll_lease(Duration::from_secs(2))
        .grace(Duration::from_millis(500))
        .queue_bytes(32 * 1024)
        .default_namespace(
            Namespace::new()
                .history(8, Duration::from_secs(60))
                .publishers(Publishers::Anyone),
        )
        .namespace(
            "r",
            Namespace::new()
                .history(0, Duration::from_secs(1))
                .publishers(Publishers::Anyone),
        )
        .publish_rate(None)
        .connect_rate(None)
        .build()
}

/// The HTTP service of `hub`.
pub fn hub_service(hub: &Hub) -> delayed_response::hub::Service {
    hub.service()
}
