//! One tracker per delayed response: it reports the outcome exactly once, and
//! when it is dropped before that, the client went away (or the server is
//! shutting down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use super::config::{AbortHook, OutcomeHook, Unshared};
use super::handle::Shared;
use super::{AbortReason, Outcome, Shutdown};

/// Part of a handle-mode response's shared state (its completions see it):
/// closed when the response is over for any reason, with the abort reason
/// set first when it was aborted.
#[derive(Debug, Default)]
pub(crate) struct AbortCell {
    is_closed: AtomicBool,
    /// For [`closed`](Self::closed).
    notify: Notify,
    pub(crate) reason: OnceLock<AbortReason>,
}

impl AbortCell {
    pub(crate) fn close(&self) {
        self.is_closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    pub(crate) async fn closed(&self) {
        loop {
            // Created before the check: a close in between still wakes it.
            let notified = self.notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// The mode of a response, for the traces.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Wait,
    Start,
    Handle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Wait => "wait",
            Mode::Start => "start",
            Mode::Handle => "handle",
        }
    }
}

/// Follows a response from its start to its outcome.
///
/// It lives in the response future and then moves into the body, so that it is
/// dropped exactly when hyper gives up on the response. hyper drops the future
/// or the body when the client disconnects (FIN, RST, RST_STREAM) or a write
/// fails, which is why `Drop` is the abort signal. It is disarmed by `finish`.
pub(crate) struct Tracker {
    shutdown: Option<Shutdown>,
    mode: Mode,
    span: tracing::Span,
    /// When the response started; `None` when debug events are off (the
    /// clock is read only for the `elapsed_ms` of the trace events).
    started: Option<Instant>,
    handle: Option<Arc<Shared>>,
    on_abort: Option<AbortHook>,
    on_outcome: Option<OutcomeHook>,
    head_request: bool,
    done: bool,
}

impl Tracker {
    pub(crate) fn new(req: &Unshared, mode: Mode, handle: Option<Arc<Shared>>) -> Self {
        let mode_name = mode.name();
        let span = tracing::debug_span!("delayed_response", mode = mode_name);
        tracing::debug!(parent: &span, "start");
        Tracker {
            shutdown: req.shutdown.clone(),
            mode,
            span,
            started: tracing::enabled!(tracing::Level::DEBUG).then(Instant::now),
            handle,
            on_abort: req.on_abort.clone(),
            on_outcome: req.on_outcome.clone(),
            head_request: req.head_request,
            done: false,
        }
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    pub(crate) fn head_request(&self) -> bool {
        self.head_request
    }

    /// Reports `outcome` unless an outcome was already reported.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed_ms = self.started.map_or(0, |t| t.elapsed().as_millis() as u64);
        match outcome {
            Outcome::Done => {
                tracing::debug!(parent: &self.span, mode = self.mode.name(), elapsed_ms, "done")
            }
            Outcome::Timeout => {
                tracing::debug!(parent: &self.span, mode = self.mode.name(), elapsed_ms, "timeout")
            }
            Outcome::Error => {
                tracing::debug!(parent: &self.span, mode = self.mode.name(), elapsed_ms, "error")
            }
            Outcome::Aborted(reason) => {
                tracing::debug!(parent: &self.span, mode = self.mode.name(), elapsed_ms, ?reason, "abort");
                if let Some(handle) = &self.handle {
                    let _ = handle.cell.reason.set(reason);
                }
                if let Some(hook) = &self.on_abort {
                    hook(reason);
                }
            }
        }
        if let Some(handle) = &self.handle {
            handle.cell.close();
        }
        if let Some(hook) = &self.on_outcome {
            hook(outcome);
        }
    }

    /// Why the response is going away now: shutdown if the server said so.
    pub(crate) fn abort_reason(&self) -> AbortReason {
        match &self.shutdown {
            Some(s) if s.is_triggered() => AbortReason::Shutdown,
            _ => AbortReason::ClientGone,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.done {
            let reason = self.abort_reason();
            self.finish(Outcome::Aborted(reason));
        }
    }
}
