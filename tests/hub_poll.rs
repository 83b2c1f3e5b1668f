//! The hub's long-poll: the cursor loop, waiting, heartbeats, gaps.
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::hub::{Builder, Hub, Namespace, Publishers};
use serde_json::Value;
use support::*;

fn open() -> Builder {
    Hub::builder()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
        .no_limits()
}

async fn poll(addr: SocketAddr, path: &str, extra: &str) -> (RawResponse, Value) {
    let mut stream = send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n"),
    )
    .await;
    let res = read_response(&mut stream).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = serde_json::from_slice(&res.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", res.text()));
    (res, body)
}

fn data(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_poll_with_waiting_messages_answers_at_once_and_the_cursor_loop_loses_nothing() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let first = hub.publish("feed", "0").await.unwrap();
    for i in 1..4 {
        hub.publish("feed", format!("{i}")).await.unwrap();
    }
    let (res, body) = poll(server.addr, &format!("/poll/feed?cursor={}", first.id), "").await;
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(data(&body), ["1", "2", "3"]);
    assert_eq!(body["gap"], false);
    assert_eq!(body["messages"][0]["channel"], "feed");
    // Go on from the returned cursor while a publisher keeps publishing.
    let mut cursor = body["cursor"].as_str().unwrap().to_string();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 4..40 {
                hub.publish("feed", format!("{i}")).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 36 {
        let (_, body) = poll(server.addr, &format!("/poll/feed?cursor={cursor}"), "").await;
        got.extend(data(&body));
        cursor = body["cursor"].as_str().unwrap().to_string();
    }
    publisher.await.unwrap();
    let expected: Vec<String> = (4..40).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_poll_without_a_cursor_waits_from_the_current_end() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    hub.publish("feed", "old").await.unwrap();
    let waiting = tokio::spawn(async move { poll(server.addr, "/poll/feed", "").await.1 });
    eventually("the poll to wait", || hub.stats().channels == 1).await;
    hub.publish("feed", "new").await.unwrap();
    let body = waiting.await.unwrap();
    assert_eq!(data(&body), ["new"]);
}

#[tokio::test]
async fn a_poll_that_times_out_answers_an_empty_list_and_the_same_cursor_after_heartbeats() {
    let hub = open()
        .max_wait(Duration::from_millis(300))
        .keep_alive(Duration::from_millis(20))
        .build();
    let server = serve(hub.service()).await;
    let m = hub.publish("quiet", "x").await.unwrap();
    let (res, body) = poll(
        server.addr,
        &format!("/poll/quiet?cursor={}", m.id),
        "Prefer: wait=10\r\n",
    )
    .await;
    assert_eq!(data(&body), Vec::<String>::new());
    assert_eq!(body["cursor"], m.id.as_str());
    assert!(res.body.starts_with(b" "), "heartbeat spaces come first");
    server.stop().await;
}

#[tokio::test]
async fn a_multiplexed_poll_with_a_foreign_cursor_reports_a_gap() {
    let other = open().build();
    let a = other.publish("a", "x").await.unwrap();
    let b = other.publish("b", "x").await.unwrap();
    let hub = open().build();
    let server = serve(hub.service()).await;
    hub.publish("b", "here").await.unwrap();
    let cursor = format!("{}.{}", a.id, b.id);
    let (_, body) = poll(
        server.addr,
        &format!("/poll?channel=a&channel=b&cursor={cursor}"),
        "",
    )
    .await;
    assert_eq!(body["gap"], true);
    assert!(data(&body).is_empty(), "a gap replays nothing");
    // The new cursor goes on live.
    let cursor = body["cursor"].as_str().unwrap().to_string();
    hub.publish("a", "live").await.unwrap();
    let (_, body) = poll(
        server.addr,
        &format!("/poll?channel=a&channel=b&cursor={cursor}"),
        "",
    )
    .await;
    assert_eq!(data(&body), ["live"]);
    assert_eq!(body["gap"], false);
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_client_is_one_connection_while_its_polls_keep_coming() {
    let hub = open()
        .max_wait(Duration::from_millis(50))
        .poll_lease(Duration::from_millis(200))
        .build();
    let server = serve(hub.service()).await;
    let m = hub.publish("p", "x").await.unwrap();
    for _ in 0..3 {
        poll(server.addr, &format!("/poll/p?cursor={}", m.id), "").await;
        assert_eq!(hub.stats().connections, 1);
    }
    eventually("the lease to run out", || hub.stats().connections == 0).await;
    server.stop().await;
}

/// Regression: the poll read `Prefer` by splitting on every comma and
/// semicolon, so a `wait=0` inside another preference's quoted value
/// answered the poll at once. It reads `Prefer` by RFC 7240 now (as
/// `park::Prefer` does): here there is no `wait`, so the poll waits.
#[tokio::test]
async fn a_wait_inside_a_quoted_value_does_not_cut_a_poll_short() {
    let hub = open()
        .max_wait(Duration::from_millis(300))
        .keep_alive(Duration::from_millis(20))
        .build();
    let server = serve(hub.service()).await;
    let m = hub.publish("quoted", "x").await.unwrap();
    let (res, body) = poll(
        server.addr,
        &format!("/poll/quoted?cursor={}", m.id),
        "Prefer: note=\"a, wait=0\"\r\n",
    )
    .await;
    assert_eq!(data(&body), Vec::<String>::new());
    assert!(
        res.body.starts_with(b" "),
        "the poll answered at once instead of waiting: {:?}",
        res.text()
    );
    server.stop().await;
}
