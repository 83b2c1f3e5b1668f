//! `server::serve`: HTTP/1.1 and h2c on one port, the shutdown signal in
//! request extensions, and a graceful shutdown that ends held responses
//! first and then waits, up to its grace period, for the rest.

mod support;

use std::time::Duration;

use delayed_response::server::Server;
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
