//! Smoke tests of the core over real sockets.
mod support;

use std::time::Duration;

use delayed_response::{DelayedResponse, Heartbeat};
use support::*;

#[tokio::test]
async fn start_sends_heartbeats_then_result() {
    let server = serve_fn(|_req| async {
        DelayedResponse::new()
            .heartbeat(Heartbeat::every(Duration::from_millis(20)))
            .start(async {
                tokio::time::sleep(Duration::from_millis(110)).await;
                "results"
            })
            .await
    })
    .await;
    let mut s = get(server.addr, "/").await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 202);
    assert!(res.complete);
    let text = res.text();
    assert!(text.ends_with("results"), "{text:?}");
    assert!(text.starts_with("  "), "{text:?}");
    server.stop().await;
}

#[tokio::test]
async fn wait_fast_result_is_200() {
    let server = serve_fn(|_req| async { DelayedResponse::new().wait(async { "ok" }).await }).await;
    let mut s = get(server.addr, "/").await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "ok");
    assert_eq!(res.header("content-length"), Some("2"));
    server.stop().await;
}
