//! The engine of the held modes (`start`, `poll`, `handle`): a future that
//! decides when the head goes out, then a body that writes heartbeats until
//! the result is rendered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::time::{sleep_until, Instant, Sleep};

use super::handle::{Next, Shared};
use super::reply::{merge_headers, respond, Reply};
use super::shutdown::Watch;
use super::tracker::Tracker;
use super::{AbortReason, Config, Outcome};
use crate::body::Body;
use crate::error::{Error, Kind};

pub(crate) type BoxWork = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

pub(crate) enum Source {
    Work(BoxWork),
    Handle(Arc<Shared>),
    Done,
}

enum Event {
    /// Progress bytes from a completion.
    Data(Bytes),
    /// A heartbeat is due; these are its bytes (maybe empty).
    Beat(Bytes),
    Result(Reply),
    Timeout,
    Shutdown,
}

/// What a held response is waiting on, and its timers.
pub(crate) struct Held {
    cfg: Arc<Config>,
    source: Source,
    beat: Pin<Box<Sleep>>,
    ticks: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    shutdown: Watch,
    tracker: Tracker,
}

impl Held {
    pub(crate) fn new(cfg: Arc<Config>, source: Source, tracker: Tracker) -> Self {
        let now = Instant::now();
        let beat = Box::pin(sleep_until(now + cfg.heartbeat.initial_delay()));
        let deadline = cfg.timeout.map(|d| Box::pin(sleep_until(now + d)));
        let shutdown = Watch::new(cfg.shutdown.as_ref());
        Held {
            cfg,
            source,
            beat,
            ticks: 0,
            deadline,
            shutdown,
            tracker,
        }
    }

    /// The next thing that happens. The source is polled first, so a result
    /// that is ready wins over a heartbeat that is due at the same moment.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        match &mut self.source {
            Source::Work(work) => {
                if let Poll::Ready(reply) = work.as_mut().poll(cx) {
                    self.source = Source::Done;
                    return Poll::Ready(Event::Result(reply));
                }
            }
            Source::Handle(shared) => match shared.poll_next(cx) {
                Poll::Ready(Next::Data(data)) => {
                    // Heartbeats fill silences: the next one is due a full
                    // interval after this write.
                    let next = Instant::now() + self.cfg.heartbeat.interval();
                    self.beat.as_mut().reset(next);
                    return Poll::Ready(Event::Data(data));
                }
                Poll::Ready(Next::End(reply)) => {
                    self.source = Source::Done;
                    return Poll::Ready(Event::Result(reply));
                }
                Poll::Pending => {}
            },
            Source::Done => {}
        }
        let source = &self.source;
        let result_begun = || matches!(source, Source::Handle(shared) if shared.result_begun());
        if self.shutdown.poll_end(cx, result_begun).is_ready() {
            return Poll::Ready(Event::Shutdown);
        }
        if let Some(deadline) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                return Poll::Ready(Event::Timeout);
            }
        }
        if self.beat.as_mut().poll(cx).is_ready() {
            self.ticks += 1;
            let interval = self.cfg.heartbeat.interval();
            // Keep the schedule (no drift); after a stall, skip missed beats
            // rather than burst them.
            let mut next = self.beat.deadline() + interval;
            let now = Instant::now();
            if next <= now {
                next = now + interval;
            }
            self.beat.as_mut().reset(next);
            let hooks = &self.cfg.hooks;
            if let Some(on_tick) = &hooks.on_tick {
                on_tick(self.ticks);
            }
            let bytes = match &hooks.on_heartbeat {
                Some(hook) => hook(self.ticks),
                None => self.cfg.heartbeat.payload().clone(),
            };
            tracing::debug!(parent: self.tracker.span(), tick = self.ticks, bytes = bytes.len(), "heartbeat");
            return Poll::Ready(Event::Beat(bytes));
        }
        Poll::Pending
    }

    fn head(&self, status: StatusCode, body: Body) -> Response<Body> {
        let mut res = Response::new(body);
        *res.status_mut() = status;
        merge_headers(res.headers_mut(), &self.cfg.headers, http::HeaderMap::new());
        res
    }
}

/// The future returned by [`DelayedResponse::start`](crate::DelayedResponse::start),
/// [`poll`](crate::DelayedResponse::poll) and
/// [`handle`](crate::DelayedResponse::handle).
///
/// It resolves to the response as soon as the head has to go out: when the
/// result is ready (with its real status), when the first heartbeat or
/// progress write is due (with the pending status, 202 by default), at the
/// deadline, or on shutdown.
///
/// # Cancel safety
///
/// Dropping it before it resolves is how hyper reports a client that went
/// away: the work is dropped (unless detached) and the abort hook fires.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    held: Option<Held>,
}

impl ResponseFuture {
    pub(crate) fn new(held: Held) -> Self {
        ResponseFuture { held: Some(held) }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("resolved", &self.held.is_none())
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        let this = self.get_mut();
        let Some(mut held) = this.held.take() else {
            // Polled after it resolved: never resolves again.
            return Poll::Pending;
        };
        if held.cfg.commit_at_start {
            let status = held.cfg.pending_status;
            return Poll::Ready(commit(held, status, Bytes::new()));
        }
        let event = match held.poll_event(cx) {
            Poll::Ready(event) => event,
            Poll::Pending => {
                this.held = Some(held);
                return Poll::Pending;
            }
        };
        Poll::Ready(match event {
            Event::Data(first) | Event::Beat(first) => {
                let status = held.cfg.pending_status;
                commit(held, status, first)
            }
            Event::Result(reply) => render_early(held.cfg, held.tracker, reply),
            Event::Timeout => timeout_early(held),
            Event::Shutdown => shutdown_early(held),
        })
    }
}

/// Sends the head now; the body carries on waiting.
fn commit(held: Held, status: StatusCode, first: Bytes) -> Response<Body> {
    let mut res = held.head(status, Body::empty());
    if held.cfg.head_request {
        // Nothing of the body will be sent: the response is done.
        let mut tracker = held.tracker;
        tracker.finish(Outcome::Done);
        return res;
    }
    *res.body_mut() = Body::boxed(HeldBody {
        state: State::Waiting(Box::new(held)),
        pending: first,
    });
    res
}

/// The result came before the head went out: it gets its real status.
pub(crate) fn render_early(cfg: Arc<Config>, tracker: Tracker, reply: Reply) -> Response<Body> {
    match reply.inner {
        Ok(rendered) => {
            let res = respond(cfg.status, &cfg.headers, rendered);
            guard_body(res, tracker, Outcome::Done)
        }
        Err(error) => {
            tracing::debug!(parent: tracker.span(), %error, "work failed");
            let res = match &cfg.hooks.on_error {
                Some(hook) => hook(&error),
                None => default_error_response(),
            };
            guard_body(res, tracker, Outcome::Error)
        }
    }
}

pub(crate) fn default_error_response() -> Response<Body> {
    let mut res = Response::new(Body::from("internal server error\n"));
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}

pub(crate) fn timeout_response(cfg: &Config) -> Response<Body> {
    match &cfg.hooks.on_timeout {
        Some(hook) => hook(),
        None => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::ACCEPTED;
            merge_headers(res.headers_mut(), &cfg.headers, http::HeaderMap::new());
            res
        }
    }
}

pub(crate) fn shutdown_response() -> Response<Body> {
    let mut res = Response::new(Body::from("server shutting down\n"));
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

fn timeout_early(held: Held) -> Response<Body> {
    let Held {
        cfg,
        tracker,
        source,
        ..
    } = held;
    drop(source);
    let res = timeout_response(&cfg);
    guard_body(res, tracker, Outcome::Timeout)
}

fn shutdown_early(held: Held) -> Response<Body> {
    let mut tracker = held.tracker;
    tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
    shutdown_response()
}

/// Keeps the tracker alive until a streamed body ends; a body that is
/// already complete (no frames or one known buffer) finishes it at once.
pub(crate) fn guard_body(
    res: Response<Body>,
    mut tracker: Tracker,
    outcome: Outcome,
) -> Response<Body> {
    use http_body::Body as _;
    if tracker.head_request()
        || res.body().is_end_stream()
        || res.body().size_hint().exact().is_some()
    {
        tracker.finish(outcome);
        return res;
    }
    res.map(|body| {
        Body::boxed(HeldBody {
            state: State::Rendering {
                body,
                tracker,
                outcome,
            },
            pending: Bytes::new(),
        })
    })
}

/// The body of a held response.
struct HeldBody {
    state: State,
    /// Bytes to send before polling anything (the write or heartbeat that
    /// committed the head).
    pending: Bytes,
}

enum State {
    Waiting(Box<Held>),
    /// About to end abnormally. hyper closes the connection as soon as a
    /// body returns an error, without flushing the frames it has buffered,
    /// so the body first yields `Pending` once (waking itself) to let hyper
    /// write out what came before.
    Failing(Error),
    Rendering {
        body: Body,
        tracker: Tracker,
        outcome: Outcome,
    },
    Done,
}

type PollFrame = Poll<Option<Result<Frame<Bytes>, Error>>>;

impl HeldBody {
    /// The head is out and the waiting is over: render what ended it.
    fn finish_waiting(
        &mut self,
        held: Held,
        event: Event,
        cx: &mut Context<'_>,
    ) -> Option<PollFrame> {
        let Held {
            cfg,
            mut tracker,
            source,
            ..
        } = held;
        // Dropping the source cancels the work (a detached one keeps running
        // in its own task).
        drop(source);
        let (hook_body, outcome, error) = match event {
            Event::Result(reply) => match reply.inner {
                Ok(rendered) => (Some(rendered.body), Outcome::Done, None),
                Err(error) => {
                    tracing::debug!(parent: tracker.span(), %error, "work failed after the head was sent");
                    let body = cfg.hooks.on_error.as_ref().map(|h| h(&error).into_body());
                    (body, Outcome::Error, Some(error))
                }
            },
            Event::Timeout => {
                let body = cfg.hooks.on_timeout.as_ref().map(|h| h().into_body());
                (body, Outcome::Timeout, Some(Error::new(Kind::Timeout)))
            }
            Event::Shutdown => (
                None,
                Outcome::Aborted(AbortReason::Shutdown),
                Some(Error::new(Kind::Shutdown)),
            ),
            Event::Data(_) | Event::Beat(_) => (None, Outcome::Done, None),
        };
        match (hook_body, error) {
            (Some(body), _) => {
                self.state = State::Rendering {
                    body,
                    tracker,
                    outcome,
                };
                None
            }
            (None, Some(error)) => {
                tracker.finish(outcome);
                Some(self.fail_after_flush(error, cx))
            }
            (None, None) => {
                tracker.finish(outcome);
                self.state = State::Done;
                Some(Poll::Ready(None))
            }
        }
    }
}

impl HeldBody {
    /// Ends abnormally on the next poll, after hyper has flushed.
    fn fail_after_flush(&mut self, error: Error, cx: &mut Context<'_>) -> PollFrame {
        self.state = State::Failing(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.pending)))));
        }
        loop {
            match std::mem::replace(&mut this.state, State::Done) {
                State::Waiting(mut held) => match held.poll_event(cx) {
                    Poll::Pending => {
                        this.state = State::Waiting(held);
                        return Poll::Pending;
                    }
                    Poll::Ready(Event::Data(data) | Event::Beat(data)) => {
                        this.state = State::Waiting(held);
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Poll::Ready(event) => {
                        if let Some(poll) = this.finish_waiting(*held, event, cx) {
                            return poll;
                        }
                    }
                },
                State::Rendering {
                    mut body,
                    mut tracker,
                    outcome,
                } => {
                    return match Pin::new(&mut body).poll_frame(cx) {
                        Poll::Pending => {
                            this.state = State::Rendering {
                                body,
                                tracker,
                                outcome,
                            };
                            Poll::Pending
                        }
                        Poll::Ready(Some(Ok(frame))) => {
                            // hyper stops polling once `is_end_stream` is true
                            // and drops the body without asking for `None`:
                            // finish now, or the drop would look like an abort.
                            if body.is_end_stream() {
                                tracker.finish(outcome);
                            } else {
                                this.state = State::Rendering {
                                    body,
                                    tracker,
                                    outcome,
                                };
                            }
                            Poll::Ready(Some(Ok(frame)))
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracker.finish(Outcome::Error);
                            this.fail_after_flush(error, cx)
                        }
                        Poll::Ready(None) => {
                            tracker.finish(outcome);
                            Poll::Ready(None)
                        }
                    };
                }
                State::Failing(error) => return Poll::Ready(Some(Err(error))),
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done => self.pending.is_empty(),
            State::Rendering { body, .. } => self.pending.is_empty() && body.is_end_stream(),
            State::Waiting(_) | State::Failing(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Rendering { body, .. } if self.pending.is_empty() => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
