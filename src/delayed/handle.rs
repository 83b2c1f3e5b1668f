//! Handle mode: the response is ended from elsewhere through a [`Completion`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Something for the response since it last found nothing: set with
    /// every change it must see (a write, the end), cleared when it parks.
    /// With `parked`, it lets the response's polls that nothing woke (hyper
    /// polls a body again for each frame its connection moves, such as every
    /// frame of a pipe's upload) return without the lock.
    news: AtomicBool,
    /// Whose waker the response parked with: the data and vtable pointers
    /// (written by the response alone, under the lock).
    parked: [AtomicUsize; 2],
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

/// What `Waker::will_wake` compares: the data and vtable pointers.
fn waker_id(waker: &Waker) -> [usize; 2] {
    [
        waker.data() as usize,
        waker.vtable() as *const std::task::RawWakerVTable as usize,
    ]
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
            news: AtomicBool::new(true),
            parked: [AtomicUsize::new(0), AtomicUsize::new(0)],
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::http::lock(&self.state)
    }

    pub(crate) fn result_begun(&self) -> bool {
        self.lock().result_begun
    }

    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let id = waker_id(cx.waker());
        if !self.news.load(Ordering::Acquire)
            && self.parked[0].load(Ordering::Relaxed) == id[0]
            && self.parked[1].load(Ordering::Relaxed) == id[1]
        {
            // Parked with this waker and nothing came since: a writer sets
            // `news` before it takes the waker to wake it.
            return Poll::Pending;
        }
        let mut st = self.lock();
        if let Some(data) = st.queue.pop_front() {
            st.queued_bytes -= data.len();
            if st.queue.is_empty() {
                // An idle stream keeps no buffer (a held peer or sender
                // spends most of its life with nothing queued).
                st.queue = VecDeque::new();
            }
            return Poll::Ready(Next::Data(data));
        }
        if let Some(end) = st.end.take() {
            return Poll::Ready(Next::End(end));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        self.parked[0].store(id[0], Ordering::Relaxed);
        self.parked[1].store(id[1], Ordering::Relaxed);
        self.news.store(false, Ordering::Release);
        Poll::Pending
    }

    /// Under the lock, with a change for the response: it must look.
    fn tell(&self, st: &mut State) -> Option<Waker> {
        self.news.store(true, Ordering::Release);
        st.waker.take()
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
            self.shared.tell(&mut st)
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
            self.shared.tell(&mut st)
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
            self.shared.tell(&mut st)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_parked_response_sees_every_write_and_the_end() {
        let shared = Shared::new(1 << 20);
        let completion = Completion::new(shared.clone());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(shared.poll_next(&mut cx).is_pending());
        // Polled again with nothing new: still parked, nobody woken.
        assert!(shared.poll_next(&mut cx).is_pending());
        completion.write("a").unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(shared.poll_next(&mut cx), Poll::Ready(Next::Data(d)) if d == "a"));
        assert!(shared.poll_next(&mut cx).is_pending());
        // A write while the waker is taken (not yet parked again) is seen.
        completion.write("b").unwrap();
        completion.write("c").unwrap();
        assert!(matches!(shared.poll_next(&mut cx), Poll::Ready(Next::Data(d)) if d == "b"));
        assert!(matches!(shared.poll_next(&mut cx), Poll::Ready(Next::Data(d)) if d == "c"));
        assert!(shared.poll_next(&mut cx).is_pending());
        completion.end("done");
        assert!(matches!(
            shared.poll_next(&mut cx),
            Poll::Ready(Next::End(_))
        ));
    }

    #[test]
    fn a_response_polled_with_another_waker_parks_it_instead() {
        let shared = Shared::new(1 << 20);
        let completion = Completion::new(shared.clone());
        let first = Arc::new(Count(AtomicUsize::new(0)));
        let second = Arc::new(Count(AtomicUsize::new(0)));
        let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        assert!(shared.poll_next(&mut Context::from_waker(&w1)).is_pending());
        assert!(shared.poll_next(&mut Context::from_waker(&w2)).is_pending());
        completion.write("x").unwrap();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
