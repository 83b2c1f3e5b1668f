//! [`DelayedResponse`]: the settings, and the held modes that finish it
//! (`wait` is in `wait.rs`).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};

use super::config::{Config, DeadlineHook, Hooks, Unshared, DEFAULT_MIN_INTERVAL};
use super::deadline::OnDeadline;
use super::held::{Held, Source};
use super::tracker::{Mode, Tracker};
use super::wait::spawn;
use super::{
    handle, AbortReason, Completion, Heartbeat, IntoReply, Outcome, ResponseFuture, Shutdown,
};
use crate::body::Body;
use crate::error::Error;
use crate::http::Prefer;

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
/// | [`min_interval`](Self::min_interval) | 10 ms ([`DEFAULT_MIN_INTERVAL`](Self::DEFAULT_MIN_INTERVAL)) |
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
    req: Unshared,
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
            .field("min_interval", &c.min_interval)
            .field("accepted_at_start", &c.accepted_at_start)
            .field("detach", &c.detach)
            .field("max_buffered", &c.max_buffered)
            .field("shutdown", &self.req.shutdown.is_some())
            .field("on_deadline", &c.hooks.on_deadline.is_some())
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
            req: Unshared::default(),
        }
    }
}

impl DelayedResponse {
    /// The default [`min_interval`](Self::min_interval): 10 ms, at most 100
    /// heartbeats (or checks) a second per response.
    pub const DEFAULT_MIN_INTERVAL: Duration = DEFAULT_MIN_INTERVAL;

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
    /// It also reads the request's `Prefer` header (RFC 7240), which the
    /// `park` layer honours (feature `park`).
    pub fn for_request<B>(req: &Request<B>) -> Self {
        DelayedResponse::new().with_request(req)
    }

    /// [`for_request`](Self::for_request) for a request already split with
    /// [`Request::into_parts`], as services that read the body do.
    pub fn for_parts(parts: &http::request::Parts) -> Self {
        DelayedResponse::new().with_head(&parts.method, &parts.headers, &parts.extensions)
    }

    /// Takes from `req` what [`for_request`](Self::for_request) takes (the
    /// [`Shutdown`] signal, `HEAD`, `Prefer`) into this builder, keeping its
    /// settings.
    ///
    /// This is how a builder configured once, at start-up, serves each
    /// request: cloning it and taking the request copy no settings, so a
    /// held response then costs no configuration of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use delayed_response::{DelayedResponse, Heartbeat};
    ///
    /// # async fn handler(req: http::Request<()>) -> http::Response<delayed_response::Body> {
    /// // At start-up:
    /// let long_poll = DelayedResponse::new().json().heartbeat(Heartbeat::every(Duration::from_secs(20)));
    /// // Per request:
    /// long_poll.clone().with_request(&req).start(async { "{}" }).await
    /// # }
    /// ```
    pub fn with_request<B>(self, req: &Request<B>) -> Self {
        self.with_head(req.method(), req.headers(), req.extensions())
    }

    /// These settings, with what `request` (a builder from
    /// [`for_request`](Self::for_request)) took from its request: for a
    /// service that keeps builders made once and serves each request with a
    /// clone of one.
    #[allow(dead_code)] // used by `signal` only
    pub(crate) fn with_request_of(mut self, request: &DelayedResponse) -> Self {
        self.req.shutdown.clone_from(&request.req.shutdown);
        self.req.head_request = request.req.head_request;
        self.req.prefer = request.req.prefer;
        self
    }

    fn with_head(
        mut self,
        method: &http::Method,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        self.req.head_request = method == http::Method::HEAD;
        self.req.prefer = Prefer::from_headers(headers);
        if let Some(s) = extensions.get::<Shutdown>() {
            self.req.shutdown = Some(s.clone());
        }
        self
    }

    fn cfg(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.cfg)
    }

    /// The request's `Prefer` header, as [`for_request`](Self::for_request)
    /// read it (for the layers that honour it).
    #[allow(dead_code)] // read by `park` only
    pub(crate) fn prefer(&self) -> Prefer {
        self.req.prefer
    }

    pub(super) fn into_parts(self) -> (Arc<Config>, Unshared) {
        (self.cfg, self.req)
    }

    fn hooks(&mut self) -> &mut Hooks {
        Arc::make_mut(&mut self.cfg().hooks)
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

    /// The heartbeat of the held modes (`start`, `poll`, `handle`). Its
    /// interval is raised to [`min_interval`](Self::min_interval).
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.cfg().heartbeat = heartbeat;
        self
    }

    /// The floor of the heartbeat interval and of the [`poll`](Self::poll)
    /// interval (default [`DEFAULT_MIN_INTERVAL`](Self::DEFAULT_MIN_INTERVAL),
    /// 10 ms): a shorter one is raised to it.
    ///
    /// Every beat or check wakes the server; a client that may choose its
    /// interval could otherwise make it spin (1,000 held responses with a
    /// 1 ms heartbeat kept two cores busy). Raise the floor where intervals
    /// come from requests. It does not apply to the first heartbeat's delay
    /// ([`Heartbeat::after`]), which happens once.
    pub fn min_interval(mut self, floor: Duration) -> Self {
        self.cfg().min_interval = floor;
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
        self.cfg().accepted_at_start = yes;
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
    /// [`DEFAULT_MAX_BUFFERED`](super::DEFAULT_MAX_BUFFERED)). One write larger than the limit is accepted
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
        self.req.shutdown = Some(shutdown);
        self
    }

    /// What [`wait`](Self::wait) does when its deadline passes while the
    /// work is still running: the extension point of `wait` (see
    /// [`OnDeadline`]). Instead of dropping the work and answering with
    /// [`on_timeout`](Self::on_timeout)'s response (or an empty `202`),
    /// `hook` is handed the work as a [`LateWork`](super::LateWork) and
    /// answers.
    ///
    /// The held modes (`start`, `poll`, `handle`) ignore it: their head may
    /// be out before the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use delayed_response::delayed::LateWork;
    /// use delayed_response::{Body, DelayedResponse};
    /// use http::{Response, StatusCode};
    ///
    /// # async fn slow_report() -> &'static str { "report" }
    /// # async fn handler() -> Response<Body> {
    /// // At the deadline, the report goes on in a task of its own (and its
    /// // response, rendered as it would have been in time, to the log);
    /// // the client gets `202` at once.
    /// DelayedResponse::new()
    ///     .timeout(Duration::from_secs(1))
    ///     .on_deadline(|late: LateWork| {
    ///         tokio::spawn(async move {
    ///             let res = late.into_response().await;
    ///             tracing::info!(status = %res.status(), "late report");
    ///         });
    ///         let mut res = Response::new(Body::from("the report will be mailed\n"));
    ///         *res.status_mut() = StatusCode::ACCEPTED;
    ///         res
    ///     })
    ///     .wait(slow_report())
    ///     .await
    /// # }
    /// ```
    pub fn on_deadline(mut self, hook: impl OnDeadline) -> Self {
        self.hooks().on_deadline = Some(DeadlineHook {
            hook: Arc::new(hook),
            typed: None,
        });
        self
    }

    /// [`on_deadline`](Self::on_deadline) for a hook of this crate, which
    /// [`deadline_hook`](Self::deadline_hook) can find again.
    #[allow(dead_code)] // used by `park` only
    pub(crate) fn on_deadline_typed<T: OnDeadline>(mut self, hook: T) -> Self {
        let hook = Arc::new(hook);
        self.hooks().on_deadline = Some(DeadlineHook {
            hook: hook.clone(),
            typed: Some(hook),
        });
        self
    }

    /// The hook set by [`on_deadline_typed`](Self::on_deadline_typed), if it
    /// is a `T`.
    #[allow(dead_code)] // used by `park` only
    pub(crate) fn deadline_hook<T: OnDeadline>(&self) -> Option<&T> {
        self.cfg
            .hooks
            .on_deadline
            .as_ref()?
            .typed
            .as_ref()?
            .downcast_ref()
    }

    /// Runs when the client goes away (or the server shuts down) before the
    /// response finished. Never after a normal completion.
    pub fn on_abort<F>(mut self, hook: F) -> Self
    where
        F: Fn(AbortReason) + Send + Sync + 'static,
    {
        self.req.on_abort = Some(Arc::new(hook));
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
        self.hooks().on_timeout = Some(Arc::new(hook));
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
        self.hooks().on_error = Some(Arc::new(hook));
        self
    }

    /// Runs at every heartbeat tick, with the tick's number (1, 2, …).
    pub fn on_tick<F>(mut self, hook: F) -> Self
    where
        F: Fn(u64) + Send + Sync + 'static,
    {
        self.hooks().on_tick = Some(Arc::new(hook));
        self
    }

    /// Replaces the heartbeat bytes: called at every tick with its number; the
    /// bytes it returns are written (empty bytes write nothing).
    pub fn on_heartbeat<F>(mut self, hook: F) -> Self
    where
        F: Fn(u64) -> Bytes + Send + Sync + 'static,
    {
        self.hooks().on_heartbeat = Some(Arc::new(hook));
        self
    }

    /// Runs once per response with its [`Outcome`] (for logs and metrics).
    pub fn on_outcome<F>(mut self, hook: F) -> Self
    where
        F: Fn(Outcome) + Send + Sync + 'static,
    {
        self.req.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Long-poll: holds the response, writing heartbeats, until `work`
    /// finishes (see the [module docs](crate::delayed) on head timing).
    pub fn start<F>(self, work: F) -> ResponseFuture
    where
        F: Future + Send + 'static,
        F::Output: IntoReply,
    {
        if self.cfg.detach {
            let work = spawn(work);
            self.held(Source::work(work), Mode::Start, None)
        } else {
            let work = async move { work.await.into_reply() };
            self.held(Source::work(work), Mode::Start, None)
        }
    }

    /// Polling: runs `check` at once, then every `interval`, until it returns
    /// `Some(result)`; meanwhile the response is held as in
    /// [`start`](Self::start). `Some(Err(e))` ends it with an error.
    ///
    /// An `interval` under [`min_interval`](Self::min_interval) is raised to it.
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
        let interval = self.cfg.poll_interval(interval);
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
        let completion = Completion::new(shared.clone());
        let future = self.held(Source::handle(shared.clone()), Mode::Handle, Some(shared));
        (future, completion)
    }

    fn held<W>(
        self,
        source: Source<W>,
        mode: Mode,
        handle: Option<Arc<handle::Shared>>,
    ) -> ResponseFuture
    where
        W: Future<Output = super::Reply> + Send + 'static,
    {
        let tracker = Tracker::new(&self.req, mode, handle);
        ResponseFuture::new(Held::new(self.cfg, self.req, source, tracker))
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
