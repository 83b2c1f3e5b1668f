//! The settings of a signal service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::registry::Registry;
use super::Service;
use crate::backplane::SwarmBackplane;
use crate::limit::Rate;

/// The default [`body_limit`](Builder::body_limit): 10 KiB, as
/// koa-signal's `'10kb'`.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024;

/// The default [`peer_queue_bytes`](Builder::peer_queue_bytes): 64 KiB.
pub const DEFAULT_PEER_QUEUE_BYTES: usize = 64 * 1024;

/// The default [`max_peers_per_client`](Builder::max_peers_per_client): 64
/// open streams.
pub const DEFAULT_MAX_PEERS_PER_CLIENT: usize = 64;

/// The default [`max_swarms_per_client`](Builder::max_swarms_per_client): 16
/// open swarms.
pub const DEFAULT_MAX_SWARMS_PER_CLIENT: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) body_limit: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) peer_queue_bytes: usize,
    pub(crate) max_peers: Option<usize>,
    pub(crate) max_swarms: Option<usize>,
    pub(crate) max_peers_per_client: usize,
    pub(crate) max_swarms_per_client: usize,
    /// Signals a second per client, and the burst.
    pub(crate) signal_rate_per_client: Option<Rate>,
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
            max_peers_per_client: DEFAULT_MAX_PEERS_PER_CLIENT,
            max_swarms_per_client: DEFAULT_MAX_SWARMS_PER_CLIENT,
            signal_rate_per_client: None,
            envelope: true,
            echo: true,
            allow_origin: None,
        }
    }
}

/// Settings of a signal [`Service`]; see the Defaults table in the
/// [module docs](super).
#[derive(Clone, Default)]
#[must_use]
pub struct Builder {
    config: Config,
    backplane: Option<Arc<dyn SwarmBackplane>>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("backplane", &self.backplane.is_some())
            .finish()
    }
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

    /// The most streams one client may hold open at once, over every swarm,
    /// as initiator or joiner (default 64,
    /// [`DEFAULT_MAX_PEERS_PER_CLIENT`]). Past it, its next `GET` gets `429
    /// Too Many Requests` with `Retry-After: 5`, while other clients go on.
    ///
    /// A client is told apart by [`ClientKey`]: the application's key in
    /// the request's extensions, else the peer's address (see
    /// [`limit`](crate::limit)); behind a reverse proxy, supply a
    /// [`ClientKey`], or every peer is one client. A stream counts from its
    /// `connect` event until it is over for any reason (the client left, its
    /// swarm closed, it was too slow and its connection ended, shutdown).
    /// `usize::MAX` for no cap.
    ///
    /// [`ClientKey`]: crate::limit::ClientKey
    pub fn max_peers_per_client(mut self, peers: usize) -> Self {
        self.config.max_peers_per_client = peers;
        self
    }

    /// The most open swarms one client may have created (default 16,
    /// [`DEFAULT_MAX_SWARMS_PER_CLIENT`]), so that one client cannot fill
    /// [`max_swarms`](Self::max_swarms). Past it, its next `GET /` gets `429
    /// Too Many Requests` with `Retry-After: 5`; it may still join swarms,
    /// and other clients go on creating. A swarm counts until it closes
    /// (its initiator left). Clients are told apart as for
    /// [`max_peers_per_client`](Self::max_peers_per_client). `usize::MAX`
    /// for no cap (each swarm still holds its initiator's stream, so
    /// [`max_peers_per_client`](Self::max_peers_per_client) bounds it too).
    pub fn max_swarms_per_client(mut self, swarms: usize) -> Self {
        self.config.max_swarms_per_client = swarms;
        self
    }

    /// A token bucket on each client's `POST`s: the rate's `burst` at once,
    /// refilled at its `per_second`. Past it, a POST gets `429 Too Many
    /// Requests` with `Retry-After` (the whole seconds until a token is
    /// back), before its body is read; other clients are unaffected. Every
    /// POST counts, sent or refused. Off by default: how fast signals come
    /// depends on the application (WebRTC's trickled ICE candidates arrive
    /// in bursts), and one POST costs the server at most
    /// [`body_limit`](Self::body_limit) and one write per peer, each
    /// bounded by [`peer_queue_bytes`](Self::peer_queue_bytes). See
    /// [`Rate::per_second`] for a rate that is not a positive, finite
    /// number.
    ///
    /// # Examples
    ///
    /// ```
    /// use delayed_response::{limit::Rate, signal};
    ///
    /// // 10 signals a second per client, bursts of 50.
    /// let signal = signal::Service::builder()
    ///     .signal_rate_per_client(Rate::per_second(10.0).burst(50))
    ///     .build();
    /// # let _ = signal;
    /// ```
    pub fn signal_rate_per_client(mut self, rate: Rate) -> Self {
        self.config.signal_rate_per_client = Some(rate);
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

    /// Where the swarms live, so that several instances of the service
    /// serve the same swarms (default: none, this instance's memory). See
    /// [Several instances](super#several-instances).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), delayed_response::Error> {
    /// use std::sync::Arc;
    /// use delayed_response::backplane::RedisBackplane;
    /// use delayed_response::signal;
    ///
    /// let backplane = RedisBackplane::connect("redis://127.0.0.1:6379").await?;
    /// let signal = signal::Service::builder()
    ///     .backplane(Arc::new(backplane))
    ///     .build();
    /// # let _ = signal;
    /// # Ok(())
    /// # }
    /// ```
    pub fn backplane(mut self, backplane: Arc<dyn SwarmBackplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// The service.
    pub fn build(self) -> Service {
        Service::from_registry(Arc::new(Registry::new(self.config, self.backplane)))
    }
}
