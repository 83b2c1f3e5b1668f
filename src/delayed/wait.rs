//! The `wait` mode: the result, or an answer at the deadline. No heartbeats.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use http::Response;
use tracing::Instrument;

use super::config::{Config, Unshared};
use super::deadline::{LateWork, OnDeadline};
use super::guard::{guard_body, render_early};
use super::reply::{shutdown_response, timeout_response};
use super::tracker::{Mode, Tracker};
use super::{AbortReason, DelayedResponse, IntoReply, Outcome, Reply, Shutdown};
use crate::body::Body;

/// The work of a `wait` whose deadline hook may take it over.
pub(crate) type BoxWork = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

impl DelayedResponse {
    /// Waits for `work`: `200` (or the reply's status) with its result, or
    /// `202 Accepted` at the [`timeout`](Self::timeout). No heartbeats.
    ///
    /// Without a timeout it waits for as long as the work takes. An
    /// [`on_deadline`](Self::on_deadline) hook changes what happens at the
    /// deadline (the `park` layer answers `202` with a `Location` there).
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
        let (cfg, req) = self.into_parts();
        match cfg.hooks.on_deadline.as_ref().map(|d| d.hook.clone()) {
            // The hook takes the work over at the deadline: it must be boxed
            // to be handed on. Without one (the fast path), it is not.
            Some(hook) => {
                let work: BoxWork = if cfg.detach {
                    Box::pin(spawn(work))
                } else {
                    Box::pin(async move { work.await.into_reply() })
                };
                Either::Left(wait_with_hook(cfg, req, hook, work))
            }
            None => Either::Right(wait_plain(cfg, req, work)),
        }
    }
}

/// `wait` without a deadline hook.
async fn wait_plain<F>(cfg: Arc<Config>, req: Unshared, work: F) -> Response<Body>
where
    F: Future + Send + 'static,
    F::Output: IntoReply,
{
    let mut tracker = Tracker::new(&req, Mode::Wait, None);
    let work = if cfg.detach {
        Either::Left(spawn(work))
    } else {
        Either::Right(async move { work.await.into_reply() })
    };
    let deadline = sleep_or_never(cfg.timeout);
    let shutdown = shutdown_or_never(req.shutdown.as_ref());
    tokio::select! {
        biased;
        reply = work => render_early(&cfg, tracker, reply),
        () = deadline => {
            let res = timeout_response(&cfg);
            guard_body(res, tracker, Outcome::Timeout)
        }
        () = shutdown => {
            tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
            shutdown_response()
        }
    }
}

/// `wait` with a deadline hook: at the deadline the hook gets the work.
async fn wait_with_hook(
    cfg: Arc<Config>,
    req: Unshared,
    hook: Arc<dyn OnDeadline>,
    mut work: BoxWork,
) -> Response<Body> {
    let mut tracker = Tracker::new(&req, Mode::Wait, None);
    let deadline = sleep_or_never(hook.deadline(cfg.timeout));
    let shutdown = shutdown_or_never(req.shutdown.as_ref());
    tokio::select! {
        biased;
        reply = &mut work => {
            let mut res = render_early(&cfg, tracker, reply);
            hook.in_time(&mut res);
            return res;
        }
        () = deadline => {}
        () = shutdown => {
            tracker.finish(Outcome::Aborted(AbortReason::Shutdown));
            return shutdown_response();
        }
    }
    let late = LateWork::new(work, cfg);
    // The hook's own events belong to this response.
    let res = hook
        .on_deadline_async(late)
        .instrument(tracker.span().clone())
        .await;
    guard_body(res, tracker, Outcome::Timeout)
}

/// Resolves after `d`, or never. (`tokio::time::sleep` saturates a
/// duration too long to add to now.)
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
pub(super) fn spawn<F>(work: F) -> impl Future<Output = Reply> + Send + 'static
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
