//! The accept loop: the connection cap, backing off when accepting fails
//! for lack of resources, and the shutdown sequence.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{self, Open, Shared};
use super::Server;
use crate::error::BoxError;

/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A condition that lasts (at the cap, out of descriptors) is logged at
/// most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub(super) async fn run<S, B>(
    server: Server,
    listener: TcpListener,
    service: S,
    signal: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut http1 = http1::Builder::new();
    // The header read timeout is the driver's: hyper's (which needs a
    // timer) restarts whenever a kept-alive connection waits for its next
    // request, so it would also be the idle timeout.
    http1.header_read_timeout(None);
    let http2 = (!server.http1_only).then(|| {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.max_concurrent_streams(server.max_concurrent_streams);
        http2
    });
    let shared = Arc::new(Shared {
        http1,
        http2,
        #[cfg(feature = "tls")]
        tls: server
            .tls
            .as_ref()
            .map(|tls| tls.acceptor(server.http1_only)),
        header_read_timeout: server.header_read_timeout,
        idle_timeout: server.idle_timeout,
        shutdown: server.shutdown.clone(),
        drain: CancellationToken::new(),
        force: CancellationToken::new(),
        stage: AtomicU8::new(conn::SERVING),
        live: AtomicUsize::new(0),
        closed: Notify::new(),
    });
    let max = server.max_connections;
    let mut at_cap = Throttled::default();
    let mut failing = Throttled::default();
    let mut backoff = MIN_BACKOFF;
    let mut signal = std::pin::pin!(signal);
    loop {
        if shared.live() >= max {
            at_cap.warn(|suppressed| {
                tracing::warn!(
                    max_connections = max,
                    suppressed,
                    "connection limit reached; not accepting until a connection closes"
                );
            });
            tokio::select! {
                () = shared.at_most(max - 1) => continue,
                () = &mut signal => break,
            }
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let (tcp, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => {
                // That one client's problem (it reset before we accepted).
                tracing::debug!(%error, "accept failed");
                continue;
            }
            Err(error) => {
                // Out of file descriptors (EMFILE, ENFILE) or memory: the
                // pending connection stays in the backlog and the next
                // accept would fail at once, so pause; a connection of ours
                // closing frees a descriptor, so that ends the pause too.
                failing.warn(|suppressed| {
                    tracing::warn!(%error, suppressed, "accept failed; backing off");
                });
                let live = shared.live();
                let one_closed = async {
                    match live.checked_sub(1) {
                        Some(fewer) => shared.at_most(fewer).await,
                        // None of ours to wait for: the pause alone.
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = one_closed => {}
                    () = &mut signal => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "set_nodelay failed");
        }
        let open = Open::new(&shared);
        tokio::spawn(conn::serve(open, tcp, addr, service.clone()));
    }
    drop(listener);
    shutdown(&server, &shared).await;
}

/// Ends held responses that are still waiting, closes idle connections,
/// lets the others finish within the grace period, then drops them.
async fn shutdown(server: &Server, shared: &Shared) {
    server.shutdown.trigger();
    shared.drain();
    if tokio::time::timeout(server.grace_period, shared.at_most(0))
        .await
        .is_err()
    {
        tracing::debug!(
            open = shared.live(),
            "grace period over; dropping the remaining connections"
        );
        shared.force();
        // Each of them ends the next time its task runs.
        shared.at_most(0).await;
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Logs a lasting condition once, then at most once per [`LOG_EVERY`] with
/// the number of times it was left out.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => self.suppressed += 1,
            _ => {
                log(self.suppressed);
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lasting_condition_is_logged_once_a_minute_with_what_was_left_out() {
        let mut throttled = Throttled::default();
        let mut logged = Vec::new();
        for _ in 0..20 {
            throttled.warn(|suppressed| logged.push(suppressed));
        }
        assert_eq!(logged, [0]);
        tokio::time::advance(LOG_EVERY).await;
        throttled.warn(|suppressed| logged.push(suppressed));
        assert_eq!(logged, [0, 19]);
    }
}
