//! SSE signalling swarms: browsers find each other and exchange signals
//! (WebRTC offers and answers, presence) over Server-Sent Events and POSTs.
//!
//! The protocol is koa-signal's. The first peer opens an event stream with
//! `GET /` and becomes the *initiator* of a new swarm; others join with
//! `GET /{id}`; any member POSTs a `signal` to every peer or to one.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | `201`, a `text/event-stream` of a new swarm; this peer is its initiator; `503` at [`max_swarms`](SignalBuilder::max_swarms) |
//! | `GET /{id}` | `200`, a stream joined to swarm `id`; `404` if there is no such swarm; `503` at [`max_peers`](SignalBuilder::max_peers) |
//! | `POST /{id}` | sends a `signal` (body: `token`, `data`, optional `cid`); `200 OK` |
//! | other methods | `405`, `Allow: GET, POST` |
//! | other paths | `404` |
//!
//! A `GET` whose `Accept` header is present and excludes `text/event-stream`
//! (no `text/event-stream`, `text/*` or `*/*` with a `q` above 0) gets `406`.
//! Without entropy from the OS (ids cannot be made) a `GET` gets `503`. Every
//! refusal is one line of `text/plain`.
//!
//! Ids, cids and tokens are 32 lowercase hex characters (128 bits from the
//! operating system's CSPRNG). Leading slashes are collapsed (`//id` is `/id`)
//! and the query is ignored.
//!
//! # Events
//!
//! | event | to | data |
//! |---|---|---|
//! | `connect` | each new peer, first | `{"id": swarm, "cid": peer, "token": secret}` |
//! | `join` | the initiator | `{"id": swarm, "cid": joiner}` |
//! | `leave` | the initiator, when another peer leaves | `{"id": swarm, "cid": leaver}` |
//! | `signal` | every peer, or the one `cid` | `{"from": sender, "data": data}` (see [`envelope`](SignalBuilder::envelope)) |
//! | `close` | every other peer, when the initiator left; then the stream ends | `{"id": swarm}` |
//!
//! Streams carry `Content-Type: text/event-stream; charset=utf-8`,
//! `Cache-Control: no-cache` and `X-Accel-Buffering: no` (so nginx does not
//! hold events back), and no `Connection` header (HTTP/2-safe). Every peer's
//! stream is a handle-mode [`DelayedResponse`](crate::DelayedResponse) that
//! listens to the server's [`Shutdown`](crate::Shutdown) signal.
//!
//! When the initiator leaves, every other stream gets `close` and ends
//! cleanly (a browser should then `close()` its `EventSource`, which would
//! otherwise reconnect and get 404), and the swarm is
//! gone (its id gives 404). Between events the stream carries the SSE comment
//! `:\n\n` every [`keep_alive`](SignalBuilder::keep_alive) (15 s), so proxies
//! keep it open and peers that vanished without a FIN are found by a failed
//! write. A peer whose client reads too slowly (more than
//! [`peer_queue_bytes`](SignalBuilder::peer_queue_bytes) waiting) is
//! disconnected and counts as leaving; it never stalls the others.
//!
//! # POST /{id}
//!
//! The body is JSON (`application/json`, `application/*+json` types koa
//! accepted) or a form (`application/x-www-form-urlencoded`, with `qs`-style
//! brackets up to 5 levels: `data[x]=5` is `{"data": {"x": "5"}}`, `a[]=1&a[]=2`
//! and `a=1&a=2` are arrays, every form value is a string). Content types are
//! matched case-insensitively; anything else, `text/plain` included, is `415`.
//! The checks, in order:
//!
//! | check | status |
//! |---|---|
//! | path is not `/{id}`, or no such swarm | `404` |
//! | `Content-Length` over [`body_limit`](SignalBuilder::body_limit) | `413` |
//! | content type neither JSON nor form | `415` |
//! | body over the limit | `413` |
//! | body cut off, bad JSON, or JSON that is not an object or array | `400` |
//! | `token` is not the token of a current peer of this swarm | `401` |
//! | no `data` (missing or `null`; `0`, `false` and `""` are data) | `400` |
//! | `cid` is not a string | `400` |
//! | `cid` given and not a current peer (or too slow: it has just been disconnected) | `404` |
//! | sent | `200`, `OK` |
//!
//! A token belongs to one peer: the signal carries that peer's cid as
//! `from`, and the token dies when its peer leaves.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`body_limit`](SignalBuilder::body_limit) | 10 KiB ([`DEFAULT_BODY_LIMIT`]) |
//! | [`keep_alive`](SignalBuilder::keep_alive) | 15 s ([`Heartbeat::DEFAULT_INTERVAL`](crate::Heartbeat::DEFAULT_INTERVAL)) |
//! | [`peer_queue_bytes`](SignalBuilder::peer_queue_bytes) | 64 KiB ([`DEFAULT_PEER_QUEUE_BYTES`]) |
//! | [`max_peers`](SignalBuilder::max_peers) | no limit |
//! | [`max_swarms`](SignalBuilder::max_swarms) | no limit |
//! | [`envelope`](SignalBuilder::envelope) | on: `{"from", "data"}` |
//! | [`echo`](SignalBuilder::echo) | on: a broadcast reaches its sender too |
//! | [`allow_origin`](SignalBuilder::allow_origin) | none: no CORS headers, `OPTIONS` is `405` |
//!
//! # Examples
//!
//! With plain hyper, through [`server::serve`](crate::server::serve):
//!
//! ```no_run
//! use delayed_response::{server, signal::Signal};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! server::serve(listener, Signal::new(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! As a `tower::Service`, for example under axum's `Router::nest_service`:
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::signal::Signal;
//!
//! let signal = Signal::builder()
//!     .keep_alive(Duration::from_secs(20))
//!     .max_peers(16)
//!     .build();
//! // let app = axum::Router::new().nest_service("/signal", signal);
//! # let _ = signal;
//! ```

mod params;
mod registry;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

pub use service::ResponseFuture;

use registry::Registry;

/// The default [`body_limit`](SignalBuilder::body_limit): 10 KiB, as
/// koa-signal's `'10kb'`.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024;

/// The default [`peer_queue_bytes`](SignalBuilder::peer_queue_bytes): 64 KiB.
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

/// The signalling service: one registry of swarms, shared by its clones.
///
/// It is a `hyper::service::Service` and a `tower_service::Service` for
/// `Request<B>` with any body `B`; see the [module docs](self) for the
/// protocol. Cloning is cheap and every clone serves the same swarms.
#[derive(Clone)]
pub struct Signal {
    registry: Arc<Registry>,
}

impl Signal {
    /// A service with the default settings.
    pub fn new() -> Self {
        Signal::builder().build()
    }

    /// A builder for the settings.
    pub fn builder() -> SignalBuilder {
        SignalBuilder::default()
    }

    /// How many swarms are open.
    pub fn swarm_count(&self) -> usize {
        self.registry.swarm_count()
    }

    /// How many peers swarm `id` has, if it is open.
    pub fn peer_count(&self, id: &str) -> Option<usize> {
        self.registry.peer_count(id)
    }
}

impl Default for Signal {
    fn default() -> Self {
        Signal::new()
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("config", &self.registry.config)
            .field("swarms", &self.swarm_count())
            .finish()
    }
}

/// Settings of a [`Signal`] service; see the Defaults table in the
/// [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SignalBuilder {
    config: Config,
}

impl SignalBuilder {
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
    /// use delayed_response::signal::Signal;
    /// use http::HeaderValue;
    ///
    /// let signal = Signal::builder()
    ///     .allow_origin(HeaderValue::from_static("https://app.example"))
    ///     .build();
    /// # let _ = signal;
    /// ```
    pub fn allow_origin(mut self, origin: HeaderValue) -> Self {
        self.config.allow_origin = Some(origin);
        self
    }

    /// The service.
    pub fn build(self) -> Signal {
        Signal {
            registry: Arc::new(Registry::new(self.config)),
        }
    }
}
