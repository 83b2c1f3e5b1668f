//! The engine of the held modes (`start`, `poll`, `handle`): a future that
//! decides when the head goes out, then a body that writes heartbeats until
//! the result is rendered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::config::Config;
use super::handle::{Next, Shared};
use super::reply::{merge_headers, render, shutdown_response, timeout_response, Reply};
use super::time::instant_after;
use super::tracker::Tracker;
use super::{AbortReason, Outcome};
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

pin_project! {
    /// The timers of a held response, pinned together in one allocation
    /// (the response future and then its body move; the timers stay put).
    struct Timers {
        #[pin]
        beat: Sleep,
        #[pin]
        deadline: Option<Sleep>,
        #[pin]
        shutdown: Option<WaitForCancellationFutureOwned>,
    }
}

impl Timers {
    fn new(cfg: &Config, started: Instant) -> Self {
        Timers {
            beat: sleep_until(instant_after(started, cfg.heartbeat.initial_delay())),
            deadline: cfg.timeout.map(|d| sleep_until(instant_after(started, d))),
            shutdown: cfg
                .shutdown
                .as_ref()
                .map(|s| s.token().clone().cancelled_owned()),
        }
    }
}

/// What a held response is waiting on, and its timers.
pub(crate) struct Held {
    cfg: Arc<Config>,
    source: Source,
    started: Instant,
    /// Made at the first poll that does not find the result ready, so that a
    /// result that is ready at once (the fast path) costs no timers.
    timers: Option<Pin<Box<Timers>>>,
    ticks: u64,
    tracker: Tracker,
}

impl Held {
    pub(crate) fn new(cfg: Arc<Config>, source: Source, tracker: Tracker) -> Self {
        Held {
            cfg,
            source,
            started: Instant::now(),
            timers: None,
            ticks: 0,
            tracker,
        }
    }

    /// The next thing that happens. The source is polled first, so a result
    /// that is ready wins over a heartbeat that is due at the same moment.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let mut data = None;
        match &mut self.source {
            Source::Work(work) => {
                if let Poll::Ready(reply) = work.as_mut().poll(cx) {
                    self.source = Source::Done;
                    return Poll::Ready(Event::Result(reply));
                }
            }
            Source::Handle(shared) => match shared.poll_next(cx) {
                Poll::Ready(Next::Data(bytes)) => data = Some(bytes),
                Poll::Ready(Next::End(reply)) => {
                    self.source = Source::Done;
                    return Poll::Ready(Event::Result(reply));
                }
                Poll::Pending => {}
            },
            Source::Done => {}
        }
        let (cfg, started) = (&self.cfg, self.started);
        let timers = self
            .timers
            .get_or_insert_with(|| Box::pin(Timers::new(cfg, started)));
        let mut t = timers.as_mut().project();
        let interval = self.cfg.beat_interval();
        if let Some(data) = data {
            // Heartbeats fill silences: the next one is due a full interval
            // after this write.
            t.beat
                .as_mut()
                .reset(instant_after(Instant::now(), interval));
            return Poll::Ready(Event::Data(data));
        }
        if let Some(shutdown) = t.shutdown.as_mut().as_pin_mut() {
            if shutdown.poll(cx).is_ready() {
                t.shutdown.set(None);
                return Poll::Ready(Event::Shutdown);
            }
        }
        if let Some(deadline) = t.deadline.as_mut().as_pin_mut() {
            if deadline.poll(cx).is_ready() {
                t.deadline.set(None);
                return Poll::Ready(Event::Timeout);
            }
        }
        if t.beat.as_mut().poll(cx).is_ready() {
            self.ticks += 1;
            // Keep the schedule (no drift); after a stall, skip missed beats
            // rather than burst them.
            let now = Instant::now();
            let mut next = instant_after(t.beat.deadline(), interval);
            if next <= now {
                next = instant_after(now, interval);
            }
            t.beat.as_mut().reset(next);
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
        if held.cfg.accepted_at_start {
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
        state: State::Waiting(held),
        pending: first,
    });
    res
}

/// The result came before the head went out: it gets its real status.
pub(crate) fn render_early(cfg: Arc<Config>, tracker: Tracker, reply: Reply) -> Response<Body> {
    let outcome = match &reply.inner {
        Ok(_) => Outcome::Done,
        Err(error) => {
            tracing::debug!(parent: tracker.span(), %error, "work failed");
            Outcome::Error
        }
    };
    guard_body(render(&cfg, reply), tracker, outcome)
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
    Waiting(Held),
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
                        if let Some(poll) = this.finish_waiting(held, event, cx) {
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
