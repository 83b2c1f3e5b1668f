//! The core: [`DelayedResponse`], a builder with four ways to finish.
//!
//! | mode | what it does | head goes out |
//! |---|---|---|
//! | [`wait`](DelayedResponse::wait) | waits for the work, up to the [`timeout`](DelayedResponse::timeout) | with the result (200), or at the deadline (202) |
//! | [`start`](DelayedResponse::start) | long-poll: heartbeats keep the connection alive until the work ends | with the result if it is ready before the first heartbeat, else with the first heartbeat (202) |
//! | [`poll`](DelayedResponse::poll) | `start`, where the work re-runs a check every interval until it yields a result | as `start` |
//! | [`handle`](DelayedResponse::handle) | `start`, where a [`Completion`] ends the response from elsewhere and may write progress bytes first | as `start`, or with the first progress write |
//!
//! # Head timing
//!
//! The status line is not sent before it must be. A result that is ready before
//! the first heartbeat is due gets its real status (200, or whatever the reply
//! or the error hook says). Once a heartbeat (or a progress write) has gone out,
//! the response is a `202 Accepted` ([`pending_status`](DelayedResponse::pending_status))
//! and only the body of later results can be written.
//! [`accepted_at_start`](DelayedResponse::accepted_at_start) restores the
//! original library's behaviour of sending 202 at once.
//!
//! # Errors after the head
//!
//! When the work fails, or times out, after a 202 has gone out, the body ends
//! *abnormally* (HTTP/1.1: no final chunk, curl exit 18; HTTP/2: RST_STREAM), so
//! the client knows it did not get a result. An [`on_error`](DelayedResponse::on_error)
//! or [`on_timeout`](DelayedResponse::on_timeout) hook renders a body instead.

mod handle;
mod heartbeat;
mod held;
mod reply;
mod shutdown;
mod tracker;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};

pub use handle::Completion;
pub use heartbeat::Heartbeat;
pub use held::ResponseFuture;
#[cfg(feature = "json")]
pub use reply::Json;
pub use reply::{IntoReply, Reply};
pub use shutdown::Shutdown;

use crate::body::Body;
use crate::error::Error;
use held::{BoxWork, Held, Source};
use tracker::Tracker;

/// Why a response was abandoned before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// The client disconnected (FIN, RST, RST_STREAM, or a failed write).
    ClientGone,
    /// The server is shutting down (see [`Shutdown`]).
    Shutdown,
}

impl AbortReason {
    pub(crate) fn to_error(self) -> Error {
        match self {
            AbortReason::ClientGone => Error::new(crate::error::Kind::Aborted),
            AbortReason::Shutdown => Error::new(crate::error::Kind::Shutdown),
        }
    }
}

/// How a delayed response ended; reported once per response to
/// [`on_outcome`](DelayedResponse::on_outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The result was rendered and its body fully handed to the server.
    Done,
    /// The deadline passed first.
    Timeout,
    /// The work, or the body of its result, failed.
    Error,
    /// The client went away, or the server shut down, first.
    Aborted(AbortReason),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Done => "done",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Aborted(AbortReason::ClientGone) => "abort",
            Outcome::Aborted(AbortReason::Shutdown) => "shutdown",
        })
    }
}

type AbortHook = Arc<dyn Fn(AbortReason) + Send + Sync>;
type ResponseHook = Arc<dyn Fn() -> Response<Body> + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Error) -> Response<Body> + Send + Sync>;
type TickHook = Arc<dyn Fn(u64) + Send + Sync>;
type HeartbeatHook = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;
type OutcomeHook = Arc<dyn Fn(Outcome) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct Hooks {
    on_abort: Option<AbortHook>,
    on_timeout: Option<ResponseHook>,
    on_error: Option<ErrorHook>,
    on_tick: Option<TickHook>,
    on_heartbeat: Option<HeartbeatHook>,
    on_outcome: Option<OutcomeHook>,
}

#[derive(Clone)]
pub(crate) struct Config {
    timeout: Option<Duration>,
    heartbeat: Heartbeat,
    status: StatusCode,
    pending_status: StatusCode,
    /// Shared, so that a per-request change to another setting (a hook that
    /// captures the request) copies a pointer, not the map.
    headers: Arc<HeaderMap>,
    commit_at_start: bool,
    detach: bool,
    max_buffered: usize,
    shutdown: Option<Shutdown>,
    /// A HEAD request: hyper sends the head and drops the body unpolled.
    head_request: bool,
    #[cfg(feature = "park")]
    park: Option<Parking>,
    #[cfg(feature = "park")]
    prefer: crate::park::Prefer,
    hooks: Hooks,
}

#[cfg(feature = "park")]
#[derive(Clone)]
struct Parking {
    store: crate::park::Store,
    owner: Option<String>,
}

/// The default [`max_buffered`](DelayedResponse::max_buffered): 1 MiB.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: None,
            heartbeat: Heartbeat::default(),
            status: StatusCode::OK,
            pending_status: StatusCode::ACCEPTED,
            headers: Arc::new(HeaderMap::new()),
            commit_at_start: false,
            detach: false,
            max_buffered: DEFAULT_MAX_BUFFERED,
            shutdown: None,
            head_request: false,
            #[cfg(feature = "park")]
            park: None,
            #[cfg(feature = "park")]
            prefer: crate::park::Prefer::default(),
            hooks: Hooks::default(),
        }
    }
}

/// A response that cannot be answered at once.
///
/// Configure it with the builder methods, then finish it with one of
/// [`wait`](Self::wait), [`start`](Self::start), [`poll`](Self::poll) or
/// [`handle`](Self::handle). The builder is cheap to clone (its settings are
/// shared), so one can be built at start-up and cloned per request.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | [`timeout`](Self::timeout) | none |
/// | [`heartbeat`](Self::heartbeat) | a space every 15 s, the first after 15 s |
/// | [`status`](Self::status) | `200 OK` |
/// | [`pending_status`](Self::pending_status) | `202 Accepted` |
/// | [`detach`](Self::detach) | off: the work is dropped on timeout or abort |
/// | [`max_buffered`](Self::max_buffered) | 1 MiB of unsent progress writes |
/// | [`accepted_at_start`](Self::accepted_at_start) | off |
///
/// # Abort and cancellation
///
/// hyper drops the response future, or its body, when the client disconnects;
/// this type turns that drop into an abort: the work is dropped (cancelled)
/// unless [detached](Self::detach), [`on_abort`](Self::on_abort) runs with
/// [`AbortReason::ClientGone`], and [`Completion::aborted`] resolves. It never
/// fires after the response finished normally, and on server shutdown the
/// reason is [`AbortReason::Shutdown`]. See the crate docs for the cases hyper
/// cannot see (an unread upload, `half_close`).
///
/// The finishing methods take the builder by value, so a response cannot be
/// started twice (the original library threw at run time):
///
/// ```compile_fail
/// let d = delayed_response::DelayedResponse::new();
/// let _a = d.start(async {});
/// let _b = d.start(async {}); // error: use of moved value
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use delayed_response::{DelayedResponse, Heartbeat};
///
/// # async fn handler() {
/// // 200 with the result if it is ready within 5 s, else 202 Accepted.
/// let res = DelayedResponse::new()
///     .timeout(Duration::from_secs(5))
///     .wait(async { "result" })
///     .await;
///
/// // Long-poll: a space every 20 s (the first after 1 s) until the result.
/// let res = DelayedResponse::new()
///     .json()
///     .heartbeat(Heartbeat::every(Duration::from_secs(20)).after(Duration::from_secs(1)))
///     .start(async { r#"{"done":true}"# })
///     .await;
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct DelayedResponse {
    cfg: Arc<Config>,
}

impl fmt::Debug for DelayedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cfg;
        f.debug_struct("DelayedResponse")
            .field("timeout", &c.timeout)
            .field("heartbeat", &c.heartbeat)
            .field("status", &c.status)
            .field("pending_status", &c.pending_status)
            .field("headers", &c.headers)
            .field("accepted_at_start", &c.commit_at_start)
            .field("detach", &c.detach)
            .field("max_buffered", &c.max_buffered)
            .field("shutdown", &c.shutdown.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DelayedResponse {
    fn default() -> Self {
        // One default config for the whole program: a builder that is not
        // configured further (the fast path) allocates nothing; the first
        // setting copies it (`Arc::make_mut`).
        static DEFAULT: OnceLock<Arc<Config>> = OnceLock::new();
        DelayedResponse {
            cfg: DEFAULT.get_or_init(|| Arc::new(Config::default())).clone(),
        }
    }
}

impl DelayedResponse {
    /// A builder with the defaults.
    pub fn new() -> Self {
        DelayedResponse::default()
    }

    /// A builder that listens to the [`Shutdown`] signal found in the
    /// request's extensions (which [`server::serve`](crate::server::serve)
    /// puts there).
    ///
    /// It also notes a `HEAD` request: hyper sends only the head of its
    /// response and drops the body unread, which is then a normal end, not
    /// an abort.
    ///
    /// With the `park` feature it also reads the request's `Prefer` header,
    /// which [`park`](Self::park) honours.
    pub fn for_request<B>(req: &Request<B>) -> Self {
        Self::from_request_head(req.method(), req.headers(), req.extensions())
    }

    /// [`for_request`](Self::for_request) for a request already split with
    /// [`Request::into_parts`], as services that read the body do.
    pub fn for_parts(parts: &http::request::Parts) -> Self {
        Self::from_request_head(&parts.method, &parts.headers, &parts.extensions)
    }

    fn from_request_head(
        method: &http::Method,
        #[allow(unused_variables)] headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        let mut builder = DelayedResponse::new();
        if method == http::Method::HEAD {
            builder.cfg().head_request = true;
        }
        #[cfg(feature = "park")]
        {
            let prefer = crate::park::Prefer::from_headers(headers);
            if prefer != crate::park::Prefer::default() {
                builder.cfg().prefer = prefer;
            }
        }
        match extensions.get::<Shutdown>() {
            Some(s) => builder.shutdown(s.clone()),
            None => builder,
        }
    }

    fn cfg(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.cfg)
    }

    /// The deadline for the work, counted from the call that starts it.
    ///
    /// In `wait` mode, or before the head went out, the answer at the deadline
    /// is `202 Accepted` with an empty body (or what
    /// [`on_timeout`](Self::on_timeout) renders). After the head went out, the
    /// body ends abnormally unless `on_timeout` renders a body. The work is
    /// dropped, unless [detached](Self::detach).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.cfg().timeout = Some(timeout);
        self
    }

    /// The heartbeat of the held modes (`start`, `poll`, `handle`).
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.cfg().heartbeat = heartbeat;
        self
    }

    /// The status of a result rendered before the head went out, unless the
    /// reply sets its own (default `200 OK`).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.cfg().status = status;
        self
    }

    /// The status sent when the head must go out before the result: with the
    /// first heartbeat or progress write (default `202 Accepted`).
    pub fn pending_status(mut self, status: StatusCode) -> Self {
        self.cfg().pending_status = status;
        self
    }

    /// Adds a header to every head this response sends (replacing a value
    /// for the same name). A reply's own headers win over these.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        Arc::make_mut(&mut self.cfg().headers).insert(name, value);
        self
    }

    /// Shortcut for `Content-Type: application/json`, sent with the head even
    /// when the head goes out before the result (heartbeat spaces are legal
    /// JSON whitespace).
    pub fn json(self) -> Self {
        self.header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
    }

    /// Compatibility switch: send `202 Accepted` (and the headers) at once in
    /// the held modes, as the original library did, instead of holding the
    /// head until the first heartbeat.
    pub fn accepted_at_start(mut self, yes: bool) -> Self {
        self.cfg().commit_at_start = yes;
        self
    }

    /// Runs the work in its own task, so that it keeps running after a
    /// timeout, an abort or a shutdown (its result is then dropped). Off by
    /// default: the work is dropped, and so cancelled, with the response.
    pub fn detach(mut self, yes: bool) -> Self {
        self.cfg().detach = yes;
        self
    }

    /// How many bytes of progress writes ([`Completion::write`]) may wait
    /// unsent before further writes fail with [`Error::is_limit`] (default
    /// [`DEFAULT_MAX_BUFFERED`]). One write larger than the limit is accepted
    /// when nothing else waits.
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.cfg().max_buffered = bytes;
        self
    }

    /// Listens to `shutdown`: when it is triggered, a held response still
    /// waiting for its result ends (503 before its head, an abnormal end
    /// after), and the abort reason is [`AbortReason::Shutdown`]. A result
    /// already streaming is left to finish (see [`Shutdown`]).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.cfg().shutdown = Some(shutdown);
        self
    }

    /// Async request-reply (feature `park`): at the deadline of
    /// [`wait`](Self::wait), the work keeps running in a task of its own and
    /// its result is parked in `store`; the answer is `202 Accepted` with a
    /// `Location` to poll (served by a [`StatusService`](crate::park::StatusService))
    /// and `Retry-After`. When the store is full of running jobs, the answer
    /// is `503` with `Retry-After` and the work is dropped.
    ///
    /// The request's `Prefer` header (read by [`for_request`](Self::for_request))
    /// is honoured: `respond-async` parks at once, unless the result is already
    /// there; `wait=N` sets the deadline to N seconds, capped by
    /// [`Store::max_wait`](crate::park::Store::max_wait); the response says which
    /// were applied in `Preference-Applied`.
    ///
    /// Parking applies to `wait`; the held modes (`start`, `poll`, `handle`)
    /// send their head before they could give a `Location`, and ignore it.
    #[cfg(feature = "park")]
    pub fn park(mut self, store: crate::park::Store) -> Self {
        let owner = self.cfg.park.as_ref().and_then(|p| p.owner.clone());
        self.cfg().park = Some(Parking { store, owner });
        self
    }

    /// Binds a parked result to `owner` (feature `park`): only status requests
    /// whose [`StatusService::owner`](crate::park::StatusService::owner) key
    /// equals it can read or cancel it. Call after [`park`](Self::park).
    #[cfg(feature = "park")]
    pub fn park_owner(mut self, owner: impl Into<String>) -> Self {
        if let Some(p) = &mut self.cfg().park {
            p.owner = Some(owner.into());
        }
        self
    }

    /// Runs when the client goes away (or the server shuts down) before the
    /// response finished. Never after a normal completion.
    pub fn on_abort<F>(mut self, hook: F) -> Self
    where
        F: Fn(AbortReason) + Send + Sync + 'static,
    {
        self.cfg().hooks.on_abort = Some(Arc::new(hook));
        self
    }

    /// Renders the answer at the deadline. Before the head went out the
    /// returned response is sent as it is (the default is an empty
    /// `202 Accepted`); after, only its body is written and the response then
    /// ends normally.
    pub fn on_timeout<F>(mut self, hook: F) -> Self
    where
        F: Fn() -> Response<Body> + Send + Sync + 'static,
    {
        self.cfg().hooks.on_timeout = Some(Arc::new(hook));
        self
    }

    /// Renders a failed result. Before the head went out the returned response
    /// is sent as it is (the default is `500 Internal Server Error`, which
    /// shows nothing of the error); after, only its body is written and the
    /// response ends normally (the default ends it abnormally).
    pub fn on_error<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Error) -> Response<Body> + Send + Sync + 'static,
    {
        self.cfg().hooks.on_error = Some(Arc::new(hook));
        self
    }

    /// Runs at every heartbeat tick, with the tick's number (1, 2, …).
    pub fn on_tick<F>(mut self, hook: F) -> Self
    where
        F: Fn(u64) + Send + Sync + 'static,
    {
        self.cfg().hooks.on_tick = Some(Arc::new(hook));
        self
    }

    /// Replaces the heartbeat bytes: called at every tick with its number; the
    /// bytes it returns are written (empty bytes write nothing).
    pub fn on_heartbeat<F>(mut self, hook: F) -> Self
    where
        F: Fn(u64) -> Bytes + Send + Sync + 'static,
    {
        self.cfg().hooks.on_heartbeat = Some(Arc::new(hook));
        self
    }

    /// Runs once per response with its [`Outcome`] (for logs and metrics).
    pub fn on_outcome<F>(mut self, hook: F) -> Self
    where
        F: Fn(Outcome) + Send + Sync + 'static,
    {
        self.cfg().hooks.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Waits for `work`: `200` (or the reply's status) with its result, or
    /// `202 Accepted` at the [`timeout`](Self::timeout). No heartbeats.
    ///
    /// Without a timeout it waits for as long as the work takes.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future (which hyper does when the client goes
    /// away) drops the work, unless [detached](Self::detach), and reports an
    /// abort.
    pub fn wait<F>(self, work: F) -> impl Future<Output = Response<Body>> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: IntoReply,
    {
        let cfg = self.cfg;
        #[cfg(feature = "park")]
        {
            if let Some(parking) = cfg.park.clone() {
                let work: BoxWork = Box::pin(async move { work.await.into_reply() });
                return Either::Left(wait_parked(cfg, parking, work));
            }
            Either::Right(wait_plain(cfg, work))
        }
        #[cfg(not(feature = "park"))]
        wait_plain(cfg, work)
    }

    /// Long-poll: holds the response, writing heartbeats, until `work`
    /// finishes (see the [module docs](crate::delayed) on head timing).
    pub fn start<F>(self, work: F) -> ResponseFuture
    where
        F: Future + Send + 'static,
        F::Output: IntoReply,
    {
        let work: BoxWork = if self.cfg.detach {
            Box::pin(spawn(work))
        } else {
            Box::pin(async move { work.await.into_reply() })
        };
        self.held(Source::Work(work), "start", None)
    }

    /// Polling: runs `check` at once, then every `interval`, until it returns
    /// `Some(result)`; meanwhile the response is held as in
    /// [`start`](Self::start). `Some(Err(e))` ends it with an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use delayed_response::DelayedResponse;
    ///
    /// # async fn find() -> Option<String> { Some("row".into()) }
    /// # async fn handler() -> http::Response<delayed_response::Body> {
    /// DelayedResponse::new()
    ///     .poll(Duration::from_secs(5), || async { find().await })
    ///     .await
    /// # }
    /// ```
    pub fn poll<C, Fut, R>(self, interval: Duration, mut check: C) -> ResponseFuture
    where
        C: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<R>> + Send,
        R: IntoReply,
    {
        let interval = interval.max(Duration::from_millis(1));
        self.start(async move {
            loop {
                if let Some(result) = check().await {
                    return result.into_reply();
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// Callback style: returns the response future and a [`Completion`] that
    /// ends it from any task, writes progress bytes before the end, and
    /// learns about aborts.
    pub fn handle(self) -> (ResponseFuture, Completion) {
        let shared = handle::Shared::new(self.cfg.max_buffered);
        let cell = shared.cell.clone();
        let completion = Completion::new(shared.clone());
        let future = self.held(Source::Handle(shared), "handle", Some(cell));
        (future, completion)
    }

    fn held(
        self,
        source: Source,
        mode: &'static str,
        cell: Option<Arc<tracker::AbortCell>>,
    ) -> ResponseFuture {
        let tracker = Tracker::new(self.cfg.clone(), mode, cell);
        ResponseFuture::new(Held::new(self.cfg, source, tracker))
    }
}

/// `wait` with parking: at the deadline the work moves to a task of its own.
#[cfg(feature = "park")]
async fn wait_parked(cfg: Arc<Config>, parking: Parking, mut work: BoxWork) -> Response<Body> {
    use crate::park::{accepted, applied, unavailable, PREFERENCE_APPLIED};
    let mut tracker = Tracker::new(cfg.clone(), "wait", None);
    let store = &parking.store;
    let prefer = cfg.prefer;
    let wait_pref = prefer.wait.map(|w| w.min(store.max_wait()));
    let deadline = if prefer.respond_async {
        Some(Duration::ZERO)
    } else {
        wait_pref.or(cfg.timeout)
    };
    let deadline_passed = sleep_or_never(deadline);
    let shutdown = shutdown_or_never(cfg.shutdown.as_ref());
    tokio::select! {
        biased;
        reply = &mut work => {
            let mut res = held::render_early(cfg.clone(), tracker, reply);
            let honoured_wait = if prefer.respond_async { None } else { wait_pref };
            if let Some(v) = applied(false, honoured_wait) {
                res.headers_mut().insert(PREFERENCE_APPLIED, v);
            }
            return res;
        }
        () = deadline_passed => {}
        () = shutdown => {
            tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
            return held::shutdown_response();
        }
    }
    let on_error = cfg.hooks.on_error.clone();
    let render_error = move |e: &Error| match &on_error {
        Some(hook) => hook(e),
        None => held::default_error_response(),
    };
    match store.park(work, parking.owner.clone(), render_error) {
        Ok(id) => {
            tracing::debug!(parent: tracker.span(), %id, "parked");
            tracker.finish(Outcome::Timeout);
            let mut res = accepted(store, &id);
            let honoured_wait = if prefer.respond_async {
                None
            } else {
                wait_pref
            };
            if let Some(v) = applied(prefer.respond_async, honoured_wait) {
                res.headers_mut().insert(PREFERENCE_APPLIED, v);
            }
            res
        }
        Err(e) => {
            tracing::debug!(parent: tracker.span(), ?e, "cannot park");
            tracker.finish(Outcome::Error);
            unavailable(store)
        }
    }
}

/// `wait` without parking.
async fn wait_plain<F>(cfg: Arc<Config>, work: F) -> Response<Body>
where
    F: Future + Send + 'static,
    F::Output: IntoReply,
{
    let mut tracker = Tracker::new(cfg.clone(), "wait", None);
    let work = if cfg.detach {
        Either::Left(spawn(work))
    } else {
        Either::Right(async move { work.await.into_reply() })
    };
    let deadline = sleep_or_never(cfg.timeout);
    let shutdown = shutdown_or_never(cfg.shutdown.as_ref());
    tokio::select! {
        biased;
        reply = work => held::render_early(cfg.clone(), tracker, reply),
        () = deadline => {
            let res = held::timeout_response(&cfg);
            held::guard_body(res, tracker, Outcome::Timeout)
        }
        () = shutdown => {
            tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
            held::shutdown_response()
        }
    }
}

/// Resolves after `d`, or never.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when `shutdown` is triggered, or never.
async fn shutdown_or_never(shutdown: Option<&Shutdown>) {
    match shutdown {
        Some(s) => s.triggered().await,
        None => std::future::pending().await,
    }
}

/// Runs the work in its own task; dropping the returned future detaches it.
fn spawn<F>(work: F) -> impl Future<Output = Reply> + Send + 'static
where
    F: Future + Send + 'static,
    F::Output: IntoReply,
{
    let task = tokio::spawn(async move { work.await.into_reply() });
    async move {
        match task.await {
            Ok(reply) => reply,
            Err(e) => Reply::error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_share_the_default_config_until_one_is_configured() {
        let a = DelayedResponse::new();
        let b = DelayedResponse::new();
        assert!(Arc::ptr_eq(&a.cfg, &b.cfg));
        let c = DelayedResponse::new().timeout(Duration::from_secs(1));
        assert_eq!(c.cfg.timeout, Some(Duration::from_secs(1)));
        assert!(!Arc::ptr_eq(&a.cfg, &c.cfg));
        assert_eq!(DelayedResponse::new().cfg.timeout, None);
    }
}
