//! `Server`'s limits on slow and idle clients (issue 9): the header read
//! timeout, the idle timeout, the connection cap and the HTTP/2 stream cap,
//! none of which may touch a held response.
//!
//! The timeouts are short and real (these are real sockets); no assertion
//! is timed: a test waits for the close it expects, with a generous hang
//! guard, or checks that something is still served after a timeout passed.

mod support;

use std::convert::Infallible;

use std::time::Duration;

use delayed_response::server::Server;
use delayed_response::{Body, Completion, DelayedResponse, Heartbeat};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// A generous hang guard for the tests that wait out many timeouts at once.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The grace period of every server here: a stop does not wait out the
/// default.
const GRACE: Duration = Duration::from_secs(1);

/// Answers "hi" to everything.
async fn hello(server: Server) -> Running {
    support::hello(server.grace_period(GRACE)).await
}

/// A held response per request (no heartbeat within the test), whose
/// completion is handed to the test.
async fn held(server: Server) -> (Running, mpsc::UnboundedReceiver<Completion>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (res, completion) = DelayedResponse::for_request(&req)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .handle();
        let _ = tx.send(completion);
        async move { Ok::<_, Infallible>(res.await) }
    });
    (start(server.grace_period(GRACE), service).await, rx)
}

const KEEP_ALIVE_GET: &str = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Makes one keep-alive request on `s` and reads its "hi".
async fn request(s: &mut TcpStream) {
    s.write_all(KEEP_ALIVE_GET.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    read_until(s, &mut buf, b"\r\n\r\nhi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_closed_while_a_good_client_is_served() {
    // Issue 9's attack: 1,000 connections sending one header byte at a time.
    const SLOW: usize = 1000;
    let server = hello(Server::new().header_read_timeout(Duration::from_secs(2))).await;
    let addr = server.addr;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(addr).await.unwrap();
        slow.spawn(async move {
            // On a slow machine the server may have closed it already.
            if s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    read = s.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => panic!("a response to a head that never ended"),
                    },
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        if s.write_all(b"a").await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    // Meanwhile a well-behaved client is served, again and again.
    for _ in 0..20 {
        let mut s = get(addr, "/").await;
        let res = read_response(&mut s).await;
        assert_eq!((res.status, res.text().as_str()), (200, "hi"));
    }
    let mut ended = 0;
    tokio::time::timeout(HANG_GUARD, async {
        while let Some(result) = slow.join_next().await {
            result.unwrap();
            ended += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {ended} of {SLOW} slow clients were closed"));
    assert_eq!(ended, SLOW);
    // And the server still serves.
    let mut s = get(addr, "/").await;
    assert_eq!(read_response(&mut s).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let server = hello(Server::new().header_read_timeout(Duration::from_millis(200))).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    within(
        "the silent connection to close",
        closed_by_server(&mut silent),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_h2c_preface_is_closed_after_the_header_read_timeout() {
    // Telling HTTP/1.1 from h2c waits for the preface's bytes; a client that
    // sends only part of it must not pin the connection.
    let server = hello(Server::new().header_read_timeout(Duration::from_millis(200))).await;
    let mut s = send_raw(server.addr, "PRI * HTTP/2.0\r\n").await;
    within("the connection to close", closed_by_server(&mut s)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = hello(
        Server::new()
            .header_read_timeout(Duration::from_secs(600))
            .idle_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    request(&mut s).await;
    within("the idle connection to close", closed_by_server(&mut s)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_gets_the_idle_timeout_then_the_header_read_timeout() {
    let header_read_timeout = Duration::from_millis(200);
    let server = hello(
        Server::new()
            .header_read_timeout(header_read_timeout)
            .idle_timeout(Duration::from_secs(600)),
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    request(&mut s).await;
    // Idle for longer than the header read timeout: still open.
    tokio::time::sleep(header_read_timeout * 3).await;
    request(&mut s).await;
    // Once a request starts, its head is due within the header timeout.
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    within("the slow connection to close", closed_by_server(&mut s)).await;
    server.stop().await;
}

#[tokio::test]
async fn the_timeouts_never_touch_a_held_http1_response() {
    let timeout = Duration::from_millis(100);
    let (server, mut completions) = held(
        Server::new()
            .header_read_timeout(timeout)
            .idle_timeout(timeout),
    )
    .await;
    let mut s = get(server.addr, "/").await;
    let completion = within("the handler", completions.recv()).await.unwrap();
    // Silent for many times both timeouts.
    tokio::time::sleep(timeout * 10).await;
    assert!(completion.end("late"));
    let res = read_response(&mut s).await;
    assert_eq!((res.status, res.text().as_str()), (200, "late"));
    server.stop().await;
}

#[tokio::test]
async fn the_timeouts_never_touch_a_held_h2_response() {
    let timeout = Duration::from_millis(100);
    let (server, mut completions) = held(
        Server::new()
            .header_read_timeout(timeout)
            .idle_timeout(timeout),
    )
    .await;
    let mut send = h2_connect(server.addr).await;
    let req = Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::spawn(send.send_request(req));
    let completion = within("the handler", completions.recv()).await.unwrap();
    tokio::time::sleep(timeout * 10).await;
    assert!(completion.end("late"));
    let res = within("the response", response).await.unwrap().unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "late");
    server.stop().await;
}

/// Nothing arrives on `s` for a while (the server has not accepted it).
async fn nothing_arrives(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
    assert!(read.is_err(), "got {read:?}");
}

#[tokio::test]
async fn past_the_connection_cap_the_server_waits_and_says_so_once() {
    // A current-thread runtime: the server's events go to this subscriber.
    let (logs, _guard) = Logs::capture();

    let server = hello(Server::new().max_connections(2)).await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    request(&mut a).await;
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    request(&mut b).await;

    // At the cap: a third client waits in the backlog...
    let mut c = send_raw(server.addr, KEEP_ALIVE_GET).await;
    nothing_arrives(&mut c).await;
    // ...until a connection closes.
    drop(a);
    let mut buf = Vec::new();
    read_until(&mut c, &mut buf, b"\r\n\r\nhi").await;

    // At the cap again, and again freed.
    let mut d = send_raw(server.addr, KEEP_ALIVE_GET).await;
    nothing_arrives(&mut d).await;
    drop(b);
    let mut buf = Vec::new();
    read_until(&mut d, &mut buf, b"\r\n\r\nhi").await;

    assert_eq!(logs.count("connection limit reached"), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_h2_connection_runs_at_most_max_concurrent_streams_at_once() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let started_tx = started_tx.clone();
        async move {
            if req.uri().path() == "/hold" {
                let (release, released) = oneshot::channel::<()>();
                let _ = started_tx.send(release);
                let _ = released.await;
            }
            Ok::<_, Infallible>(Response::new(Body::from("hi")))
        }
    });
    let server = start(
        Server::new().max_concurrent_streams(2).grace_period(GRACE),
        service,
    )
    .await;
    let mut send = h2_connect(server.addr).await;
    let req = |path: &str| {
        Request::get(format!("http://test{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // One request first, so that the client has the server's settings.
    within("the first response", send.send_request(req("/")))
        .await
        .unwrap();
    let held: Vec<_> = (0..3)
        .map(|_| tokio::spawn(send.send_request(req("/hold"))))
        .collect();
    let first = within("a stream", started.recv()).await.unwrap();
    let _second = within("a second stream", started.recv()).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(200), started.recv()).await;
    assert!(third.is_err(), "a third stream ran at once");
    // One ends: the third runs.
    first.send(()).unwrap();
    let third = within("the third stream", started.recv()).await.unwrap();
    drop(third);
    drop(_second);
    for res in held {
        let res = within("a held response", res).await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_the_idle_timeout() {
    let server = hello(
        Server::new()
            .header_read_timeout(Duration::from_secs(600))
            .idle_timeout(Duration::from_millis(200)),
    )
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = within("the response", send.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = within("the idle connection to close", conn).await;
    server.stop().await;
}
