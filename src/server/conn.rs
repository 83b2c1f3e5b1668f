//! One connection: the TLS handshake, telling HTTP/1.1 from HTTP/2 (ALPN
//! over TLS, a peek at the first bytes without), and counting its requests
//! in flight for the [driver](super::driver).
//!
//! A request is *in flight* from the service call until hyper drops its
//! response body (sent in full, or given up). The count lives in a small
//! [`ConnState`] shared by the service wrapper, the response bodies and the
//! socket wrapper; the driver reads it after every poll of the hyper
//! connection and runs one timer while the count is zero.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::uri::Scheme;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::driver::Driver;
use super::RemoteAddr;
use crate::delayed::Shutdown;
use crate::error::BoxError;

/// What the connections of one `serve` call share.
pub(super) struct Shared {
    pub(super) http1: http1::Builder,
    /// `None`: HTTP/1.1 only.
    pub(super) http2: Option<http2::Builder<TokioExecutor>>,
    /// `Some`: HTTPS; its ALPN protocols match `http2`.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) shutdown: Shutdown,
    /// Cancelled when shutdown begins: a connection closes at once if no
    /// request is in flight, else once its responses are done.
    pub(super) drain: CancellationToken,
    /// Cancelled when the grace period is over: every connection closes.
    pub(super) force: CancellationToken,
    /// How far the shutdown has gone ([`SERVING`], [`DRAINING`],
    /// [`FORCED`]), set just before the token of that stage is cancelled.
    /// A driver reads it on every wake-up, where asking a token takes two
    /// locks (a shared one, on every connection's path).
    pub(super) stage: AtomicU8,
    /// Open connections.
    pub(super) live: AtomicUsize,
    /// Notified whenever a connection closes. It has one waiter at a time:
    /// the accept loop (at the connection cap, or backing off), then the
    /// shutdown waiting for the last connection.
    pub(super) closed: Notify,
}

/// [`Shared::stage`]: no shutdown.
pub(super) const SERVING: u8 = 0;
/// [`Shared::stage`]: `drain` is (being) cancelled.
pub(super) const DRAINING: u8 = 1;
/// [`Shared::stage`]: `force` is (being) cancelled.
pub(super) const FORCED: u8 = 2;

impl Shared {
    /// Shutdown begins: connections finish their requests and close.
    pub(super) fn drain(&self) {
        self.stage.store(DRAINING, Ordering::Release);
        self.drain.cancel();
    }

    /// The grace period is over: every connection closes.
    pub(super) fn force(&self) {
        self.stage.store(FORCED, Ordering::Release);
        self.force.cancel();
    }

    /// How far the shutdown has gone.
    pub(super) fn stage(&self) -> u8 {
        self.stage.load(Ordering::Acquire)
    }

    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves once at most `n` connections are open.
    pub(super) async fn at_most(&self, n: usize) {
        loop {
            // Created before the check: a close in between leaves a permit.
            let closed = self.closed.notified();
            if self.live() <= n {
                return;
            }
            closed.await;
        }
    }
}

/// Counts one connection as open until it is dropped (also when its task
/// is dropped before it ran).
pub(super) struct Open(Arc<Shared>);

impl Open {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::AcqRel);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_one();
    }
}

/// Serves one accepted connection until it closes, times out, or the
/// server's shutdown ends it.
pub(super) async fn serve<S, B>(open: Open, tcp: TcpStream, addr: SocketAddr, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shared = &*open.0;
    // The first request's head is due this long after the accept; telling
    // the protocols apart (or the TLS handshake) is part of reading it.
    let head_due = after(shared.header_read_timeout);
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.tls {
        // Boxed, so that a plain connection's task is not sized for TLS.
        return Box::pin(async move {
            let handshake = acceptor.accept(tcp);
            let tls = tokio::select! {
                biased;
                () = shared.drain.cancelled() => return,
                () = sleep_until(head_due) => {
                    tracing::debug!(%addr, "no TLS handshake within the header read timeout; closing");
                    return;
                }
                tls = handshake => match tls {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%addr, %error, "TLS handshake failed");
                        return;
                    }
                },
            };
            // ALPN decides; a client that offers none speaks HTTP/1.1.
            let h2 = shared.http2.is_some() && tls.get_ref().1.alpn_protocol() == Some(b"h2");
            drive(shared, tls, addr, true, h2, head_due, service).await
        })
        .await;
    }
    let h2 = match shared.http2 {
        None => false,
        Some(_) => tokio::select! {
            biased;
            () = shared.drain.cancelled() => return,
            () = sleep_until(head_due) => {
                tracing::debug!(%addr, "no request within the header read timeout; closing");
                return;
            }
            h2 = speaks_h2(&tcp) => match h2 {
                Some(h2) => h2,
                None => return,
            },
        },
    };
    drive(shared, tcp, addr, false, h2, head_due, service).await
}

/// Serves HTTP/1.1 (or HTTP/2 if `h2`) on `io` with the
/// [driver](super::driver)'s timeouts and shutdown.
async fn drive<T, S, B>(
    shared: &Shared,
    io: T,
    addr: SocketAddr,
    tls: bool,
    h2: bool,
    head_due: Instant,
    service: S,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Io {
        io,
        state: state.clone(),
    });
    let service = Dispatch {
        inner: service,
        shutdown: shared.shutdown.clone(),
        addr: RemoteAddr(addr),
        tls,
        state: state.clone(),
    };
    match &shared.http2 {
        // Boxed, so that an HTTP/1.1 connection's task is sized for HTTP/1.1.
        Some(http2) if h2 => {
            let conn = http2.serve_connection(io, service);
            Box::pin(Driver::new(conn, true, state, shared, head_due)).await
        }
        _ => {
            let conn = shared.http1.serve_connection(io, service);
            Driver::new(conn, false, state, shared, head_due).await
        }
    }
}

/// The HTTP/2 connection preface that a prior-knowledge (h2c) client sends
/// first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Does the client speak HTTP/2? `None` if it closed first.
///
/// It peeks at the first bytes rather than reading them, so that hyper reads
/// the whole first request itself. hyper-util's auto builder reads up to 24
/// bytes and replays them: hyper's first read is then short, and the next
/// one finds its 8 KiB read buffer holding a partial head and doubles it to
/// 16 KiB for the life of the connection (measured: 8,192 bytes more per
/// idle HTTP/1.1 connection than with `http1_only`).
async fn speaks_h2(tcp: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = match tcp.peek(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // Part of the preface: until more bytes arrive, a peek returns the
        // same ones at once, so wait a little (the caller bounds the whole
        // by the header read timeout). Rare: clients send the preface in one
        // write, and an HTTP/1 request differs from it by its second byte.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `now + d`, or a far future if that overflows.
pub(super) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365))
}

/// What the parts of one connection share.
#[derive(Default)]
pub(super) struct ConnState {
    /// Requests whose response is not done yet.
    pub(super) in_flight: AtomicUsize,
    /// Set when a request begins; the driver clears it. hyper may read,
    /// serve and finish a whole request within one poll, so the driver
    /// cannot rely on seeing `in_flight` above zero.
    pub(super) began: AtomicBool,
    /// Set by the socket on every read that got bytes; the driver clears it.
    pub(super) read: AtomicBool,
    /// The driver's task: HTTP/2 responses end in tasks of their own.
    pub(super) driver: AtomicWaker,
}

impl ConnState {
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// One request in flight, until dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.began.store(true, Ordering::Release);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.driver.wake();
        }
    }
}

/// The socket (or the TLS stream over it), telling the driver when bytes
/// arrive.
struct Io<T> {
    io: T,
    state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.state.read.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The user's service, with the shutdown signal and the client's address
/// (and, over TLS, the `https` scheme) put into each request, and each
/// request counted in flight.
struct Dispatch<S> {
    inner: S,
    shutdown: Shutdown,
    addr: RemoteAddr,
    tls: bool,
    state: Arc<ConnState>,
}

impl<S, B> Service<Request<Incoming>> for Dispatch<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = Call<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::new(&self.state);
        req.extensions_mut().insert(self.shutdown.clone());
        req.extensions_mut().insert(self.addr);
        if self.tls {
            req.extensions_mut().insert(Scheme::HTTPS);
        }
        Call {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The service's future; its response body carries the request's
    /// in-flight count on.
    struct Call<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for Call<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(result.map(|res| {
            res.map(|body| Tracked {
                inner: body,
                _in_flight: in_flight,
            })
        }))
    }
}

pin_project! {
    /// A response body that keeps its request in flight until hyper drops it.
    struct Tracked<B> {
        #[pin]
        inner: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
