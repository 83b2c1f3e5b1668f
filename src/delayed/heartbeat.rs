//! Heartbeat settings.

use std::time::Duration;

use bytes::Bytes;

/// When and what a long-poll response writes while it waits for its result.
///
/// The first heartbeat goes out `initial_delay` after the response starts, then
/// one every `interval`; a progress write from a [`Completion`](crate::Completion)
/// restarts the count, so heartbeats fill only the silences. Heartbeats stop the
/// moment the result starts: they are never mixed into a rendered result.
///
/// After its first heartbeat (and after the first one that follows a progress
/// write), a response beats with the other held responses of the same
/// interval on the same runtime, from one shared timer per eighth of the
/// interval instead of a timer of its own: the next heartbeat may then come up
/// to `interval / 8` early, never late, so two heartbeats are never more than
/// `interval` apart. (10,000 responses cost 8 timer wake-ups per interval
/// instead of 10,000.) The first response of an interval keeps its exact
/// times.
///
/// | setting | default |
/// |---|---|
/// | `interval` | 15 s ([`Heartbeat::DEFAULT_INTERVAL`]) |
/// | `initial_delay` | the interval |
/// | bytes | one space, `" "` (whitespace is legal around JSON) |
///
/// 15 s keeps a connection alive behind Heroku (first byte within 30 s, then one
/// at least every 55 s), AWS ALB and nginx (60 s idle) and Cloudflare (100 s).
///
/// An interval or initial delay under 1 ms is raised to 1 ms, and a response
/// raises the interval further to its
/// [`min_interval`](crate::DelayedResponse::min_interval) (10 ms by default).
/// A duration too long to count (`Duration::MAX`) means never. Empty bytes write
/// nothing (the ticks still run [`on_tick`](crate::DelayedResponse::on_tick)),
/// which does not keep a proxy from closing the connection.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use delayed_response::Heartbeat;
///
/// // First byte after 1 s, then one every 20 s.
/// let hb = Heartbeat::every(Duration::from_secs(20)).after(Duration::from_secs(1));
/// assert_eq!(hb.interval(), Duration::from_secs(20));
///
/// // SSE comment lines, ignored by every EventSource.
/// let sse = Heartbeat::sse(Duration::from_secs(15));
/// assert_eq!(&sse.payload()[..], b":\n\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Heartbeat {
    interval: Duration,
    initial_delay: Duration,
    bytes: Bytes,
}

const MIN_PERIOD: Duration = Duration::from_millis(1);

impl Heartbeat {
    /// The default interval: 15 seconds, the crate's one keep-alive default
    /// (heartbeats, SSE keep-alive comments, the services built on them).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

    /// A heartbeat every `interval`, the first one `interval` after the start.
    pub fn every(interval: Duration) -> Self {
        let interval = interval.max(MIN_PERIOD);
        Heartbeat {
            interval,
            initial_delay: interval,
            bytes: Bytes::from_static(b" "),
        }
    }

    /// SSE keep-alive: a comment line (`:\n\n`), which every `EventSource`
    /// ignores, every `interval` (the first one `interval` after the start).
    pub fn sse(interval: Duration) -> Self {
        Heartbeat::every(interval).bytes(Bytes::from_static(b":\n\n"))
    }

    /// Sets when the first heartbeat goes out, counted from the start.
    ///
    /// This is also how long a result has to arrive and still get its real
    /// status: once the first heartbeat is out, the head has been sent.
    pub fn after(mut self, initial_delay: Duration) -> Self {
        self.initial_delay = initial_delay.max(MIN_PERIOD);
        self
    }

    /// Sets the bytes written at each heartbeat (default `" "`).
    pub fn bytes(mut self, bytes: impl Into<Bytes>) -> Self {
        self.bytes = bytes.into();
        self
    }

    /// The time between two heartbeats.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The time from the start to the first heartbeat.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// The bytes written at each heartbeat.
    pub fn payload(&self) -> &Bytes {
        &self.bytes
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::every(Heartbeat::DEFAULT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_periods_are_raised_to_one_millisecond() {
        let hb = Heartbeat::every(Duration::ZERO).after(Duration::ZERO);
        assert_eq!(hb.interval(), MIN_PERIOD);
        assert_eq!(hb.initial_delay(), MIN_PERIOD);
    }

    #[test]
    fn sse_heartbeat_is_a_comment_every_interval() {
        let hb = Heartbeat::sse(Duration::from_secs(3));
        assert_eq!(&hb.payload()[..], b":\n\n");
        assert_eq!(hb.interval(), Duration::from_secs(3));
        assert_eq!(hb.initial_delay(), Duration::from_secs(3));
    }

    #[test]
    fn initial_delay_defaults_to_the_interval() {
        let hb = Heartbeat::every(Duration::from_secs(3));
        assert_eq!(hb.initial_delay(), Duration::from_secs(3));
        assert_eq!(hb.payload(), &Bytes::from_static(b" "));
    }
}
