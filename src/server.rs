//! Serving: an accept loop with TCP_NODELAY, HTTP/1.1 and h2c, and a graceful
//! shutdown that also ends held responses.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::delayed::Shutdown;
use crate::error::BoxError;

/// The peer address of the connection a request came on; [`Server`] puts
/// it in every request's extensions. Per-client limits key on it (see
/// [`limit::ClientKey`](crate::limit::ClientKey)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// The default [`Server::grace_period`]: 10 seconds.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

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
/// | [`grace_period`](Self::grace_period) | 10 s |
/// | protocols ([`http1_only`](Self::http1_only)) | HTTP/1.1 and HTTP/2 over cleartext (h2c, prior knowledge) |
///
/// Every accepted socket gets `TCP_NODELAY`, so that small heartbeat writes
/// are not held back by Nagle's algorithm and a delayed ACK.
///
/// On shutdown it stops accepting, triggers the [`Shutdown`] signal that every
/// request carries in its extensions (held responses end, with
/// [`AbortReason::Shutdown`](crate::AbortReason::Shutdown)), asks every
/// connection to close once its in-flight response is done, and waits for
/// them up to the grace period; connections still open then are dropped.
#[derive(Debug, Clone)]
#[must_use]
pub struct Server {
    grace_period: Duration,
    shutdown: Shutdown,
    http1_only: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            grace_period: DEFAULT_GRACE_PERIOD,
            shutdown: Shutdown::new(),
            http1_only: false,
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

    /// Uses this [`Shutdown`] signal (to share it with other parts of the
    /// program) instead of a fresh one. Triggering it does not stop the
    /// server: the `signal` future passed to [`serve`](Self::serve) does.
    pub fn shutdown_signal(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Serves HTTP/1.1 only: no detection of an HTTP/2 (h2c) preface, and
    /// about 4.5 KiB less resident memory per open connection (measured with
    /// `examples/signal_load`: 11.3 instead of 15.8 KiB per held stream).
    /// Worth it for many long-lived connections (SSE, long-polls) behind a
    /// proxy that speaks HTTP/1.1 to the backend. An h2c client is refused.
    pub fn http1_only(mut self, yes: bool) -> Self {
        self.http1_only = yes;
        self
    }

    /// Serves `service` on `listener` until `signal` resolves.
    ///
    /// Each request gets a clone of the [`Shutdown`] signal in its extensions
    /// (see [`DelayedResponse::for_request`](crate::DelayedResponse::for_request)).
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
        // Shared, not cloned per connection: `into_owned()` would copy the
        // whole builder (HTTP/1 and HTTP/2 settings) into every connection,
        // about 3 KiB each (measured with examples/signal_load).
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if self.http1_only {
            builder = builder.http1_only();
        }
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut signal => break,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning, and
                    // go on once descriptors are free again.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "set_nodelay failed");
            }
            let service = WithShutdown {
                inner: service.clone(),
                shutdown: self.shutdown.clone(),
            };
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let conn = builder.serve_connection(TokioIo::new(tcp), service);
                if let Err(error) = watcher.watch(conn).await {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
            });
        }
        drop(listener);
        self.shutdown.trigger();
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(self.grace_period) => {
                tracing::debug!("grace period over; dropping the remaining connections");
            }
        }
        Ok(())
    }
}

/// Puts the shutdown signal into each request's extensions.
#[derive(Clone)]
struct WithShutdown<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S> Service<Request<Incoming>> for WithShutdown<S>
where
    S: Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.shutdown.clone());
        self.inner.call(req)
    }
}
