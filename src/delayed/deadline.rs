//! The extension point of `wait`: what happens when the deadline passes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Response;

use super::config::Config;
use super::reply::render;
use super::wait::BoxWork;
use crate::body::Body;

/// What [`wait`](super::DelayedResponse::wait) does when its deadline passes
/// while the work is still running; set with
/// [`DelayedResponse::on_deadline`](super::DelayedResponse::on_deadline).
///
/// Without one, `wait` drops the work at the deadline and answers with the
/// [`on_timeout`](super::DelayedResponse::on_timeout) hook's response (an
/// empty `202 Accepted` by default). With one, the hook is handed the running
/// work as a [`LateWork`] and its answer goes out instead; it may keep the
/// work running, hand it to a task, or drop it. The outcome reported is
/// [`Outcome::Timeout`](super::Outcome::Timeout) either way.
///
/// Besides [`on_deadline`](Self::on_deadline), a hook may choose the
/// deadline of each request ([`deadline`](Self::deadline)) and add to an
/// answer given in time ([`in_time`](Self::in_time)). The `park` layer (feature
/// `park`) is one: it honours the request's `Prefer: wait=N` and
/// `respond-async` there, and parks the late work behind a status URL.
///
/// Any `Fn(LateWork) -> Response<Body>` is one (the deadline is then the
/// builder's [`timeout`](super::DelayedResponse::timeout)).
///
/// # Examples
///
/// A hook of its own type, which also sets a shorter deadline for cheap
/// requests:
///
/// ```
/// use std::time::Duration;
/// use delayed_response::delayed::{LateWork, OnDeadline};
/// use delayed_response::{Body, DelayedResponse};
/// use http::{Response, StatusCode};
///
/// struct Background {
///     deadline: Duration,
/// }
///
/// impl OnDeadline for Background {
///     fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
///         Some(timeout.map_or(self.deadline, |t| t.min(self.deadline)))
///     }
///
///     fn on_deadline(&self, late: LateWork) -> Response<Body> {
///         tokio::spawn(late.into_response());
///         let mut res = Response::new(Body::empty());
///         *res.status_mut() = StatusCode::ACCEPTED;
///         res
///     }
/// }
///
/// # async fn handler() -> Response<Body> {
/// DelayedResponse::new()
///     .on_deadline(Background { deadline: Duration::from_millis(300) })
///     .wait(async { "done" })
///     .await
/// # }
/// ```
pub trait OnDeadline: Send + Sync + 'static {
    /// The deadline passed while the work is still running: answer the
    /// request. `late` owns the work; dropping it cancels the work (unless
    /// the builder [detached](super::DelayedResponse::detach) it).
    fn on_deadline(&self, late: LateWork) -> Response<Body>;

    /// [`on_deadline`](Self::on_deadline) for a hook that must await
    /// something before it can answer (a store across the network): `wait`
    /// awaits this one. The default answers with `on_deadline` at once.
    ///
    /// While it runs, the client may go away: the future is then dropped,
    /// and `late` with it (which cancels the work, unless it was handed on).
    fn on_deadline_async(
        &self,
        late: LateWork,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        let res = self.on_deadline(late);
        Box::pin(std::future::ready(res))
    }

    /// The deadline of one `wait`, counted from its start, given the
    /// builder's [`timeout`](super::DelayedResponse::timeout); `None` waits
    /// for as long as the work takes. The default is `timeout`.
    fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
        timeout
    }

    /// The work finished in time and `response` is its answer: add to it (a
    /// header) before it goes out. The default does nothing.
    fn in_time(&self, response: &mut Response<Body>) {
        let _ = response;
    }
}

impl<F> OnDeadline for F
where
    F: Fn(LateWork) -> Response<Body> + Send + Sync + 'static,
{
    fn on_deadline(&self, late: LateWork) -> Response<Body> {
        self(late)
    }
}

/// Work that missed the deadline of a [`wait`](super::DelayedResponse::wait),
/// handed to an [`OnDeadline`] hook.
///
/// Dropping it drops the work, and so cancels it (a
/// [detached](super::DelayedResponse::detach) work goes on in its own task).
#[must_use = "dropping the late work cancels it"]
pub struct LateWork {
    work: BoxWork,
    cfg: Arc<Config>,
}

impl LateWork {
    pub(super) fn new(work: BoxWork, cfg: Arc<Config>) -> Self {
        LateWork { work, cfg }
    }

    /// Runs the work to its end and renders its result exactly as `wait`
    /// renders a result that comes in time: the builder's
    /// [`status`](super::DelayedResponse::status) and
    /// [`header`](super::DelayedResponse::header)s under the reply's own, and
    /// an error through [`on_error`](super::DelayedResponse::on_error) (a
    /// bare `500` by default).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the work.
    pub async fn into_response(self) -> Response<Body> {
        let reply = self.work.await;
        render(&self.cfg, reply)
    }
}

impl fmt::Debug for LateWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LateWork").finish_non_exhaustive()
    }
}
