//! Handle mode: the response is ended from elsewhere through a [`Completion`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::tracker::AbortCell;
use super::AbortReason;
use crate::delayed::reply::{IntoReply, Reply};
use crate::error::{Error, Kind};

/// The producer's side of a handle-mode response (see
/// [`DelayedResponse::handle`](crate::DelayedResponse::handle)).
///
/// It is cheap to clone; the response ends with the first
/// [`end`](Completion::end) from any clone. If every clone is dropped without
/// ending, the response ends with an error ([`Error::is_dropped`]), abnormally
/// if its head was already sent.
///
/// # Examples
///
/// ```
/// use delayed_response::DelayedResponse;
///
/// # async fn handler() -> http::Response<delayed_response::Body> {
/// let (response, completion) = DelayedResponse::new().handle();
/// tokio::spawn(async move {
///     tokio::select! {
///         _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
///             completion.end("finished");
///         }
///         reason = completion.aborted() => {
///             eprintln!("client left: {reason:?}");
///         }
///     }
/// });
/// response.await
/// # }
/// ```
pub struct Completion {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) cell: AbortCell,
}

struct State {
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    max_buffered: usize,
    end: Option<Reply>,
    ended: bool,
    /// See [`Completion::begin_result`].
    result_begun: bool,
    completions: usize,
    waker: Option<Waker>,
}

pub(crate) enum Next {
    Data(Bytes),
    End(Reply),
}

impl Shared {
    pub(crate) fn new(max_buffered: usize) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                max_buffered,
                end: None,
                ended: false,
                result_begun: false,
                completions: 1,
                waker: None,
            }),
            cell: AbortCell::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::http::lock(&self.state)
    }

    pub(crate) fn result_begun(&self) -> bool {
        self.lock().result_begun
    }

    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let mut st = self.lock();
        if let Some(data) = st.queue.pop_front() {
            st.queued_bytes -= data.len();
            return Poll::Ready(Next::Data(data));
        }
        if let Some(end) = st.end.take() {
            return Poll::Ready(Next::End(end));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Completion {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Completion { shared }
    }

    /// Writes progress bytes to the response, ahead of its end.
    ///
    /// The first write sends the head (with the builder's
    /// [`pending_status`](crate::DelayedResponse::pending_status)); heartbeats
    /// then fill the silences between writes. Writes are queued and delivered
    /// in order, before the end.
    ///
    /// # Errors
    ///
    /// - [`Error::is_ended`]: the response already ended or was closed.
    /// - [`Error::is_aborted`] / [`Error::is_shutdown`]: the client went away,
    ///   or the server is shutting down.
    /// - [`Error::is_limit`]: more than the builder's
    ///   [`max_buffered`](crate::DelayedResponse::max_buffered) bytes are
    ///   waiting to be sent; the client is not reading fast enough. Nothing was
    ///   queued.
    pub fn write(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        if let Some(reason) = self.shared.cell.reason.get() {
            return Err(reason.to_error());
        }
        if self.shared.cell.is_closed() {
            return Err(Error::new(Kind::Ended));
        }
        let waker = {
            let mut st = self.shared.lock();
            if st.ended {
                return Err(Error::new(Kind::Ended));
            }
            if data.is_empty() {
                return Ok(());
            }
            if !st.queue.is_empty() && st.queued_bytes + data.len() > st.max_buffered {
                return Err(Error::new(Kind::Limit));
            }
            st.queued_bytes += data.len();
            st.queue.push_back(data);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Says that the result has begun: what is written from now on is the
    /// result itself (a transfer in progress), not progress made while
    /// waiting for it.
    ///
    /// It matters only on server shutdown: a response still waiting ends at
    /// once, while one whose result has begun is left to finish, within the
    /// server's grace period (see [`Shutdown`](crate::Shutdown)). Heartbeats
    /// go on filling the silences between writes either way.
    pub fn begin_result(&self) {
        self.shared.lock().result_begun = true;
    }

    /// Ends the response with `result`, rendered by the rules of [`Reply`].
    ///
    /// Returns `true` if this call ended the response, `false` if it had
    /// already ended (the first end wins; later ones are ignored and traced)
    /// or was closed.
    pub fn end(&self, result: impl IntoReply) -> bool {
        let reply = result.into_reply();
        let waker = {
            let mut st = self.shared.lock();
            if st.ended || self.shared.cell.is_closed() {
                drop(st);
                tracing::debug!("delayed response ended twice; the later end is ignored");
                return false;
            }
            st.ended = true;
            st.end = Some(reply);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Ends the response with an error (see
    /// [`DelayedResponse::on_error`](crate::DelayedResponse::on_error)).
    pub fn fail(&self, error: impl Into<crate::BoxError>) -> bool {
        self.end(Reply::error(error))
    }

    /// Resolves when the client went away (or the server began shutting down)
    /// before the response finished, with the reason.
    ///
    /// It never resolves if the response finishes otherwise; use
    /// [`closed`](Completion::closed) to learn about any end.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn aborted(&self) -> AbortReason {
        self.shared.cell.closed().await;
        match self.shared.cell.reason.get() {
            Some(reason) => *reason,
            None => std::future::pending().await,
        }
    }

    /// Resolves when the response is over, whatever the reason: ended and
    /// sent, timed out, aborted, or shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn closed(&self) {
        self.shared.cell.closed().await;
    }

    /// Is the response over (see [`closed`](Completion::closed))?
    pub fn is_closed(&self) -> bool {
        self.shared.cell.is_closed()
    }

    /// Why the response was aborted, if it was.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        self.shared.cell.reason.get().copied()
    }

    /// Has [`end`](Completion::end) been called?
    pub fn is_ended(&self) -> bool {
        self.shared.lock().ended
    }

    /// How many written bytes wait to be sent.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().queued_bytes
    }
}

impl Clone for Completion {
    fn clone(&self) -> Self {
        self.shared.lock().completions += 1;
        Completion {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.lock();
            st.completions -= 1;
            if st.completions > 0 || st.ended {
                return;
            }
            st.ended = true;
            st.end = Some(Reply::from_error(Error::new(Kind::Dropped)));
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("closed", &self.is_closed())
            .field("abort_reason", &self.abort_reason())
            .finish()
    }
}
