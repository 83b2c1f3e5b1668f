//! Abort detection over real sockets: the abort fires when the client really
//! goes away before the response finished (drop, half-close, RST; HTTP/1.1 and
//! HTTP/2), never after a normal completion, and with its own reason on
//! server shutdown. Each case prints the measured detection latency (run with
//! `--nocapture` to see it).

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use delayed_response::{AbortReason, Body, DelayedResponse, Heartbeat, Outcome};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Close {
    Drop,
    HalfCloseWrite,
    Reset,
}

struct Probe {
    server: TestServer,
    started: mpsc::UnboundedReceiver<()>,
    aborts: mpsc::UnboundedReceiver<(AbortReason, Instant)>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl Probe {
    async fn started(&mut self) {
        within("the handler to start", self.started.recv())
            .await
            .unwrap();
    }

    async fn abort(&mut self) -> (AbortReason, Instant) {
        within("the abort hook", self.aborts.recv()).await.unwrap()
    }

    async fn outcome(&mut self) -> Outcome {
        within("the outcome", self.outcomes.recv()).await.unwrap()
    }
}

/// A server whose every request is a delayed response built by `make`
/// around work that never finishes (unless `make` says otherwise).
async fn probe<F, Fut>(make: F) -> Probe
where
    F: Fn(DelayedResponse) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let (started_tx, started) = mpsc::unbounded_channel();
    let (abort_tx, aborts) = mpsc::unbounded_channel();
    let (outcome_tx, outcomes) = mpsc::unbounded_channel();
    let server = serve_fn(move |req: Request<Incoming>| {
        let _ = started_tx.send(());
        let abort_tx = abort_tx.clone();
        let outcome_tx = outcome_tx.clone();
        let builder = DelayedResponse::for_request(&req)
            .on_abort(move |reason| {
                let _ = abort_tx.send((reason, Instant::now()));
            })
            .on_outcome(move |o| {
                let _ = outcome_tx.send(o);
            });
        make(builder)
    })
    .await;
    Probe {
        server,
        started,
        aborts,
        outcomes,
    }
}

async fn close(stream: TcpStream, how: Close) -> Instant {
    let mut stream = stream;
    match how {
        Close::Drop => {
            let t0 = Instant::now();
            drop(stream);
            t0
        }
        Close::HalfCloseWrite => {
            let t0 = Instant::now();
            stream.shutdown().await.unwrap();
            // Keep the read side open: only the FIN went out.
            tokio::spawn(async move {
                tokio::time::sleep(PATIENCE).await;
                drop(stream);
            });
            t0
        }
        Close::Reset => {
            stream.set_zero_linger().unwrap();
            let t0 = Instant::now();
            drop(stream);
            t0
        }
    }
}

fn report(case: &str, t0: Instant, at: Instant) {
    eprintln!(
        "abort latency [{case}]: {:.3} ms",
        at.duration_since(t0).as_secs_f64() * 1e3
    );
}

async fn handler_pending_case(how: Close) {
    // No heartbeat for a minute: the handler future is pending, no head sent.
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let stream = get(p.server.addr, "/").await;
    p.started().await;
    let t0 = close(stream, how).await;
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    assert_eq!(p.outcome().await, Outcome::Aborted(AbortReason::ClientGone));
    report(&format!("h1 handler pending, {how:?}"), t0, at);
    p.server.stop().await;
}

#[tokio::test]
async fn h1_handler_pending_client_drops() {
    handler_pending_case(Close::Drop).await;
}

#[tokio::test]
async fn h1_handler_pending_client_half_closes() {
    handler_pending_case(Close::HalfCloseWrite).await;
}

#[tokio::test]
async fn h1_handler_pending_client_resets() {
    handler_pending_case(Close::Reset).await;
}

async fn body_pending_case(how: Close) {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(50)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut stream = get(p.server.addr, "/").await;
    p.started().await;
    let mut buf = Vec::new();
    // The head, then the first heartbeat as a one-byte chunk.
    read_until(&mut stream, &mut buf, b"HTTP/1.1 202 Accepted\r\n").await;
    read_until(&mut stream, &mut buf, b"\r\n\r\n1\r\n \r\n").await;
    let t0 = close(stream, how).await;
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    report(&format!("h1 body pending with heartbeats, {how:?}"), t0, at);
    p.server.stop().await;
}

#[tokio::test]
async fn h1_body_pending_client_drops() {
    body_pending_case(Close::Drop).await;
}

#[tokio::test]
async fn h1_body_pending_client_half_closes() {
    body_pending_case(Close::HalfCloseWrite).await;
}

#[tokio::test]
async fn h1_body_pending_client_resets() {
    body_pending_case(Close::Reset).await;
}

#[tokio::test]
async fn h1_wait_mode_abort_cancels_the_work() {
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let mut p = probe(move |d| {
        let dropped_tx = dropped_tx.clone();
        async move {
            d.wait(async move {
                struct OnDrop(mpsc::UnboundedSender<()>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        let _ = self.0.send(());
                    }
                }
                let _guard = OnDrop(dropped_tx);
                std::future::pending::<()>().await
            })
            .await
        }
    })
    .await;
    let stream = get(p.server.addr, "/").await;
    p.started().await;
    let t0 = close(stream, Close::Drop).await;
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    within("the work to be dropped", dropped.recv())
        .await
        .unwrap();
    report("h1 wait mode, Drop", t0, at);
    p.server.stop().await;
}

#[tokio::test]
async fn h1_handle_mode_completion_sees_the_abort() {
    let (reason_tx, mut reasons) = mpsc::unbounded_channel();
    let mut p = probe(move |d| {
        let reason_tx = reason_tx.clone();
        async move {
            let (response, completion) = d
                .heartbeat(Heartbeat::every(Duration::from_millis(50)))
                .handle();
            completion.write("working\n").unwrap();
            tokio::spawn(async move {
                let reason = completion.aborted().await;
                let _ = reason_tx.send(reason);
                // Writes after an abort fail.
                assert!(completion.write("x").unwrap_err().is_aborted());
            });
            response.await
        }
    })
    .await;
    let mut stream = get(p.server.addr, "/").await;
    let mut buf = Vec::new();
    read_until(&mut stream, &mut buf, b"working\n").await;
    close(stream, Close::Reset).await;
    let reason = within("completion.aborted()", reasons.recv())
        .await
        .unwrap();
    assert_eq!(reason, AbortReason::ClientGone);
    p.abort().await;
    p.server.stop().await;
}

// Negative control: a response that completes normally never reports an
// abort, even when the client closes right after reading it (the original
// fired `abort` after every response on Node >= 16).
#[tokio::test]
async fn h1_normal_completion_is_never_an_abort() {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(20)))
            .start(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                "result"
            })
            .await
    })
    .await;
    for _ in 0..3 {
        let mut stream = get(p.server.addr, "/").await;
        let res = read_response(&mut stream).await;
        assert!(res.complete);
        assert!(res.text().ends_with("result"));
        drop(stream);
        assert_eq!(p.outcome().await, Outcome::Done);
    }
    // Outcomes are reported once per response, and all three were Done, so
    // no abort hook ran.
    assert!(p.aborts.try_recv().is_err());
    p.server.stop().await;
}

// Server shutdown is not a client abort: held responses end with their own
// reason, and the client sees a cut body (it can retry).
#[tokio::test]
async fn shutdown_is_reported_as_shutdown_not_abort() {
    let p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(50)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut stream = get(p.server.addr, "/").await;
    let mut buf = Vec::new();
    read_until(&mut stream, &mut buf, b"\r\n\r\n1\r\n \r\n").await;
    let Probe {
        server,
        mut aborts,
        mut outcomes,
        ..
    } = p;
    let stopping = tokio::spawn(server.stop());
    let (reason, _) = within("the abort hook", aborts.recv()).await.unwrap();
    assert_eq!(reason, AbortReason::Shutdown);
    assert_eq!(
        within("the outcome", outcomes.recv()).await.unwrap(),
        Outcome::Aborted(AbortReason::Shutdown)
    );
    // The rest of the body: cut, no final chunk.
    let mut rest = Vec::new();
    let _ = within("the close", async {
        use tokio::io::AsyncReadExt;
        stream.read_to_end(&mut rest).await
    })
    .await;
    assert!(find(&rest, b"0\r\n\r\n").is_none(), "{rest:?}");
    within("the server to stop", stopping).await.unwrap();
}

fn h2_get() -> Request<Empty<bytes::Bytes>> {
    Request::builder()
        .uri("http://test/")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn h2_stream_reset_is_an_abort() {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(50)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut send = h2_connect::<Empty<bytes::Bytes>>(p.server.addr).await;
    let res = send.send_request(h2_get()).await.unwrap();
    assert_eq!(res.status(), 202);
    let mut body = res.into_body();
    let first = within("a heartbeat", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), " ");
    // Dropping the body resets the stream (RST_STREAM CANCEL); the
    // connection stays up.
    let t0 = Instant::now();
    drop(body);
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    report("h2 RST_STREAM, body pending", t0, at);
    // The connection still serves requests.
    assert!(send.ready().await.is_ok());
    p.server.stop().await;
}

#[tokio::test]
async fn h2_reset_before_the_head_is_an_abort() {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut send = h2_connect::<Empty<bytes::Bytes>>(p.server.addr).await;
    let pending = tokio::spawn(send.send_request(h2_get()));
    p.started().await;
    let t0 = Instant::now();
    pending.abort();
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    report("h2 RST_STREAM, handler pending", t0, at);
    p.server.stop().await;
}

#[tokio::test]
async fn h2_connection_close_is_an_abort() {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(50)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    // hyper's h2 client runs the connection in a task of its own; a second
    // handle to the socket lets the test close it from outside.
    let std_tcp = std::net::TcpStream::connect(p.server.addr).unwrap();
    std_tcp.set_nonblocking(true).unwrap();
    let killer = std_tcp.try_clone().unwrap();
    let mut send = h2_handshake(TcpStream::from_std(std_tcp).unwrap()).await;
    let res = send.send_request(h2_get()).await.unwrap();
    let mut body = res.into_body();
    within("a heartbeat", body.frame()).await.unwrap().unwrap();
    let t0 = Instant::now();
    killer.shutdown(std::net::Shutdown::Both).unwrap();
    let (reason, at) = p.abort().await;
    assert_eq!(reason, AbortReason::ClientGone);
    report("h2 TCP close, body pending", t0, at);
    drop((body, send));
    p.server.stop().await;
}

// hyper sends only the head of a HEAD response and drops its body unread:
// that is a normal end, not an abort.
#[tokio::test]
async fn h1_head_request_is_not_an_abort() {
    let mut p = probe(|d| async move {
        d.heartbeat(Heartbeat::every(Duration::from_millis(20)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut s = send_raw(
        p.server.addr,
        "HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"HTTP/1.1 202 Accepted\r\n").await;
    assert_eq!(p.outcome().await, Outcome::Done);
    assert!(p.aborts.try_recv().is_err());
    p.server.stop().await;
}

// Bytes written just before an abnormal end reach the client: hyper closes
// the connection at once on a body error, so the body lets it flush first.
#[tokio::test]
async fn h1_progress_before_a_failure_is_flushed_then_the_body_is_cut() {
    let p = probe(|d| async move {
        let (response, completion) = d
            .pending_status(http::StatusCode::OK)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .handle();
        completion.write("started\n").unwrap();
        tokio::spawn(async move {
            completion.write("last words\n").unwrap();
            completion.fail("the job failed");
        });
        response.await
    })
    .await;
    let mut s = get(p.server.addr, "/").await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "started\nlast words\n");
    assert!(!res.complete, "the body must end abnormally");
    p.server.stop().await;
}
