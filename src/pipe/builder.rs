//! The pipe's settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::hooks::{DefaultHooks, Hooks};
use super::ids::{IdScheme, RandomIds};
use super::service::Service;
use crate::delayed::Heartbeat;

/// The default [`Builder::ttl`]: 600 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The default [`Builder::max_upload_bytes`]: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// The default [`Builder::max_waiting`]: 10 000 sockets.
pub const DEFAULT_MAX_WAITING: usize = 10_000;
/// The default [`Builder::max_waiting_per_client`]: 100 sockets.
pub const DEFAULT_MAX_WAITING_PER_CLIENT: usize = 100;
/// The default [`Builder::max_reservations_per_client`]: 100 reservations.
pub const DEFAULT_MAX_RESERVATIONS_PER_CLIENT: usize = 100;
/// The default [`Builder::max_receivers`]: 64 receivers on one path
/// (the largest `?n=` of the [Piping mode](Protocol::Piping)).
pub const DEFAULT_MAX_RECEIVERS: u32 = 64;

/// The default [`Builder::forward_timeout`]: 5 s.
#[cfg(feature = "redis")]
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Which protocol a pipe speaks (see the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// The ephemeral pipe: `POST /` gets a fresh download id, which one
    /// `GET` takes. The default.
    #[default]
    Ephemeral,
    /// Piping Server's protocol: any path is a pipe, sender and receivers
    /// may come in either order, `?n=N` receivers each get every byte
    /// (see [the Piping mode](super#the-piping-mode)).
    Piping,
}

/// Settings for a [`Service`]; see [`Service::builder`].
#[must_use]
#[derive(Clone)]
pub struct Builder {
    pub(super) ttl: Duration,
    pub(super) max_upload_bytes: u64,
    pub(super) max_waiting: usize,
    pub(super) max_waiting_per_client: usize,
    pub(super) max_reservations_per_client: usize,
    pub(super) reservations: bool,
    pub(super) required_referer: Option<String>,
    pub(super) heartbeat: Heartbeat,
    pub(super) base_url: Option<String>,
    pub(super) ids: Arc<dyn IdScheme>,
    pub(super) hooks: Arc<dyn Hooks>,
    pub(super) protocol: Protocol,
    pub(super) max_receivers: u32,
    pub(super) page: bool,
    #[cfg(feature = "redis")]
    pub(super) backplane: Option<Arc<dyn crate::backplane::PipeBackplane>>,
    /// The normalised URL this instance advertises.
    #[cfg(feature = "redis")]
    pub(super) advertise: Option<String>,
    #[cfg(feature = "redis")]
    pub(super) forward_timeout: Duration,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Builder");
        f.field("ttl", &self.ttl)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_waiting", &self.max_waiting)
            .field("max_waiting_per_client", &self.max_waiting_per_client)
            .field(
                "max_reservations_per_client",
                &self.max_reservations_per_client,
            )
            .field("reservations", &self.reservations)
            .field("required_referer", &self.required_referer)
            .field("heartbeat", &self.heartbeat)
            .field("base_url", &self.base_url)
            .field("protocol", &self.protocol)
            .field("max_receivers", &self.max_receivers)
            .field("page", &self.page);
        #[cfg(feature = "redis")]
        f.field("backplane", &self.backplane.is_some())
            .field("advertise", &self.advertise)
            .field("forward_timeout", &self.forward_timeout);
        f.finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ttl: DEFAULT_TTL,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_waiting: DEFAULT_MAX_WAITING,
            max_waiting_per_client: DEFAULT_MAX_WAITING_PER_CLIENT,
            max_reservations_per_client: DEFAULT_MAX_RESERVATIONS_PER_CLIENT,
            reservations: false,
            required_referer: None,
            heartbeat: Heartbeat::every(Heartbeat::DEFAULT_INTERVAL),
            base_url: None,
            ids: Arc::new(RandomIds),
            hooks: Arc::new(DefaultHooks),
            protocol: Protocol::Ephemeral,
            max_receivers: DEFAULT_MAX_RECEIVERS,
            page: true,
            #[cfg(feature = "redis")]
            backplane: None,
            #[cfg(feature = "redis")]
            advertise: None,
            #[cfg(feature = "redis")]
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
        }
    }
}

impl Builder {
    /// How long a socket waits for its receiver, counted from its creation
    /// (or its reservation; opening a reservation does not renew it). A
    /// transfer in progress has no time limit. `Duration::MAX` means no TTL
    /// (in practice: a century).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most bytes an upload may carry; `0` disables the limit. A larger
    /// declared `Content-Length` gets `413` before anything is read; a
    /// chunked upload that passes it is cut (the receiver's body ends
    /// abnormally and the sender's response says why). For multipart uploads
    /// the whole request body counts.
    pub fn max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// The most sockets that may wait (reserved or opened, not yet taken) at
    /// once, all clients together; past it, new ones get `503`.
    pub fn max_waiting(mut self, sockets: usize) -> Self {
        self.max_waiting = sockets;
        self
    }

    /// The most uploads one client may have waiting for their receivers at
    /// once; past it, its new ones get `429` with `Retry-After` (from
    /// [`Hooks::client_limit`](super::Hooks::client_limit)) while other
    /// clients go on. A client is told apart by
    /// [`ClientKey`](crate::limit::ClientKey): the application's key in the
    /// request's extensions, else the peer's address. Default: 100.
    pub fn max_waiting_per_client(mut self, sockets: usize) -> Self {
        self.max_waiting_per_client = sockets;
        self
    }

    /// The most reservations one client (the one that asked `GET /reserve`)
    /// may hold at once, opened or not, until they are taken or expire;
    /// past it, `429` as for [`max_waiting_per_client`](Self::max_waiting_per_client).
    /// Default: 100.
    pub fn max_reservations_per_client(mut self, reservations: usize) -> Self {
        self.max_reservations_per_client = reservations;
        self
    }

    /// Turns on `GET /reserve` (a download URL, and an upload URL with a
    /// secret) and `POST /reserve/{id}/{secret}` (opens it), for browsers
    /// that cannot read a streaming POST response.
    pub fn reservations(mut self, on: bool) -> Self {
        self.reservations = on;
        self
    }

    /// Requires this `Referer` on `GET /reserve`: the request passes when its
    /// `Referer` equals `url` exactly, or its `Origin` equals the origin
    /// (scheme, host and port) of `url`. Others get `403`.
    pub fn required_referer(mut self, url: impl Into<String>) -> Self {
        self.required_referer = Some(url.into());
        self
    }

    /// The heartbeat of a waiting sender's response. Its writes keep the
    /// response alive behind proxies, and a failed one is how a sender that
    /// left is noticed (within two intervals). Default: a space every 15 s.
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The base of download URLs, for a pipe behind a proxy or nested under
    /// a path (`https://example.com/pipe` gives `https://example.com/pipe/{id}`).
    /// Default: `http://{Host}` (`https://{Host}` for a request that came
    /// over TLS to [`server::Server`](crate::server::Server)).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.base_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// The id scheme (default [`RandomIds`]).
    pub fn ids(mut self, ids: impl IdScheme) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// The event hooks (default [`DefaultHooks`]).
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Arc::new(hooks);
        self
    }

    /// The protocol: [`Protocol::Ephemeral`] (the default) or
    /// [`Protocol::Piping`], a drop-in for Piping Server's clients.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The most receivers one path may have in the Piping mode (the largest
    /// `?n=`); a larger `n` is answered `400`. Every receiver of a transfer
    /// gets every byte, paced by the slowest. Default: 64.
    pub fn max_receivers(mut self, receivers: u32) -> Self {
        self.max_receivers = receivers.max(1);
        self
    }

    /// Serves the web page at `GET /` (and, in the Piping mode,
    /// `GET /noscript`): send a file or some text from a browser, with
    /// progress. Plain HTML and JavaScript from the crate, nothing fetched
    /// elsewhere. Default: on.
    pub fn page(mut self, on: bool) -> Self {
        self.page = on;
        self
    }

    /// Serves the pipe from several instances (feature `redis`): each
    /// waiting socket's id is recorded in `backplane` with this instance as
    /// its owner (see [`advertise`](Self::advertise)), and a `GET` of an id
    /// that another instance owns is streamed through to that instance, so
    /// clients behind one public address (a load balancer) reach their
    /// pipe wherever it waits. See
    /// [Several instances](super#several-instances).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), delayed_response::Error> {
    /// use std::sync::Arc;
    /// use delayed_response::backplane::RedisBackplane;
    /// use delayed_response::pipe;
    ///
    /// let redis = RedisBackplane::connect("redis://127.0.0.1:6379").await?;
    /// let pipe = pipe::Service::builder()
    ///     .backplane(Arc::new(redis))
    ///     // How the other instances reach this one.
    ///     .advertise("http://10.0.0.5:9000")
    ///     .build();
    /// # let _ = pipe;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn backplane(mut self, backplane: Arc<dyn crate::backplane::PipeBackplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// This instance's address as the other instances reach it (feature
    /// `redis`): `http://host:port`, with the path the pipe is served
    /// under if it is nested (`http://10.0.0.5:9000/pipe`). Plain HTTP
    /// only: the instances talk over a private network. Without it (but
    /// with a [`backplane`](Self::backplane)) this instance streams `GET`s
    /// through to the others, but its own sockets are reachable only
    /// through it.
    ///
    /// # Panics
    ///
    /// When `url` is not an `http://` URL with a host.
    #[cfg(feature = "redis")]
    pub fn advertise(mut self, url: impl AsRef<str>) -> Self {
        let url = url.as_ref();
        match super::forward::Owner::parse(url) {
            Some(owner) => self.advertise = Some(owner.url),
            None => panic!("pipe: advertise needs an http://host:port URL, not {url:?}"),
        }
        self
    }

    /// How long a `GET` streamed through to another instance may take to
    /// connect to it (feature `redis`); past it the receiver gets `502`.
    /// Default: 5 s ([`DEFAULT_FORWARD_TIMEOUT`]).
    #[cfg(feature = "redis")]
    pub fn forward_timeout(mut self, timeout: Duration) -> Self {
        self.forward_timeout = timeout;
        self
    }

    /// Builds the service.
    pub fn build(self) -> Service {
        Service::from_builder(self)
    }
}
