//! Serving: an accept loop with TCP_NODELAY, HTTP/1.1 and h2c (or HTTPS
//! with HTTP/2 by ALPN, feature `tls`), limits on slow and idle clients,
//! and a graceful shutdown that also ends held responses.
//!
//! # Examples
//!
//! ```no_run
//! use std::convert::Infallible;
//! use delayed_response::{server, Body, DelayedResponse};
//! use hyper::service::service_fn;
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//!     let res = DelayedResponse::for_request(&req).start(async { "done" }).await;
//!     Ok::<_, Infallible>(res)
//! });
//! server::serve(listener, service, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod accept;
mod conn;
mod driver;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "tls")]
pub use tls::load_tls_config;
/// rustls, as this crate uses it (feature `tls`): for a
/// [`ServerConfig`](rustls::ServerConfig) of your own.
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
#[cfg(feature = "tls")]
pub use tokio_rustls::TlsAcceptor;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use tokio::net::TcpListener;

use crate::delayed::Shutdown;
use crate::error::BoxError;

/// The default [`Server::grace_period`]: 10 seconds.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The default [`Server::header_read_timeout`]: 30 seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`Server::idle_timeout`]: 75 seconds, longer than the 60 s
/// idle timeout of common proxies (nginx upstream keep-alive, AWS ALB), so
/// that the proxy, not the server, closes an idle connection it pools.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The default [`Server::max_connections`]: 25,000 open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;

/// The default [`Server::max_concurrent_streams`]: 100 streams per HTTP/2
/// connection, the least RFC 9113 recommends.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The client's address, which the server puts into every request's
/// extensions (for per-client limits, logs, ...).
///
/// It is the peer of the TCP connection: behind a proxy, that is the proxy.
///
/// # Examples
///
/// ```
/// use delayed_response::server::RemoteAddr;
///
/// fn client(req: &http::Request<hyper::body::Incoming>) -> Option<std::net::SocketAddr> {
///     req.extensions().get::<RemoteAddr>().map(|a| a.0)
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub SocketAddr);

/// Serves `service` on `listener` until `signal` resolves, then shuts down
/// gracefully with the default settings of [`Server`].
///
/// # Errors
///
/// None today: accept errors (such as running out of file descriptors) are
/// logged and retried, never fatal. The `Result` leaves room for setup errors.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Server::new().serve(listener, service, signal).await
}

/// Server settings; [`serve`] uses the defaults.
///
/// | setting | default |
/// |---|---|
/// | [`header_read_timeout`](Self::header_read_timeout) | 30 s ([`DEFAULT_HEADER_READ_TIMEOUT`]) |
/// | [`idle_timeout`](Self::idle_timeout) | 75 s ([`DEFAULT_IDLE_TIMEOUT`]) |
/// | [`max_connections`](Self::max_connections) | 25,000 ([`DEFAULT_MAX_CONNECTIONS`]) |
/// | [`max_concurrent_streams`](Self::max_concurrent_streams) | 100 per HTTP/2 connection ([`DEFAULT_MAX_CONCURRENT_STREAMS`]) |
/// | [`grace_period`](Self::grace_period) | 10 s ([`DEFAULT_GRACE_PERIOD`]) |
/// | protocols ([`http1_only`](Self::http1_only)) | HTTP/1.1 and HTTP/2 over cleartext (h2c, prior knowledge) |
/// | TLS (`tls`, feature `tls`) | off; when on, HTTP/1.1 and HTTP/2 by ALPN |
///
/// Every accepted socket gets `TCP_NODELAY`, so that small heartbeat writes
/// are not held back by Nagle's algorithm and a delayed ACK. Every request
/// carries the [`Shutdown`] signal and the client's [`RemoteAddr`] in its
/// extensions.
///
/// # Slow and idle clients
///
/// A connection with no request in flight is closed when its client is too
/// slow to send a request ([`header_read_timeout`](Self::header_read_timeout))
/// or sends none for too long ([`idle_timeout`](Self::idle_timeout)). A
/// request is in flight from the moment its head is complete until its
/// response has been handed to the connection in full (or dropped), so
/// neither timeout ever touches a held response, however long it waits: its
/// life is the [`DelayedResponse`](crate::DelayedResponse)'s business.
///
/// Past [`max_connections`](Self::max_connections) the server stops
/// accepting (new clients wait in the listener's backlog) until one closes,
/// and says so in the log at most once a minute. When accepting fails for
/// lack of resources (no file descriptors left: `EMFILE`), it backs off
/// (from 5 ms up to 1 s, or until one of its connections closes), also with
/// one warning a minute at most.
///
// The TLS section only with the feature: its links need it.
#[cfg_attr(
    feature = "tls",
    doc = "# TLS\n\n\
    With the `tls` feature, [`tls`](Self::tls) makes the server speak HTTPS \
    ([`rustls`] with the *ring* provider). [`load_tls_config`] reads a \
    certificate chain and key from PEM files; the ALPN protocol of each \
    handshake picks HTTP/2 or HTTP/1.1. The handshake is part of the first \
    request: it counts against the connection cap, and a client that does \
    not complete it (with its first request head) within the header read \
    timeout is closed. Everything else (timeouts, shutdown, held responses, \
    [`RemoteAddr`]) is as over cleartext, and requests carry \
    [`Scheme::HTTPS`](http::uri::Scheme::HTTPS) in their extensions. See \
    [`tls`](Self::tls) for an example.\n"
)]
///
/// # Shutdown
///
/// When the `signal` future passed to [`serve`](Self::serve) resolves, the
/// server stops accepting and triggers the [`Shutdown`] signal: held
/// responses that are still waiting for their result end at once
/// ([`AbortReason::Shutdown`](crate::AbortReason::Shutdown)); those whose
/// result is already streaming carry on (see [`Shutdown`]). Connections with
/// no request in flight (idle, or still sending a request head) are closed
/// at once; the others are asked to close once their in-flight responses
/// are done (HTTP/2: `GOAWAY`). The server waits for them up to the grace
/// period, then drops those still open.
#[derive(Debug, Clone)]
#[must_use]
pub struct Server {
    grace_period: Duration,
    shutdown: Shutdown,
    http1_only: bool,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    max_concurrent_streams: u32,
    #[cfg(feature = "tls")]
    tls: Option<tls::Tls>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            grace_period: DEFAULT_GRACE_PERIOD,
            shutdown: Shutdown::new(),
            http1_only: false,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Server {
    /// Settings with the defaults.
    pub fn new() -> Self {
        Server::default()
    }

    /// How long shutdown waits for open connections before dropping them.
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// How long a client has to send a complete request head: on a new
    /// connection, from the accept (this also bounds telling HTTP/1.1 from
    /// h2c, and the TLS handshake); on a kept-alive one, from the first byte
    /// of the next request.
    /// A connection past it with no request in flight is closed.
    ///
    /// For HTTP/2, only the first request's headers are bound by it; later
    /// ones are bound by the idle timeout, since frames between requests
    /// (window updates, pings) do not tell that a request has begun.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a kept-alive connection may stay silent between requests:
    /// from the end of a response to the first byte of the next request
    /// (HTTP/2: from the end of the last open stream to the next request's
    /// headers; the client then gets a `GOAWAY`).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many connections may be open at once (at least 1). Past it the
    /// server stops accepting until one closes.
    ///
    /// Keep it below the process's file descriptor limit (`ulimit -n`),
    /// less what the program needs otherwise, so that the server never runs
    /// out of descriptors for its own files and upstream connections.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How many requests one HTTP/2 connection may have in flight at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); each may be a held response.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Uses this [`Shutdown`] signal (to share it with other parts of the
    /// program) instead of a fresh one. Triggering it does not stop the
    /// server: the `signal` future passed to [`serve`](Self::serve) does.
    pub fn shutdown_signal(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Serves HTTP/1.1 only: an h2c client is refused, and over TLS `h2` is
    /// not offered by ALPN. An HTTP/1.1
    /// connection costs the same either way (the default server peeks at the
    /// first bytes to tell the protocols apart, without buffering them).
    pub fn http1_only(mut self, yes: bool) -> Self {
        self.http1_only = yes;
        self
    }

    /// Serves HTTPS with this TLS acceptor (feature `tls`): a
    /// [`TlsAcceptor`], or an `Arc<`[`rustls::ServerConfig`]`>` (see
    /// [`load_tls_config`]).
    ///
    /// The ALPN protocol the handshake negotiates picks HTTP/2 (`h2`) or
    /// HTTP/1.1 (`http/1.1`, also for a client that offers none). A
    /// configuration that offers no ALPN protocols is served as if it
    /// offered both (HTTP/1.1 alone with [`http1_only`](Self::http1_only)),
    /// and `http1_only` takes `h2` out of one that offers it.
    ///
    /// The handshake is part of reading the first request: it counts
    /// against the connection cap and must be done, with the first request
    /// head, within the [header read timeout](Self::header_read_timeout),
    /// so a client that connects and stays silent is closed then. A failed
    /// handshake closes its connection and is logged at DEBUG. Requests
    /// carry [`Scheme::HTTPS`](http::uri::Scheme::HTTPS) in their
    /// extensions (absent on a plain connection).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use delayed_response::server::{self, Server};
    /// # use std::convert::Infallible;
    /// # use delayed_response::Body;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// # let service = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    /// #     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
    /// # });
    /// let config = server::load_tls_config("cert.pem", "key.pem")?;
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
    /// Server::new()
    ///     .tls(Arc::new(config))
    ///     .serve(listener, service, async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     })
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: impl Into<TlsAcceptor>) -> Self {
        self.tls = Some(tls::Tls(acceptor.into()));
        self
    }

    /// Serves `service` on `listener` until `signal` resolves.
    ///
    /// Each request gets a clone of the [`Shutdown`] signal and the
    /// client's [`RemoteAddr`] in its extensions (see
    /// [`DelayedResponse::for_request`](crate::DelayedResponse::for_request)).
    ///
    /// # Errors
    ///
    /// None today (see [`serve`]).
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        accept::run(self, listener, service, signal).await;
        Ok(())
    }
}
