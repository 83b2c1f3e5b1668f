//! Drives a service in-process: builds `http::Request`s from script steps,
//! calls the service through `hyper::service::Service` (the trait every
//! service of the crate implements, so renames of the types do not matter
//! here), and collects each response, its body frame by frame, in a task of
//! its own.
//!
//! Everything runs on a current-thread runtime with paused time: a held
//! response (heartbeats, TTLs, long-polls) advances virtual time instead of
//! hanging the target, and a run is deterministic apart from random ids.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use delayed_response::Body;
use futures_util::stream;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::script::{self, Step};

/// The request body every target sends. Its error is a plain
/// `io::Error` (a boxed `dyn Error` would make the service futures' `Send`
/// bounds higher-ranked, which the compiler cannot prove).
pub type ReqBody = BoxBody<Bytes, std::io::Error>;

/// A response body is not collected past this many bytes.
pub const MAX_COLLECT: usize = 4 << 20;

/// A current-thread runtime with paused time (timers advance virtually
/// whenever every task is idle).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

/// The request of `step` with `vars` substituted, or `None` when hyper
/// would never hand such a request to a service (a method or target that
/// does not parse, a malformed `Content-Length`).
pub fn request(step: &Step, vars: &[(&str, String)]) -> Option<(Request<ReqBody>, Sent)> {
    let method = Method::from_bytes(&script::substitute(&step.method, vars)).ok()?;
    let uri = Uri::try_from(script::substitute(&step.target, vars)).ok()?;
    let mut headers = HeaderMap::new();
    for (name, value) in &step.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(&script::substitute(value, vars)),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    // hyper refuses (400) a Content-Length that is not one number, and
    // never delivers more body than it declares; less is a cut body.
    let mut body = script::substitute(&step.body, vars);
    let mut cut = step.cut;
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let len: u64 = first.to_str().ok()?.trim().parse().ok()?;
        if lengths.any(|v| v != first) {
            return None;
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if body.len() >= len {
            body.truncate(len);
        } else {
            cut = true;
        }
    }
    let sent = Sent {
        body: body.clone(),
        cut,
    };
    let mut req = Request::new(body_of(body, step.chunks, cut));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some((req, sent))
}

/// The body a request really carried.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub body: Vec<u8>,
    /// It ended with an error (the client went away mid-body).
    pub cut: bool,
}

/// `bytes` as `chunks` frames, ending with an error when `cut`.
pub fn body_of(bytes: Vec<u8>, chunks: usize, cut: bool) -> ReqBody {
    let bytes = Bytes::from(bytes);
    let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = Vec::new();
    let chunks = chunks.max(1);
    let size = bytes.len().div_ceil(chunks).max(1);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        frames.push(Ok(Frame::data(bytes.slice(at..end))));
        at = end;
    }
    if cut {
        frames.push(Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the client went away mid-body",
        )));
    }
    if frames.is_empty() {
        // An empty body that says so (`is_end_stream`), as hyper's does.
        return http_body_util::Empty::new().map_err(|e| match e {}).boxed();
    }
    StreamBody::new(stream::iter(frames)).boxed()
}

/// How a response body ended, as far as the driver saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    /// Still open when the driver stopped looking.
    #[default]
    Pending,
    /// Ended normally.
    Complete,
    /// Ended abnormally (an error frame): a cut transfer.
    Error,
    /// The client side dropped it on purpose.
    Left,
}

/// One request's answer, as collected so far.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub status: Option<StatusCode>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub end: End,
}

/// A request in flight.
pub struct Tracked {
    pub state: Arc<Mutex<Exchange>>,
    pub task: JoinHandle<()>,
    started: Option<oneshot::Receiver<()>>,
}

impl Tracked {
    /// Waits (virtual time) until the response has a first body frame or has
    /// ended; `false` if `patience` passed first.
    pub async fn started(&mut self, patience: Duration) -> bool {
        match self.started.take() {
            Some(rx) => matches!(tokio::time::timeout(patience, rx).await, Ok(Ok(()))),
            None => true,
        }
    }

    /// A copy of what was collected so far.
    pub fn snapshot(&self) -> Exchange {
        lock(&self.state).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls `service` with `req` in a task of its own that collects the
/// response. With `leave_after`, the response is dropped once that many body
/// bytes arrived (a client that goes away).
pub fn send<S>(service: &S, req: Request<ReqBody>, leave_after: Option<usize>) -> Tracked
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    send_until(service, req, leave_after, None)
}

/// As [`send`]; with `give_up`, the client also drops the request (or its
/// response) that long after sending it, wherever it stands: a client that
/// leaves while its request is held without a head.
pub fn send_until<S>(
    service: &S,
    req: Request<ReqBody>,
    leave_after: Option<usize>,
    give_up: Option<Duration>,
) -> Tracked
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    let future = service.call(req);
    spawn_exchange_until(
        async move {
            match future.await {
                Ok(res) => res,
                Err(never) => match never {},
            }
        },
        leave_after,
        give_up,
    )
}

/// Collects the response of `future` in a task of its own.
pub fn spawn_exchange<F>(future: F, leave_after: Option<usize>) -> Tracked
where
    F: Future<Output = Response<Body>> + Send + 'static,
{
    spawn_exchange_until(future, leave_after, None)
}

/// As [`spawn_exchange`], dropping everything `give_up` after the start.
pub fn spawn_exchange_until<F>(
    future: F,
    leave_after: Option<usize>,
    give_up: Option<Duration>,
) -> Tracked
where
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let state = Arc::new(Mutex::new(Exchange::default()));
    let (started_tx, started_rx) = oneshot::channel();
    let shared = state.clone();
    let given_up = state.clone();
    let started = Arc::new(Mutex::new(Some(started_tx)));
    let started_on_give_up = started.clone();
    let exchange = async move {
        let started = started;
        let res = future.await;
        let (parts, mut body) = res.into_parts();
        {
            let mut st = lock(&shared);
            st.status = Some(parts.status);
            st.headers = parts.headers;
        }
        let end = loop {
            let seen = lock(&shared).body.len();
            if leave_after.is_some_and(|n| seen >= n) || seen > MAX_COLLECT {
                break End::Left;
            }
            match body.frame().await {
                None => break End::Complete,
                Some(Err(_)) => break End::Error,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        lock(&shared).body.extend_from_slice(&data);
                        if let Some(tx) = lock(&started).take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
        };
        lock(&shared).end = end;
        drop(body);
        let tx = lock(&started).take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    };
    let task = tokio::spawn(async move {
        let Some(give_up) = give_up else {
            return exchange.await;
        };
        if tokio::time::timeout(give_up, exchange).await.is_err() {
            // Dropped where it stood: the request, or the response body.
            let mut st = lock(&given_up);
            if st.end == End::Pending {
                st.end = End::Left;
            }
            drop(st);
            if let Some(tx) = lock(&started_on_give_up).take() {
                let _ = tx.send(());
            }
        }
    });
    Tracked {
        state,
        task,
        started: Some(started_rx),
    }
}

/// Waits (virtual time) until every tracked request finished; `false` if
/// `patience` passed first.
pub async fn settle(tracked: &mut [Tracked], patience: Duration) -> bool {
    tokio::time::timeout(patience, async {
        for t in tracked.iter_mut() {
            let _ = (&mut t.task).await;
        }
    })
    .await
    .is_ok()
}

/// The `x-fuzz-give-up` directive of a step, if any: drop the request
/// this many virtual milliseconds after sending it (at most
/// [`script::MAX_SLEEP_MS`]). Taken from the headers and removed.
pub fn take_give_up(step: &mut Step) -> Option<Duration> {
    let i = step
        .headers
        .iter()
        .position(|(name, _)| name == b"x-fuzz-give-up")?;
    let (_, value) = step.headers.remove(i);
    let ms: u64 = std::str::from_utf8(&value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(Duration::from_millis(ms.min(script::MAX_SLEEP_MS)))
}

/// The `x-fuzz-leave` directive of a step, if any: drop the response after
/// this many body bytes. Taken from the (unsubstituted) headers and removed.
pub fn take_leave(step: &mut Step) -> Option<usize> {
    let i = step
        .headers
        .iter()
        .position(|(name, _)| name == b"x-fuzz-leave")?;
    let (_, value) = step.headers.remove(i);
    Some(
        std::str::from_utf8(&value)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Prints `what` and the exchange when `FUZZ_TRACE` is set (to read what a
/// crashing input did: `FUZZ_TRACE=1 cargo fuzz run T crash-file`).
pub fn trace(what: &str, ex: &Exchange) {
    if std::env::var_os("FUZZ_TRACE").is_some() {
        let body = String::from_utf8_lossy(&ex.body);
        let shown: String = body.chars().take(600).collect();
        let more = if shown.len() < body.len() { "…" } else { "" };
        eprintln!("{what}: {:?} {:?} {shown:?}{more}", ex.status, ex.end);
    }
}

/// Statuses every service of the crate may answer with.
pub fn is_expected_status(status: StatusCode, allowed: &[u16]) -> bool {
    allowed.contains(&status.as_u16())
}
