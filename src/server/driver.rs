//! The driver of one hyper connection: the timer of a connection with no
//! request in flight (header read timeout, then idle timeout), and the
//! connection's part in a graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::sync::WaitForCancellationFuture;

use super::conn::{after, ConnState, Shared, DRAINING, SERVING};
use crate::error::BoxError;

/// A hyper connection that can be asked to finish its requests and close.
pub(super) trait Connection: Future<Output = hyper::Result<()>> {
    fn close_when_done(self: Pin<&mut Self>);
}

impl<I, S, B> Connection for http1::Connection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn close_when_done(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> Connection for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn close_when_done(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Where a connection with no request in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head to be complete (the timer: the header
    /// read timeout).
    Head,
    /// Between requests, nothing received yet (the timer: the idle timeout).
    Idle,
    /// A request is in flight: no timer.
    Busy,
}

pin_project! {
    /// Drives a hyper connection, closes it when it has had no request in
    /// flight for too long, and plays its part in shutdown.
    pub(super) struct Driver<'a, C> {
        #[pin]
        conn: C,
        #[pin]
        timer: Sleep,
        // The drain signal, then (once draining) the force signal.
        #[pin]
        stop: WaitForCancellationFuture<'a>,
        // The waker `stop` was last polled with. `stop` takes two locks
        // per poll (one of them shared by every connection), so it is
        // polled again only with another waker or once the shutdown has
        // gone past the stage it answered for; it keeps the waker it has
        // until then.
        stop_waker: Option<Waker>,
        shared: &'a Shared,
        state: Arc<ConnState>,
        phase: Phase,
        h2: bool,
        draining: bool,
        // The connection was asked to finish and close.
        closing: bool,
    }
}

impl<'a, C> Driver<'a, C> {
    pub(super) fn new(
        conn: C,
        h2: bool,
        state: Arc<ConnState>,
        shared: &'a Shared,
        head_due: Instant,
    ) -> Self {
        Driver {
            conn,
            timer: sleep_until(head_due),
            stop: shared.drain.cancelled(),
            stop_waker: None,
            shared,
            state,
            phase: Phase::Head,
            h2,
            draining: false,
            closing: false,
        }
    }
}

impl<C: Connection> Future for Driver<'_, C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        this.state.driver.register(cx.waker());

        let same_waker = this
            .stop_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !same_waker {
            *this.stop_waker = Some(cx.waker().clone());
        }
        let seen = if *this.draining { DRAINING } else { SERVING };
        if (!same_waker || this.shared.stage() > seen) && this.stop.as_mut().poll(cx).is_ready() {
            if *this.draining {
                // The grace period is over.
                return Poll::Ready(());
            }
            *this.draining = true;
            if this.state.is_idle() {
                // Nothing to finish: an idle client, or one still sending
                // a head, must not hold up the shutdown.
                return close_now(this.conn, this.closing, cx);
            }
            if !std::mem::replace(this.closing, true) {
                this.conn.as_mut().close_when_done();
            }
            this.stop.set(this.shared.force.cancelled());
            if this.stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }

        if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return Poll::Ready(());
        }

        // The hyper connection has run (reads, service calls, response
        // ends): see where it is now.
        let began = this.state.began.swap(false, Ordering::AcqRel);
        let busy = !this.state.is_idle();
        match (*this.phase, busy) {
            (_, true) => {
                *this.phase = Phase::Busy;
                return Poll::Pending;
            }
            (phase, false) if began || phase == Phase::Busy => {
                this.state.read.store(false, Ordering::Relaxed);
                *this.phase = Phase::Idle;
                let due = after(this.shared.idle_timeout);
                this.timer.as_mut().reset(due);
            }
            // HTTP/1.1: the next request has begun. (HTTP/2 frames between
            // requests, such as window updates and pings, say nothing of
            // the next request: its idle timer runs on.)
            (Phase::Idle, false) if !*this.h2 && this.state.read.swap(false, Ordering::Relaxed) => {
                *this.phase = Phase::Head;
                let due = after(this.shared.header_read_timeout);
                this.timer.as_mut().reset(due);
            }
            _ => {}
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            let phase = *this.phase;
            if !*this.h2 || *this.closing {
                tracing::debug!(?phase, "no request in time; closing the connection");
                return close_now(this.conn, this.closing, cx);
            }
            // HTTP/2: a GOAWAY first, so that a client whose request is on
            // its way learns it was not served; a client that does not
            // answer it is dropped after the header read timeout.
            tracing::debug!(?phase, "no request in time; sending GOAWAY");
            *this.closing = true;
            this.conn.as_mut().close_when_done();
            let due = after(this.shared.header_read_timeout);
            this.timer.as_mut().reset(due);
            if this.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // Let the connection write the GOAWAY.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Closes a connection with no request in flight at once: asks it to close
/// and polls it one last time, so that it writes what it has queued if the
/// socket takes it (a response whose body has just been handed over, as
/// when a held response ends at shutdown over HTTP/2; a `GOAWAY`; a TLS
/// `close_notify`), then drops it whatever it answers.
fn close_now<C: Connection>(
    mut conn: Pin<&mut C>,
    closing: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if !std::mem::replace(closing, true) {
        conn.as_mut().close_when_done();
    }
    if let Poll::Ready(Err(error)) = conn.poll(cx) {
        tracing::debug!(%error, "connection ended with an error");
    }
    Poll::Ready(())
}
