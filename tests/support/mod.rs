//! Shared test helpers: a server on 127.0.0.1:0, a raw TCP client that shows
//! exactly what went over the wire, and an HTTP/1 response reader that tells a
//! complete chunked body from a cut one.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod example;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sse;
#[cfg(feature = "tls")]
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::server::Server;
use delayed_response::{BoxError, Shutdown};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for anything before failing.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A server running `delayed_response::server` on 127.0.0.1:0, with a 2 s
/// grace period and its shutdown signal at hand.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    running: Running,
}

impl TestServer {
    /// Stops accepting, triggers the shutdown signal and waits (up to the
    /// grace period) for connections to finish.
    pub async fn stop(self) {
        let _ = self.running.stop.send(());
        let _ = tokio::time::timeout(PATIENCE, self.running.task).await;
    }
}

/// The settings of [`serve`]: a 2 s grace period, `shutdown` as its signal.
fn test_server(shutdown: &Shutdown) -> Server {
    Server::new()
        .grace_period(Duration::from_secs(2))
        .shutdown_signal(shutdown.clone())
}

/// Serves a hyper service on 127.0.0.1:0.
pub async fn serve<S, B>(service: S) -> TestServer
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shutdown = Shutdown::new();
    let running = start(test_server(&shutdown), service).await;
    TestServer {
        addr: running.addr,
        shutdown,
        running,
    }
}

/// Serves an async function of the request.
pub async fn serve_fn<F, Fut, B>(f: F) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shutdown = Shutdown::new();
    let running = start_fn(test_server(&shutdown), f).await;
    TestServer {
        addr: running.addr,
        shutdown,
        running,
    }
}

/// A server with the test's own [`Server`] settings on 127.0.0.1:0 (where
/// [`serve`] uses its own); [`Running::stop`] stops it.
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting and waits for `serve` to return `Ok` (within the
    /// grace period the test chose, and [`PATIENCE`]).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        within("the server to stop", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Serves a hyper service with `server` on 127.0.0.1:0.
pub async fn start<S, B>(server: Server, service: S) -> Running
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, service, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

/// Serves an async function of the request with `server`.
pub async fn start_fn<F, Fut, B>(server: Server, f: F) -> Running
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    start(
        server,
        hyper::service::service_fn(move |req| {
            let fut = f(req);
            async move { Ok::<_, Infallible>(fut.await) }
        }),
    )
    .await
}

/// Answers "hi" to everything, with `server`.
pub async fn hello(server: Server) -> Running {
    start_fn(server, |_req| async {
        Response::new(delayed_response::Body::from("hi"))
    })
    .await
}

/// Collects what `tracing` events print (a `make_writer` for a subscriber).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Collects the WARN and ERROR events of this thread (a current-thread
    /// runtime: the server's too) until the guard is dropped.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// How many times `needle` was printed.
    pub fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

/// Reads until the server closes the connection (EOF or reset).
pub async fn closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Connects and writes `request` as it is.
pub async fn send_raw(addr: SocketAddr, request: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A `GET path` with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> TcpStream {
    send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Reads from `stream` until `needle` has been seen; returns all bytes read.
/// Panics after [`PATIENCE`], or if the stream ends first.
pub async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if find(buf, needle).is_some() {
                return;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "stream ended before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(buf)
        )
    })
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body's data chunks as they were framed (chunked responses).
    pub chunks: Vec<Vec<u8>>,
    /// Did the body end properly (final chunk, or all of Content-Length)?
    pub complete: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one whole response (until its body ends or the connection closes).
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(PATIENCE, read_response_inner(stream))
        .await
        .expect("timed out reading the response")
}

async fn read_response_inner(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    // Head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut res = RawResponse {
        status,
        headers: headers.clone(),
        body: Vec::new(),
        chunks: Vec::new(),
        complete: false,
    };
    if status == 204 || status == 304 || (100..200).contains(&status) {
        res.complete = true;
        return res;
    }
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            // Parse as many whole chunks as are buffered.
            while let Some(line_end) = find(&rest, b"\r\n") {
                let size_str = String::from_utf8_lossy(&rest[..line_end]).into_owned();
                let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16)
                    .expect("bad chunk size");
                if size == 0 {
                    res.complete = true;
                    return res;
                }
                if rest.len() < line_end + 2 + size + 2 {
                    break;
                }
                let data = rest[line_end + 2..line_end + 2 + size].to_vec();
                res.body.extend_from_slice(&data);
                res.chunks.push(data);
                rest.drain(..line_end + 2 + size + 2);
            }
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return res,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        loop {
            if rest.len() >= len {
                res.body = rest[..len].to_vec();
                res.complete = true;
                return res;
            }
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    res.body = rest;
                    return res;
                }
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
    } else {
        // Close-delimited.
        loop {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) => {
                    res.body = rest;
                    res.complete = true;
                    return res;
                }
                Err(_) => {
                    res.body = rest;
                    return res;
                }
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A one-shot signal a test can await instead of sleeping.
pub fn signal<T>() -> (oneshot::Sender<T>, oneshot::Receiver<T>) {
    oneshot::channel()
}

/// Awaits `fut` for at most [`PATIENCE`], failing the test with `what`.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A `POST path` with this content type and body, `Connection: close`;
/// returns the whole response.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> RawResponse {
    let ct = content_type
        .map(|ct| format!("Content-Type: {ct}\r\n"))
        .unwrap_or_default();
    let mut stream = send_raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    read_response(&mut stream).await
}

/// Waits until `check` holds, looking every few milliseconds (for state
/// that has no event to await); fails after [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// An h2c (prior knowledge) client over `tcp`; its connection runs in a task
/// of its own (as hyper's h2 client does anyway).
pub async fn h2_handshake<B>(tcp: TcpStream) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Connects to `addr` and opens an h2c client connection.
pub async fn h2_connect<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    h2_handshake(TcpStream::connect(addr).await.unwrap()).await
}
