//! `server::serve`: HTTP/1.1 and h2c on one port, the shutdown signal in
//! request extensions, and a graceful shutdown that ends held responses
//! first and then waits, up to its grace period, for the rest.

mod support;

use std::time::Duration;

use delayed_response::server::{RemoteAddr, Server};
use delayed_response::{Body, DelayedResponse, Heartbeat, Shutdown};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

#[tokio::test]
async fn every_request_carries_the_shutdown_signal() {
    let server = serve_fn(|req: Request<Incoming>| async move {
        let has = req.extensions().get::<Shutdown>().is_some();
        Response::new(Body::from(if has { "yes" } else { "no" }))
    })
    .await;
    let mut s = get(server.addr, "/").await;
    assert_eq!(read_response(&mut s).await.text(), "yes");
    server.stop().await;
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let server = serve_fn(|req: Request<Incoming>| async move {
        Response::new(Body::from(format!("{:?}", req.version())))
    })
    .await;
    let mut send = h2_connect(server.addr).await;
    let res = send
        .send_request(
            Request::builder()
                .uri("http://test/")
                .body(Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "HTTP/2.0");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_response_finish() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (finish_tx, finish) = oneshot::channel::<()>();
    let finish = std::sync::Arc::new(tokio::sync::Mutex::new(Some(finish)));
    let server = serve_fn(move |_req| {
        let started_tx = started_tx.clone();
        let finish = finish.clone();
        async move {
            let _ = started_tx.send(());
            // An ordinary handler (not a held response): shutdown waits for it.
            let rx = finish.lock().await.take();
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            Response::new(Body::from("finished"))
        }
    })
    .await;
    let mut s = get(server.addr, "/").await;
    within("the handler", started.recv()).await.unwrap();
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    // New connections are refused once the listener is dropped.
    within("the listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    finish_tx.send(()).unwrap();
    let res = read_response(&mut s).await;
    assert_eq!(res.text(), "finished");
    assert!(res.complete);
    within("the server to stop", stopping).await.unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(());
            // Never answers, and is not a delayed response.
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new()
            .grace_period(Duration::from_millis(100))
            .serve(listener, service, async {
                let _ = stop_rx.await;
            }),
    );
    let _s = get(addr, "/").await;
    within("the handler", started.recv()).await.unwrap();
    stop_tx.send(()).unwrap();
    within("serve to return after the grace period", server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn held_responses_end_when_the_server_shuts_down() {
    let server = serve_fn(|req: Request<Incoming>| async move {
        DelayedResponse::for_request(&req)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .start(std::future::pending::<()>())
            .await
    })
    .await;
    let mut s = get(server.addr, "/").await;
    // Before its head: the held response answers 503 at shutdown, and the
    // server does not wait out its grace period for it.
    let stopping = tokio::spawn(server.stop());
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 503);
    assert!(res.header("retry-after").is_some());
    within("the server to stop", stopping).await.unwrap();
}

#[tokio::test]
async fn every_request_carries_the_client_address() {
    let server = serve_fn(|req: Request<Incoming>| async move {
        let addr = req
            .extensions()
            .get::<RemoteAddr>()
            .map(|a| a.0.to_string());
        Response::new(Body::from(addr.unwrap_or_default()))
    })
    .await;
    // HTTP/1.1
    let mut s = get(server.addr, "/").await;
    let local = s.local_addr().unwrap();
    assert_eq!(read_response(&mut s).await.text(), local.to_string());
    // h2c
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut send = h2_handshake(tcp).await;
    let req = Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = within("the h2c response", send.send_request(req))
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, local.to_string());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_and_slow_header_connections_at_once() {
    // Regression (issue 9): one client sending a header byte by byte held
    // up a graceful shutdown for the whole grace period.
    // Far longer than the test's patience: the server must not wait it out.
    let server = hello(Server::new().grace_period(Duration::from_secs(600))).await;
    let addr = server.addr;
    // Idle after one request (keep-alive).
    let mut idle = send_raw(addr, "GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let mut buf = Vec::new();
    read_until(&mut idle, &mut buf, b"hi").await;
    // Half a request head.
    let mut slow = send_raw(addr, "GET / HTTP/1.1\r\nHost: te").await;
    // Silent since its connect; the request above proves it was accepted.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut probe = get(addr, "/").await;
    read_response(&mut probe).await;

    server.stop().await;
    for (name, s) in [
        ("idle", &mut idle),
        ("slow", &mut slow),
        ("silent", &mut silent),
    ] {
        within(name, closed_by_server(s)).await;
    }
}

#[tokio::test]
async fn a_handle_whose_result_has_begun_finishes_after_shutdown() {
    // Regression (issue 9): a transfer already streaming was cut at once on
    // SIGINT instead of being given the grace period.
    let (completions_tx, mut completions) = mpsc::unbounded_channel();
    let server = serve_fn(move |req: Request<Incoming>| {
        let (res, completion) = DelayedResponse::for_request(&req)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .handle();
        let _ = completions_tx.send(completion);
        res
    })
    .await;
    let shutdown = server.shutdown.clone();
    let mut s = get(server.addr, "/").await;
    let completion = within("the handler", completions.recv()).await.unwrap();
    completion.write("first ").unwrap();
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"first ").await;
    completion.begin_result();

    let stopping = tokio::spawn(server.stop());
    within("the shutdown", shutdown.triggered()).await;
    completion.write("second ").unwrap();
    read_until(&mut s, &mut buf, b"second ").await;
    assert!(completion.end("last"));
    read_until(&mut s, &mut buf, b"last\r\n0\r\n\r\n").await;
    assert_eq!(completion.abort_reason(), None);
    within("the server to stop", stopping).await.unwrap();
}

#[tokio::test]
async fn a_waiting_handle_ends_at_once_on_shutdown_even_after_progress_writes() {
    let (completions_tx, mut completions) = mpsc::unbounded_channel();
    let server = serve_fn(move |req: Request<Incoming>| {
        let (res, completion) = DelayedResponse::for_request(&req)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .handle();
        let _ = completions_tx.send(completion);
        res
    })
    .await;
    let mut s = get(server.addr, "/").await;
    let completion = within("the handler", completions.recv()).await.unwrap();
    completion.write("progress ").unwrap();
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"progress ").await;

    let stopping = tokio::spawn(server.stop());
    let reason = within("the abort", completion.aborted()).await;
    assert_eq!(reason, delayed_response::AbortReason::Shutdown);
    within("the connection to close", closed_by_server(&mut s)).await;
    within("the server to stop", stopping).await.unwrap();
}

#[cfg(feature = "pipe")]
#[tokio::test]
async fn shutdown_lets_a_pipe_transfer_in_progress_finish() {
    // Regression (issue 9): on SIGINT a transfer in progress was cut at once.
    use tokio::io::AsyncWriteExt;
    let server = serve(delayed_response::pipe::Service::builder().build()).await;
    let shutdown = server.shutdown.clone();
    let addr = server.addr;
    let mut sender = send_raw(
        addr,
        "POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 12\r\n\r\n",
    )
    .await;
    let mut sent = Vec::new();
    read_until(&mut sender, &mut sent, b"\n\r\n").await;
    let text = String::from_utf8_lossy(&sent).into_owned();
    let url = &text[text.find("http://").expect("a URL line")..];
    let id = url.split('\n').next().unwrap().rsplit('/').next().unwrap();
    let mut receiver = get(addr, &format!("/{id}")).await;
    sender.write_all(b"first ").await.unwrap();
    let mut received = Vec::new();
    read_until(&mut receiver, &mut received, b"first ").await;

    let stopping = tokio::spawn(server.stop());
    within("the shutdown", shutdown.triggered()).await;
    sender.write_all(b"second").await.unwrap();
    let res = read_response_after(&mut receiver, received).await;
    assert_eq!(res, "first second");
    read_until(&mut sender, &mut sent, b"done: 12 bytes").await;
    within("the server to stop", stopping).await.unwrap();
}

/// The body of a `Content-Length` response whose first bytes are in `buf`.
#[cfg(feature = "pipe")]
async fn read_response_after(s: &mut TcpStream, mut buf: Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    within("the whole download", async {
        let _ = s.read_to_end(&mut buf).await;
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (_, body) = text.split_once("\r\n\r\n").expect("a head");
    body.to_owned()
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_h2_response_finish() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let server = serve_fn(move |_req: Request<Incoming>| {
        let started_tx = started_tx.clone();
        async move {
            let (finish, finished) = oneshot::channel::<()>();
            let _ = started_tx.send(finish);
            let _ = finished.await;
            Response::new(Body::from("finished"))
        }
    })
    .await;
    let shutdown = server.shutdown.clone();
    let mut send = h2_connect(server.addr).await;
    let req = Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::spawn(send.send_request(req));
    let finish = within("the handler", started.recv()).await.unwrap();
    let stopping = tokio::spawn(server.stop());
    within("the shutdown", shutdown.triggered()).await;
    finish.send(()).unwrap();
    let res = within("the response", response).await.unwrap().unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "finished");
    within("the server to stop", stopping).await.unwrap();
}

// Regression: over HTTP/2, a held response that ended with its 503 at
// shutdown was lost: its body was handed to the connection (nothing in
// flight any more), so the drained connection was dropped before it wrote
// the frames it had queued, and the client saw a broken pipe.
#[tokio::test]
async fn a_held_h2_response_gets_its_503_at_shutdown() {
    let (arrived, mut has_arrived) = tokio::sync::mpsc::unbounded_channel();
    let server = serve_fn(move |req: Request<Incoming>| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            DelayedResponse::for_request(&req)
                .heartbeat(Heartbeat::every(Duration::from_secs(60)))
                .start(std::future::pending::<()>())
                .await
        }
    })
    .await;
    let mut send = h2_connect(server.addr).await;
    let req = Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let waiting = tokio::spawn(async move { send.send_request(req).await });
    within("the request to arrive", has_arrived.recv())
        .await
        .unwrap();
    server.stop().await;
    let res = within("the held response", waiting).await.unwrap().unwrap();
    assert_eq!(res.status(), 503);
}
