//! The Redis backplane: several hubs (instances) on their own ports, one
//! real `redis-server`.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::RedisBackplane;
use delayed_response::hub::{Builder, Hub, Namespace, Publishers};
use serde_json::Value;
use support::redis::RedisServer;
use support::sse::{SseEvent, SseStream};
use support::*;

/// Anyone may publish; no limits.
fn open() -> Builder {
    Hub::builder()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
        .no_limits()
}

/// An instance: a hub on its own backplane connection and its own port.
struct Instance {
    hub: Hub,
    server: TestServer,
}

async fn instance(redis: &RedisServer, builder: Builder) -> Instance {
    let backplane = RedisBackplane::builder(redis.url())
        .timeout(Duration::from_millis(500))
        .lease(Duration::from_millis(600))
        .connect()
        .await
        .expect("connect to redis");
    let hub = builder.backplane(Arc::new(backplane)).build();
    let server = serve(hub.service()).await;
    Instance { hub, server }
}

async fn publish(addr: SocketAddr, channel: &str, body: &str) -> RawResponse {
    post(addr, &format!("/pub/{channel}"), Some("text/plain"), body).await
}

fn json(res: &RawResponse) -> Value {
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.text()))
}

async fn next(s: &mut SseStream) -> SseEvent {
    s.next_event().await.expect("the stream ended")
}

#[tokio::test]
async fn a_publish_on_one_instance_reaches_subscribers_on_both() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, open()).await;
    let b = instance(&redis, open()).await;
    let mut on_a = SseStream::open(a.server.addr, "/sub/news").await;
    let mut on_b = SseStream::open(b.server.addr, "/sub/news").await;
    let res = publish(a.server.addr, "news", "hello").await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(json(&res)["subscribers"], 1, "a counts its own subscriber");
    let (got_a, got_b) = (next(&mut on_a).await, next(&mut on_b).await);
    assert_eq!(got_a.data, "hello");
    assert_eq!(got_b.data, "hello");
    assert_eq!(got_a.id, got_b.id, "one position on every instance");
    let res = publish(b.server.addr, "news", "back").await;
    assert_eq!(json(&res)["subscribers"], 1);
    assert_eq!(next(&mut on_a).await.data, "back");
    assert_eq!(next(&mut on_b).await.data, "back");
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_cursor_from_one_instance_resumes_exactly_on_another() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, open()).await;
    let b = instance(&redis, open()).await;
    let first = a.hub.publish("log", "one").await.unwrap();
    assert_eq!(first.subscribers, 0);
    a.hub.publish("log", "two").await.unwrap();
    a.hub.publish("log", "three").await.unwrap();
    let mut resumed = SseStream::open(
        b.server.addr,
        &format!("/sub/log?last_event_id={}", first.id),
    )
    .await;
    assert_eq!(resumed.status, 200);
    assert_eq!(next(&mut resumed).await.data, "two");
    assert_eq!(next(&mut resumed).await.data, "three");
    b.hub.publish("log", "four").await.unwrap();
    assert_eq!(next(&mut resumed).await.data, "four");
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_cursor_from_before_redis_lost_its_data_gets_a_gap_never_wrong_data() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, open()).await;
    let old = a.hub.publish("log", "one").await.unwrap();
    assert!(redis.command("FLUSHALL").await.starts_with("+OK"));
    a.hub.publish("log", "new epoch").await.unwrap();
    let mut resumed =
        SseStream::open(a.server.addr, &format!("/sub/log?last_event_id={}", old.id)).await;
    let gap = resumed.expect("gap").await;
    assert_eq!(gap["channels"], serde_json::json!(["log"]));
    a.server.stop().await;
}
