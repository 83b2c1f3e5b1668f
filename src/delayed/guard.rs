//! A rendered result on its way out: its body keeps the response's tracker
//! until the last frame, so that a client leaving mid-body is an abort and a
//! body that ends is not.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};

use super::config::Config;
use super::reply::{render, Reply};
use super::tracker::Tracker;
use super::Outcome;
use crate::body::Body;
use crate::error::Error;

pub(super) type PollFrame = Poll<Option<Result<Frame<Bytes>, Error>>>;

/// The result came before the head went out: it gets its real status.
pub(crate) fn render_early(cfg: &Config, tracker: Tracker, reply: Reply) -> Response<Body> {
    let outcome = outcome_of(&tracker, &reply);
    guard_body(render(cfg, reply), tracker, outcome)
}

/// How a result ends the response; a failure is traced.
pub(super) fn outcome_of(tracker: &Tracker, reply: &Reply) -> Outcome {
    match &reply.inner {
        Ok(_) => Outcome::Done,
        Err(error) => {
            tracing::debug!(parent: tracker.span(), %error, "work failed");
            Outcome::Error
        }
    }
}

/// Does `res` need its tracker until its body ends? Not when nothing or one
/// known buffer of it will be sent.
pub(super) fn is_complete(tracker: &Tracker, res: &Response<Body>) -> bool {
    tracker.head_request() || res.body().is_end_stream() || res.body().size_hint().exact().is_some()
}

/// Keeps the tracker alive until a streamed body ends; a body that is
/// already complete finishes it at once.
pub(crate) fn guard_body(
    res: Response<Body>,
    mut tracker: Tracker,
    outcome: Outcome,
) -> Response<Body> {
    if is_complete(&tracker, &res) {
        tracker.finish(outcome);
        return res;
    }
    res.map(|body| {
        Body::boxed(GuardBody {
            rendering: Rendering::new(body, outcome),
            tracker,
        })
    })
}

struct GuardBody {
    rendering: Rendering,
    tracker: Tracker,
}

impl http_body::Body for GuardBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        let this = self.get_mut();
        this.rendering.poll_frame(&mut this.tracker, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.rendering.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.rendering.size_hint()
    }
}

/// A result's body being written, and then how the response ended.
pub(super) struct Rendering {
    state: State,
}

enum State {
    Body {
        body: Body,
        outcome: Outcome,
    },
    /// About to end abnormally. hyper closes the connection as soon as a
    /// body returns an error, without flushing the frames it has buffered,
    /// so the body first yields `Pending` once (waking itself) to let hyper
    /// write out what came before.
    Failing(Error),
    Done,
}

impl Rendering {
    pub(super) fn new(body: Body, outcome: Outcome) -> Self {
        Rendering {
            state: State::Body { body, outcome },
        }
    }

    /// Ends abnormally on the next poll, after hyper has flushed.
    pub(super) fn failing(error: Error, cx: &mut Context<'_>) -> (Self, PollFrame) {
        cx.waker().wake_by_ref();
        (
            Rendering {
                state: State::Failing(error),
            },
            Poll::Pending,
        )
    }

    pub(super) fn poll_frame(&mut self, tracker: &mut Tracker, cx: &mut Context<'_>) -> PollFrame {
        match &mut self.state {
            State::Body { body, outcome } => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // hyper stops polling once `is_end_stream` is true and
                    // drops the body without asking for `None`: finish now,
                    // or the drop would look like an abort.
                    if body.is_end_stream() {
                        tracker.finish(*outcome);
                        self.state = State::Done;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(error))) => {
                    tracker.finish(Outcome::Error);
                    let poll;
                    (*self, poll) = Rendering::failing(error, cx);
                    poll
                }
                Poll::Ready(None) => {
                    tracker.finish(*outcome);
                    self.state = State::Done;
                    Poll::Ready(None)
                }
            },
            State::Failing(_) => match std::mem::replace(&mut self.state, State::Done) {
                State::Failing(error) => Poll::Ready(Some(Err(error))),
                _ => Poll::Ready(None),
            },
            State::Done => Poll::Ready(None),
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Body { body, .. } => body.is_end_stream(),
            State::Failing(_) => false,
            State::Done => true,
        }
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Body { body, .. } => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
