//! Per-client caps beside the global one: a client at its cap gets `429`
//! with `Retry-After`, and other clients go on.

use std::convert::Infallible;

use bytes::Bytes;
use delayed_response::limit::ClientKey;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::*;

/// Serves `pipe` with each request's client named by its `X-Client` header,
/// as an application that keys clients by API key would.
async fn serve_keyed(pipe: pipe::Service) -> TestServer {
    serve(hyper::service::service_fn(
        move |mut req: Request<Incoming>| {
            if let Some(key) = req.headers().get("x-client").and_then(|v| v.to_str().ok()) {
                let key = ClientKey::new(key.to_owned());
                req.extensions_mut().insert(key);
            }
            pipe.respond(req)
        },
    ))
    .await
}

fn reserve_as(client: &str) -> String {
    format!("X-Client: {client}\r\n")
}

// Regression (issue 9.3): 10,050 `GET /reserve` from one client filled the
// global cap, and every other upload was answered 503 for the whole TTL.
#[tokio::test]
async fn one_client_at_its_reservation_cap_gets_429_and_others_are_unaffected() {
    let pipe = pipe()
        .reservations(true)
        .max_waiting(10)
        .max_reservations_per_client(3)
        .build();
    let server = serve_keyed(pipe.clone()).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let res = reserve(server.addr, &reserve_as("mallory")).await;
        if res.status == 429 {
            assert_eq!(res.header("retry-after"), Some("5"));
        }
        statuses.push(res.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 17);
    assert_eq!(pipe.waiting(), 3);

    // Another client reserves and uploads as if nothing happened.
    let r = Reserved::of(&reserve(server.addr, &reserve_as("alice")).await);
    let mut sender = open(server.addr, &r.upload(2)).await;
    sender.send(b"ok").await;
    assert_eq!(download(server.addr, &r.id).await.text(), "ok");
    server.stop().await;
}

type Chunk = Result<Frame<Bytes>, Infallible>;
type Stalled = StreamBody<futures_util::stream::Pending<Chunk>>;

// Regression (issue 9.3): 51 h2c connections of 200 streams each, from one
// client, became 10,000 waiting senders in 2.6 s.
#[tokio::test]
async fn one_client_at_its_waiting_cap_gets_429_over_h2c_and_others_are_unaffected() {
    let pipe = pipe().max_waiting(10).max_waiting_per_client(3).build();
    let server = serve_keyed(pipe.clone()).await;
    let mut conn = h2_connect::<Stalled>(server.addr).await;
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let req = Request::post("http://test/")
            .header("x-client", "mallory")
            .body(StreamBody::new(futures_util::stream::pending()))
            .unwrap();
        let res = within("an answer", conn.send_request(req)).await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert_eq!(res.headers()["retry-after"], "5");
        }
        held.push(res);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
    assert_eq!(pipe.waiting(), 3);

    let mut sender = open(server.addr, &post(2, "X-Client: alice\r\n")).await;
    sender.send(b"hi").await;
    assert_eq!(download(server.addr, &sender.id).await.text(), "hi");

    // A waiting upload that is taken gives its unit back.
    let first = held.remove(0);
    let url = within("the URL line", first.into_body().frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let id = String::from_utf8_lossy(&url)
        .trim()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let rx = get(server.addr, &format!("/{id}")).await;
    // The receiver waits for bytes that never come; its socket is taken.
    eventually("the socket to be taken", || pipe.waiting() == 2).await;
    let req = Request::post("http://test/")
        .header("x-client", "mallory")
        .body(StreamBody::new(futures_util::stream::pending()))
        .unwrap();
    let res = within("an answer", conn.send_request(req)).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(rx);
    server.stop().await;
}
