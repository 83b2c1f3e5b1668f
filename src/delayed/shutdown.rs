//! The server-wide shutdown signal that held responses listen to.

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
/// When it is triggered, a held response that has not sent its head answers
/// `503 Service Unavailable`; one that has ends its body abnormally (the
/// client sees a cut response and may retry). Either way the abort hook and
/// [`Completion::aborted`](crate::Completion::aborted) report
/// [`AbortReason::Shutdown`](crate::AbortReason::Shutdown), never a client abort.
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
