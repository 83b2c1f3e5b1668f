//! `DelayedResponse` inside axum handlers, served by `axum::serve` over real
//! sockets: the response type fits axum as it is, heartbeats go out, and
//! aborts are detected.

mod support;

use std::time::Duration;

use axum::routing::get as route_get;
use axum::Router;
use delayed_response::{AbortReason, DelayedResponse, Heartbeat, Json};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

async fn serve_axum(app: Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn axum_handler_long_polls_with_heartbeats() {
    let app = Router::new().route(
        "/slow",
        route_get(|| async {
            DelayedResponse::new()
                .json()
                .heartbeat(Heartbeat::every(Duration::from_millis(20)))
                .start(async {
                    tokio::time::sleep(Duration::from_millis(70)).await;
                    Json(serde_json::json!({ "rows": 42 }))
                })
                .await
        }),
    );
    let addr = serve_axum(app).await;
    let mut s = get(addr, "/slow").await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 202);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert!(res.chunks.len() >= 2, "{:?}", res.chunks);
    let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(v["rows"], 42);
}

#[tokio::test]
async fn axum_handler_wait_answers_200_then_202() {
    let app = Router::new().route(
        "/wait/{ms}",
        route_get(
            |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                DelayedResponse::new()
                    .timeout(Duration::from_millis(100))
                    .wait(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        "done"
                    })
                    .await
            },
        ),
    );
    let addr = serve_axum(app).await;
    let mut s = get(addr, "/wait/0").await;
    let res = read_response(&mut s).await;
    assert_eq!((res.status, res.text().as_str()), (200, "done"));
    let mut s = get(addr, "/wait/10000").await;
    assert_eq!(read_response(&mut s).await.status, 202);
}

#[tokio::test]
async fn axum_handler_sees_client_aborts() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/held",
        route_get(move || {
            let tx = tx.clone();
            async move {
                DelayedResponse::new()
                    .heartbeat(Heartbeat::every(Duration::from_millis(20)))
                    .on_abort(move |r| {
                        let _ = tx.send(r);
                    })
                    .start(std::future::pending::<()>())
                    .await
            }
        }),
    );
    let addr = serve_axum(app).await;
    let mut s = get(addr, "/held").await;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"1\r\n \r\n").await;
    drop(s);
    assert_eq!(
        within("the abort", rx.recv()).await.unwrap(),
        AbortReason::ClientGone
    );
}
