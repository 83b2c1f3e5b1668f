//! The server-wide shutdown signal that held responses listen to, and how a
//! held response reacts to it: one still waiting for its result ends at once,
//! one whose result is streaming is left to the server's grace period.
//!
//! Every held response of a server listens to the same signal, and polls it
//! at every wake-up (each heartbeat), so listening must cost next to
//! nothing: a held response registers its task's waker once (again only if
//! the waker changes) in a slab of the signal, and each poll is then an
//! atomic load and a waker comparison. (A `CancellationToken` took two
//! mutexes shared by all responses on every poll.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

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
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    /// For [`Shutdown::triggered`].
    notify: Notify,
    /// The wakers of the held responses that listen, by slot.
    listeners: Mutex<Slab>,
}

/// Wakers in slots that are reused once freed.
#[derive(Debug, Default)]
struct Slab {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Triggers the signal; every clone sees it.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
        let wakers: Vec<Waker> = {
            let mut slab = crate::http::lock(&self.inner.listeners);
            slab.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Has the signal been triggered?
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Resolves once the signal is triggered.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn triggered(&self) {
        loop {
            // Created before the check: a trigger in between still wakes it.
            let notified = self.inner.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// A held response's registration with a [`Shutdown`]; it leaves the slab
/// when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    shutdown: Shutdown,
    /// The slot and the waker in it, once registered.
    registered: Option<(usize, Waker)>,
}

impl Listener {
    pub(crate) fn new(shutdown: Shutdown) -> Self {
        Listener {
            shutdown,
            registered: None,
        }
    }

    /// Ready once the signal is triggered; otherwise makes sure that this
    /// task is woken when it is.
    #[inline]
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_triggered() {
            return Poll::Ready(());
        }
        if matches!(&self.registered, Some((_, w)) if w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.register(cx)
    }

    #[cold]
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let waker = cx.waker().clone();
        let mut slab = crate::http::lock(&self.shutdown.inner.listeners);
        // Checked again under the lock: `trigger` sets the flag before it
        // takes the wakers, so a waker put in after it would never be woken.
        if self.shutdown.is_triggered() {
            return Poll::Ready(());
        }
        let key = match &self.registered {
            Some((key, _)) => *key,
            None => match slab.free.pop() {
                Some(key) => key,
                None => {
                    slab.slots.push(None);
                    slab.slots.len() - 1
                }
            },
        };
        slab.slots[key] = Some(waker.clone());
        drop(slab);
        self.registered = Some((key, waker));
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            let mut slab = crate::http::lock(&self.shutdown.inner.listeners);
            if let Some(slot) = slab.slots.get_mut(key) {
                *slot = None;
                slab.free.push(key);
            }
        }
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
    fn a_listener_registers_once_and_is_woken_by_the_trigger() {
        let shutdown = Shutdown::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut listener = Listener::new(shutdown.clone());
        assert!(listener.poll(&mut cx).is_pending());
        assert!(listener.poll(&mut cx).is_pending());
        assert_eq!(crate::http::lock(&shutdown.inner.listeners).slots.len(), 1);
        shutdown.trigger();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(listener.poll(&mut cx).is_ready());
    }

    #[test]
    fn a_dropped_listener_frees_its_slot_for_the_next() {
        let shutdown = Shutdown::new();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            let mut listener = Listener::new(shutdown.clone());
            assert!(listener.poll(&mut cx).is_pending());
        }
        let slab = crate::http::lock(&shutdown.inner.listeners);
        assert_eq!(slab.slots.len(), 1);
        assert_eq!(slab.free, [0]);
    }
}
