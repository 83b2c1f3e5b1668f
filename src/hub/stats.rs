//! Counters behind [`Hub::stats`](super::Hub::stats).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::time::Instant;

use crate::http::lock;

/// A snapshot of a hub, from [`Hub::stats`](super::Hub::stats) or `GET
/// /stats` (as JSON with these field names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Channels with a subscriber on this node.
    pub channels: usize,
    /// Open streams and in-process subscriptions on this node, and long-poll
    /// clients within their lease.
    pub connections: usize,
    /// Distinct identified users among them.
    pub users: usize,
    /// Messages published through this node, since it started.
    pub messages_in: u64,
    /// Messages handed to this node's subscribers (one per subscriber),
    /// since it started.
    pub messages_out: u64,
    /// `messages_in` per second, over the time since the previous snapshot
    /// (at least one second).
    pub messages_in_per_sec: f64,
    /// `messages_out` per second, likewise.
    pub messages_out_per_sec: f64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    messages_in: u64,
    messages_out: u64,
    rates: (f64, f64),
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            window: Mutex::new(Window {
                start: Instant::now(),
                messages_in: 0,
                messages_out: 0,
                rates: (0.0, 0.0),
            }),
        }
    }
}

impl Counters {
    pub(crate) fn count_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_out(&self, n: usize) {
        self.messages_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Totals and rates; a window of at least a second rolls over here.
    pub(crate) fn read(&self) -> (u64, u64, f64, f64) {
        let messages_in = self.messages_in.load(Ordering::Relaxed);
        let messages_out = self.messages_out.load(Ordering::Relaxed);
        let mut w = lock(&self.window);
        let now = Instant::now();
        let secs = now.duration_since(w.start).as_secs_f64();
        if secs >= 1.0 {
            w.rates = (
                (messages_in - w.messages_in) as f64 / secs,
                (messages_out - w.messages_out) as f64 / secs,
            );
            w.start = now;
            w.messages_in = messages_in;
            w.messages_out = messages_out;
        }
        (messages_in, messages_out, w.rates.0, w.rates.1)
    }
}
