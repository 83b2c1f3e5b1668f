//! The server-wide shutdown signal that held responses listen to, and how a
//! held response reacts to it: one still waiting for its result ends at once,
//! one whose result is streaming is left to the server's grace period.

use tokio_util::sync::CancellationToken;

/// Tells held responses that the server is shutting down.
///
/// [`server::serve`](crate::server::serve) makes one, puts a clone into every
/// request's extensions, and triggers it when its shutdown future resolves.
/// [`DelayedResponse::for_request`](crate::DelayedResponse::for_request) picks it
/// up from there; with another server, make one yourself, pass it to
/// [`DelayedResponse::shutdown`](crate::DelayedResponse::shutdown), and trigger
/// it before waiting for connections to drain.
///
/// When it is triggered, a held response that is still *waiting* for its
/// result (heartbeats, progress writes) ends at once: if it has not sent its
/// head it answers `503 Service Unavailable`, else its body ends abnormally
/// (the client sees a cut response and may retry). Either way the abort hook
/// and [`Completion::aborted`](crate::Completion::aborted) report
/// [`AbortReason::Shutdown`](crate::AbortReason::Shutdown), never a client abort.
///
/// A response whose result is already *streaming* is not cut: a streamed
/// result of [`start`](crate::DelayedResponse::start) or
/// [`poll`](crate::DelayedResponse::poll), any rendered result of a handle,
/// and a handle after [`Completion::begin_result`](crate::Completion::begin_result)
/// (a pipe transfer in progress). Like any in-flight response, it gets the
/// server's grace period to finish; if the server drops it after that, the
/// reason reported is still [`AbortReason::Shutdown`](crate::AbortReason::Shutdown).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Triggers the signal; every clone sees it.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Has the signal been triggered?
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal is triggered.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}
