//! The engine of the held modes (`start`, `poll`, `handle`): a future that
//! decides when the head goes out, then a body that writes heartbeats until
//! the result is rendered.
//!
//! A held response is one allocation, made when it starts and pinned until
//! it ends: the work, the timers, the shutdown listener, the tracker and the
//! body's state. The response future holds the box (so hyper's per-connection
//! slot for it stays one pointer wide), and once the head goes out the same
//! box becomes the body.
//!
//! Heartbeats: the first at `initial_delay` from the response's own timer,
//! then from the shared schedule of its interval (`tick.rs`); a progress
//! write restarts the count on the own timer, which also carries the
//! deadline.
//!
//! (Over 500 lines: the response future and the body are two faces of the
//! one pinned `Held`, and share its methods; the rendering of a result is in
//! `guard.rs`.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::SizeHint;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use super::config::{Config, Unshared};
use super::guard::{is_complete, outcome_of, PollFrame, Rendering};
use super::handle::{Next, Shared};
use super::reply::{merge_headers, render, shutdown_response, timeout_response, Reply};
use super::shutdown::Listener;
use super::tick::Tick;
use super::time::instant_after;
use super::tracker::Tracker;
use super::{AbortReason, Outcome};
use crate::body::Body;
use crate::error::{Error, Kind};

pin_project! {
    /// What a held response waits on.
    #[project = SourceProj]
    pub(crate) enum Source<W> {
        Work { #[pin] work: W },
        Handle { shared: Arc<Shared> },
        Done,
    }
}

impl<W> Source<W> {
    pub(crate) fn work(work: W) -> Self {
        Source::Work { work }
    }
}

impl Source<std::future::Pending<Reply>> {
    pub(crate) fn handle(shared: Arc<Shared>) -> Self {
        Source::Handle { shared }
    }
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

/// Where a held response is.
enum Phase {
    /// The response future is waiting for a reason to send the head.
    Head,
    /// The head is out; the body waits for the result.
    Waiting,
    /// The result (or its failure) is being written (boxed: a held response
    /// spends most of its life waiting, with this variant unused).
    Rendering(Box<Rendering>),
    /// Over: nothing more to write.
    Done,
}

pin_project! {
    /// A held response, pinned in its box from start to end.
    pub(crate) struct Held<W> {
        #[pin]
        source: Source<W>,
        // The response's own timer: the first heartbeat, the one after a
        // progress write, and the deadline. Made at the first poll that
        // does not find the result ready, so that a ready result (the fast
        // path) costs no timer, and freed once the shared schedule gives
        // the heartbeats and no deadline is left (so that a response held
        // for long does not keep it).
        timer: Option<Pin<Box<Sleep>>>,
        // The next heartbeat of the own timer; `None` while the shared
        // schedule gives them.
        beat_due: Option<Instant>,
        deadline: Option<Instant>,
        tick: Option<Tick>,
        shutdown: Option<Listener>,
        ticks: u64,
        // The last event was a heartbeat of the shared schedule.
        beat_by_tick: bool,
        // Bytes to send before polling anything (the write or heartbeat
        // that committed the head).
        pending: Bytes,
        phase: Phase,
        cfg: Arc<Config>,
        tracker: Tracker,
    }
}

impl<W: Future<Output = Reply> + Send + 'static> Held<W> {
    pub(crate) fn new(
        cfg: Arc<Config>,
        req: Unshared,
        source: Source<W>,
        tracker: Tracker,
    ) -> Self {
        let started = Instant::now();
        Held {
            source,
            timer: None,
            beat_due: Some(instant_after(started, cfg.heartbeat.initial_delay())),
            deadline: cfg.timeout.map(|d| instant_after(started, d)),
            tick: None,
            shutdown: req.shutdown.map(Listener::new),
            ticks: 0,
            beat_by_tick: false,
            pending: Bytes::new(),
            phase: Phase::Head,
            cfg,
            tracker,
        }
    }
}

impl<W: Future<Output = Reply>> Held<W> {
    /// The next thing that happens. The source is polled first, so a result
    /// that is ready wins over a heartbeat that is due at the same moment.
    fn poll_event(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let mut this = self.project();
        let mut data = None;
        match this.source.as_mut().project() {
            SourceProj::Work { work } => {
                if let Poll::Ready(reply) = work.poll(cx) {
                    // Drops the work where it is.
                    this.source.set(Source::Done);
                    return Poll::Ready(Event::Result(reply));
                }
            }
            SourceProj::Handle { shared } => match shared.poll_next(cx) {
                Poll::Ready(Next::Data(bytes)) => data = Some(bytes),
                Poll::Ready(Next::End(reply)) => {
                    this.source.set(Source::Done);
                    return Poll::Ready(Event::Result(reply));
                }
                Poll::Pending => {}
            },
            SourceProj::Done => {}
        }
        let cfg = &**this.cfg;
        if let Some(data) = data {
            // Heartbeats fill silences: the next one is due a full interval
            // after this write, from the own timer.
            *this.tick = None;
            *this.beat_due = Some(instant_after(Instant::now(), cfg.beat_interval()));
            rearm(this.timer, *this.beat_due, *this.deadline);
            return Poll::Ready(Event::Data(data));
        }
        if this.timer.is_none() && (this.beat_due.is_some() || this.deadline.is_some()) {
            // The first poll that did not find the result ready.
            rearm(this.timer, *this.beat_due, *this.deadline);
        }
        if let Some(listener) = this.shutdown.as_mut() {
            if listener.poll(cx).is_ready() {
                *this.shutdown = None;
                // A handle whose result has begun (a transfer in progress)
                // is left to the server's grace period; see `Shutdown`.
                let begun = matches!(
                    this.source.as_mut().project(),
                    SourceProj::Handle { shared } if shared.result_begun()
                );
                if !begun {
                    return Poll::Ready(Event::Shutdown);
                }
            }
        }
        if let Some(timer) = this.timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                let fired = timer.deadline();
                if this.deadline.is_some_and(|d| d <= fired) {
                    *this.deadline = None;
                    return Poll::Ready(Event::Timeout);
                }
                if let Some(due) = this.beat_due.filter(|&b| b <= fired) {
                    let interval = cfg.beat_interval();
                    // Keep the schedule (no drift); after a stall, skip
                    // missed beats rather than burst them.
                    let now = Instant::now();
                    let mut next = instant_after(due, interval);
                    if next <= now {
                        next = instant_after(now, interval);
                    }
                    // From now on, the shared schedule of the interval (or
                    // this timer, outside a runtime's reach).
                    *this.tick = Tick::join(interval, next, cx);
                    *this.beat_due = this.tick.is_none().then_some(next);
                    let writes =
                        matches!(this.source.as_mut().project(), SourceProj::Handle { .. });
                    if this.beat_due.is_none() && this.deadline.is_none() && !writes {
                        // Nothing left for the own timer: free it (a handle
                        // keeps it for the silence after its next write).
                        *this.timer = None;
                    } else {
                        rearm(this.timer, *this.beat_due, *this.deadline);
                    }
                    return Poll::Ready(beat(this.ticks, cfg, this.tracker));
                }
            }
        }
        if let Some(tick) = this.tick.as_mut() {
            if tick.poll(cx).is_ready() {
                *this.beat_by_tick = true;
                return Poll::Ready(beat(this.ticks, cfg, this.tracker));
            }
        }
        Poll::Pending
    }

    /// Until the head goes out: what the response future resolves to.
    fn poll_head(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Head> {
        if self.cfg.accepted_at_start {
            let status = self.cfg.pending_status;
            return Poll::Ready(self.commit(status));
        }
        let event = match self.as_mut().poll_event(cx) {
            Poll::Ready(event) => event,
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(match event {
            Event::Data(first) | Event::Beat(first) => {
                *self.as_mut().project().pending = first;
                let status = self.cfg.pending_status;
                self.commit(status)
            }
            Event::Result(reply) => {
                let this = self.as_mut().project();
                let outcome = outcome_of(this.tracker, &reply);
                let res = render(this.cfg, reply);
                self.early(res, outcome)
            }
            Event::Timeout => {
                let mut this = self.as_mut().project();
                this.source.set(Source::Done);
                let res = timeout_response(this.cfg);
                self.early(res, Outcome::Timeout)
            }
            Event::Shutdown => {
                let this = self.project();
                this.tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
                Head::Whole(shutdown_response())
            }
        })
    }

    /// Sends the head now; the body carries on waiting.
    fn commit(self: Pin<&mut Self>, status: StatusCode) -> Head {
        let this = self.project();
        let mut head = Response::new(());
        *head.status_mut() = status;
        merge_headers(
            head.headers_mut(),
            &this.cfg.headers,
            http::HeaderMap::new(),
        );
        if this.tracker.head_request() {
            // Nothing of the body will be sent: the response is done.
            this.tracker.finish(Outcome::Done);
            return Head::Whole(head.map(|()| Body::empty()));
        }
        *this.phase = Phase::Waiting;
        Head::Body(head)
    }

    /// A result before the head: its own status, and this box as its body
    /// while it streams.
    fn early(self: Pin<&mut Self>, res: Response<Body>, outcome: Outcome) -> Head {
        let this = self.project();
        if is_complete(this.tracker, &res) {
            this.tracker.finish(outcome);
            return Head::Whole(res);
        }
        let (parts, body) = res.into_parts();
        *this.phase = Phase::Rendering(Box::new(Rendering::new(body, outcome)));
        Head::Body(Response::from_parts(parts, ()))
    }

    /// The head is out and the waiting is over: render what ended it. `None`
    /// to go on polling (a body to render).
    fn finish_waiting(
        self: Pin<&mut Self>,
        event: Event,
        cx: &mut Context<'_>,
    ) -> Option<PollFrame> {
        let mut this = self.project();
        // Dropping the source cancels the work (a detached one keeps running
        // in its own task).
        this.source.set(Source::Done);
        *this.tick = None;
        *this.timer = None;
        let cfg = &**this.cfg;
        let (hook_body, outcome, error) = match event {
            Event::Result(reply) => match reply.inner {
                Ok(rendered) => (Some(rendered.body), Outcome::Done, None),
                Err(error) => {
                    tracing::debug!(parent: this.tracker.span(), %error, "work failed after the head was sent");
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
                *this.phase = Phase::Rendering(Box::new(Rendering::new(body, outcome)));
                None
            }
            (None, Some(error)) => {
                this.tracker.finish(outcome);
                let (rendering, poll) = Rendering::failing(error, cx);
                *this.phase = Phase::Rendering(Box::new(rendering));
                Some(poll)
            }
            (None, None) => {
                this.tracker.finish(outcome);
                *this.phase = Phase::Done;
                Some(Poll::Ready(None))
            }
        }
    }
}

/// Sets the own timer to the earlier of a heartbeat and the deadline (made
/// on first use; left alone when neither is due).
fn rearm(
    timer: &mut Option<Pin<Box<Sleep>>>,
    beat_due: Option<Instant>,
    deadline: Option<Instant>,
) {
    let at = match (beat_due, deadline) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return,
    };
    match timer {
        Some(timer) => timer.as_mut().reset(at),
        None => *timer = Some(Box::pin(sleep_until(at))),
    }
}

/// A heartbeat tick: its hooks, its bytes, its trace.
fn beat(ticks: &mut u64, cfg: &Config, tracker: &Tracker) -> Event {
    *ticks += 1;
    let hooks = &cfg.hooks;
    if let Some(on_tick) = &hooks.on_tick {
        on_tick(*ticks);
    }
    let bytes = match &hooks.on_heartbeat {
        Some(hook) => hook(*ticks),
        None => cfg.heartbeat.payload().clone(),
    };
    tracing::debug!(parent: tracker.span(), tick = *ticks, bytes = bytes.len(), "heartbeat");
    Event::Beat(bytes)
}

impl<W: Future<Output = Reply>> http_body::Body for Held<W> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        loop {
            let this = self.as_mut().project();
            if !this.pending.is_empty() {
                let data = std::mem::take(this.pending);
                return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
            }
            match this.phase {
                Phase::Rendering(rendering) => return rendering.poll_frame(this.tracker, cx),
                // The body is polled only after the head went out.
                Phase::Head | Phase::Done => return Poll::Ready(None),
                Phase::Waiting => {}
            }
            // hyper polls the body again at once after each data frame.
            // After a heartbeat of the shared schedule, nothing can be new
            // for this task: the work, the shutdown listener and the next
            // firing were all registered with this waker by the poll that
            // gave the heartbeat, so anything that happened since has woken
            // the task, which polls again. (A beat from the own timer does
            // not skip: its timer was reset, and registers at its next poll.)
            if std::mem::take(this.beat_by_tick)
                && this.tick.as_ref().is_some_and(|t| t.is_registered(cx))
            {
                return Poll::Pending;
            }
            match self.as_mut().poll_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Event::Data(data) | Event::Beat(data)) => {
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                    }
                }
                Poll::Ready(event) => {
                    if let Some(poll) = self.as_mut().finish_waiting(event, cx) {
                        return poll;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty()
            && match &self.phase {
                Phase::Rendering(rendering) => rendering.is_end_stream(),
                Phase::Done => true,
                Phase::Head | Phase::Waiting => false,
            }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.phase {
            Phase::Rendering(rendering) if self.pending.is_empty() => rendering.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// What the response future resolves to.
enum Head {
    /// The head goes out now; the held response becomes its body.
    Body(Response<()>),
    /// The whole response; the held response is over.
    Whole(Response<Body>),
}

/// A held response of any work, behind one pointer.
trait Erased: Send {
    fn poll_head(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Head>;
    fn into_body(self: Pin<Box<Self>>) -> Body;
}

impl<W: Future<Output = Reply> + Send + 'static> Erased for Held<W> {
    fn poll_head(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Head> {
        Held::poll_head(self, cx)
    }

    fn into_body(self: Pin<Box<Self>>) -> Body {
        Body::pinned(self)
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
    held: Option<Pin<Box<dyn Erased>>>,
}

impl ResponseFuture {
    pub(crate) fn new<W: Future<Output = Reply> + Send + 'static>(held: Held<W>) -> Self {
        ResponseFuture {
            held: Some(Box::pin(held)),
        }
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
        let Some(held) = this.held.as_mut() else {
            // Polled after it resolved: never resolves again.
            return Poll::Pending;
        };
        let head = match held.as_mut().poll_head(cx) {
            Poll::Ready(head) => head,
            Poll::Pending => return Poll::Pending,
        };
        let Some(held) = this.held.take() else {
            return Poll::Pending;
        };
        Poll::Ready(match head {
            Head::Body(head) => head.map(|()| held.into_body()),
            Head::Whole(res) => res,
        })
    }
}

#[cfg(test)]
mod tests {
    // Regression (issue 12): a held response was five allocations (1,425
    // bytes over a bare hyper connection); every byte of this one is paid
    // per held connection.
    #[test]
    fn a_held_response_with_small_work_fits_in_320_bytes() {
        let size = std::mem::size_of::<super::Held<std::future::Pending<super::Reply>>>();
        assert!(size <= 320, "a held response takes {size} bytes");
    }
}
