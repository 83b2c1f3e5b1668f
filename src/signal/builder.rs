//! The settings of a signal service.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::registry::Registry;
use super::Service;

/// The default [`body_limit`](Builder::body_limit): 10 KiB, as
/// koa-signal's `'10kb'`.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024;

/// The default [`peer_queue_bytes`](Builder::peer_queue_bytes): 64 KiB.
pub const DEFAULT_PEER_QUEUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) body_limit: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) peer_queue_bytes: usize,
    pub(crate) max_peers: Option<usize>,
    pub(crate) max_swarms: Option<usize>,
    pub(crate) envelope: bool,
    pub(crate) echo: bool,
    pub(crate) allow_origin: Option<HeaderValue>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_limit: DEFAULT_BODY_LIMIT,
            keep_alive: crate::Heartbeat::DEFAULT_INTERVAL,
            peer_queue_bytes: DEFAULT_PEER_QUEUE_BYTES,
            max_peers: None,
            max_swarms: None,
            envelope: true,
            echo: true,
            allow_origin: None,
        }
    }
}

/// Settings of a signal [`Service`]; see the Defaults table in the
/// [module docs](super).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// The largest POST body, in bytes; a larger one gets `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// How often an idle stream gets the keep-alive comment `:\n\n` (the
    /// first one this long after the stream opens, and after each event).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.config.keep_alive = interval;
        self
    }

    /// How many bytes of events may wait unsent for one peer. A peer whose
    /// queue would grow past it reads too slowly: it is disconnected and
    /// counts as leaving, so it never holds up the swarm or grows memory.
    /// One event larger than the limit is still sent to a peer with nothing
    /// waiting.
    ///
    /// The queue fills only once the socket's send buffer and hyper's write
    /// buffer are full (a few MiB on Linux loopback), so a peer is found to
    /// be slow after that much plus this limit. Its connection then stays
    /// open, holding only those buffers, until the client reads or goes
    /// away; it is already out of the swarm.
    pub fn peer_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.peer_queue_bytes = bytes;
        self
    }

    /// The most peers in one swarm, the initiator included; one more `GET
    /// /{id}` gets `503`.
    pub fn max_peers(mut self, peers: usize) -> Self {
        self.config.max_peers = Some(peers);
        self
    }

    /// The most open swarms; one more `GET /` gets `503`.
    pub fn max_swarms(mut self, swarms: usize) -> Self {
        self.config.max_swarms = Some(swarms);
        self
    }

    /// The data of a `signal` event: with `true` (the default) the object
    /// `{"from": sender_cid, "data": data}`; with `false` exactly the POSTed
    /// `data`, as koa-signal sent it (the sender is then unknown to the
    /// receiver).
    pub fn envelope(mut self, yes: bool) -> Self {
        self.config.envelope = yes;
        self
    }

    /// Does a broadcast reach its sender too? Yes by default, as in
    /// koa-signal.
    pub fn echo(mut self, yes: bool) -> Self {
        self.config.echo = yes;
        self
    }

    /// Lets pages from `origin` (`"*"` for any, or one origin such as
    /// `"https://app.example"`) use the service across origins (CORS):
    /// every answer gets `Access-Control-Allow-Origin`, and an `OPTIONS`
    /// preflight gets `204` with the allowed methods (`GET, POST`) and
    /// request header (`Content-Type`), cached for 10 minutes. Off by
    /// default: `OPTIONS` gets `405` like any other method.
    ///
    /// # Examples
    ///
    /// ```
    /// use delayed_response::signal;
    /// use http::HeaderValue;
    ///
    /// let signal = signal::Service::builder()
    ///     .allow_origin(HeaderValue::from_static("https://app.example"))
    ///     .build();
    /// # let _ = signal;
    /// ```
    pub fn allow_origin(mut self, origin: HeaderValue) -> Self {
        self.config.allow_origin = Some(origin);
        self
    }

    /// The service.
    pub fn build(self) -> Service {
        Service::from_registry(Arc::new(Registry::new(self.config)))
    }
}
