//! The Redis backplane: several hubs (instances) on their own ports, one
//! real `redis-server`.
#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::RedisBackplane;
use delayed_response::backplane::{Backplane, Presence};
use delayed_response::hub::{
    Authorizer, Builder, Hub, Identity, Namespace, Publishers, Unauthorized,
};
use http::request::Parts;
use serde_json::Value;
use support::redis::{on_big_stack, RedisServer};
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

/// `X-User: name` identifies user `name`.
struct HeaderAuth;

impl Authorizer for HeaderAuth {
    fn identify(&self, parts: &Parts) -> Result<Identity, Unauthorized> {
        match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
            Some(user) => Ok(Identity::user(user).info(serde_json::json!({ "name": user }))),
            None => Ok(Identity::anonymous()),
        }
    }
}

fn rooms() -> Builder {
    open()
        .authorizer(HeaderAuth)
        .grace(Duration::from_millis(100))
        .default_namespace(
            Namespace::new()
                .join_leave(true)
                .publishers(Publishers::Anyone),
        )
}

async fn present(addr: SocketAddr, channel: &str) -> Vec<(String, u64)> {
    let mut stream = send_raw(
        addr,
        &format!("GET /presence/{channel} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let res = read_response(&mut stream).await;
    assert_eq!(res.status, 200, "{}", res.text());
    json(&res)["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_string(),
                u["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn presence_is_shared_across_instances_and_a_dead_instance_s_users_leave_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, rooms()).await;
    let b = instance(&redis, rooms()).await;
    let c = instance(&redis, rooms()).await;
    let mut bob = SseStream::open_with(b.server.addr, "/sub/room", "X-User: bob\r\n").await;
    assert_eq!(bob.expect("join").await["user"], "bob");
    let ann = SseStream::open_with(a.server.addr, "/sub/room", "X-User: ann\r\n").await;
    assert_eq!(bob.expect("join").await["user"], "ann");
    let users = present(c.server.addr, "room").await;
    assert_eq!(users, vec![("ann".to_string(), 1), ("bob".to_string(), 1)]);

    // ann closes her stream: A announces her leave after the grace.
    drop(ann);
    // A dead instance: a join through a backplane of its own, which is then
    // dropped, so nobody renews the lease or says goodbye.
    let dead = RedisBackplane::builder(redis.url())
        .lease(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let joined = dead
        .presence_join(Presence {
            channel: "room",
            user: "cat",
            connection: "dead-1",
            info: None,
            lease: None,
        })
        .await
        .unwrap();
    assert!(joined, "cat was absent");
    drop(dead);
    // B and C both sweep; exactly one leave for cat reaches bob.
    let leave = bob.expect("leave").await;
    // ann's and cat's leaves come in either order.
    let mut left = vec![leave["user"].as_str().unwrap().to_string()];
    left.push(
        bob.expect("leave").await["user"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    left.sort();
    assert_eq!(left, ["ann", "cat"]);
    b.hub.publish("room", "marker").await.unwrap();
    c.hub.publish("room", "marker 2").await.unwrap();
    assert_eq!(next(&mut bob).await.data, "marker", "no second leave");
    assert_eq!(next(&mut bob).await.data, "marker 2");
    let users = present(b.server.addr, "room").await;
    assert_eq!(users, vec![("bob".to_string(), 1)]);
    a.server.stop().await;
    b.server.stop().await;
    c.server.stop().await;
}

/// Publishes until the backplane takes it (after a Redis restart).
async fn publish_when_back(addr: SocketAddr, channel: &str, body: &str) -> RawResponse {
    within("redis to take publishes again", async {
        loop {
            let res = publish(addr, channel, body).await;
            if res.status != 503 {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[test]
fn redis_down_for_two_seconds_answers_503_keeps_subscribers_and_sends_a_gap_after() {
    on_big_stack(redis_down_for_two_seconds);
}

async fn redis_down_for_two_seconds() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, open()).await;
    let b = instance(&redis, open()).await;
    let mut on_a = SseStream::open(a.server.addr, "/sub/news").await;
    let mut on_b = SseStream::open(b.server.addr, "/sub/news").await;
    publish(a.server.addr, "news", "before").await;
    assert_eq!(next(&mut on_a).await.data, "before");
    assert_eq!(next(&mut on_b).await.data, "before");

    redis.stop();
    let res = publish(a.server.addr, "news", "lost?").await;
    assert_eq!(
        res.status, 503,
        "nothing is accepted that will not be delivered"
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    // The scenario, not a synchronisation: Redis stays away for 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().await;

    // Each stream stayed connected and learns it may have missed messages
    // (Redis came back empty: a new epoch).
    for stream in [&mut on_a, &mut on_b] {
        let gap = stream.expect("gap").await;
        assert_eq!(gap["channels"], serde_json::json!(["news"]));
    }
    let res = publish_when_back(b.server.addr, "news", "after").await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(next(&mut on_a).await.data, "after", "a re-subscribed");
    assert_eq!(next(&mut on_b).await.data, "after");
    assert_eq!(a.hub.stats().connections, 1);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_slow_redis_never_stalls_a_heartbeat() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, open().keep_alive(Duration::from_millis(100))).await;
    let mut stream = SseStream::open(a.server.addr, "/sub/news").await;
    let port = redis.port;
    let mut sleeping = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        tcp.write_all(b"DEBUG SLEEP 3\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let _ = tcp.read(&mut buf).await;
    });
    // Redis is asleep: a publish times out (503) while heartbeats go on.
    let addr = a.server.addr;
    let publishing = tokio::spawn(async move { publish(addr, "news", "slow").await });
    let before = stream.comments;
    tokio::select! {
        () = stream.comments_until(before + 5) => {}
        _ = &mut sleeping => panic!("redis woke before five heartbeats went out"),
    }
    let res = publishing.await.unwrap();
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));
    let _ = sleeping.await;
    a.server.stop().await;
}

#[tokio::test]
async fn a_publish_is_one_redis_round_trip_whatever_the_number_of_subscribers() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // A long lease: no presence sweep runs during the count.
    let backplane = RedisBackplane::builder(redis.url())
        .lease(Duration::from_secs(600))
        .connect()
        .await
        .unwrap();
    let hub = open().backplane(Arc::new(backplane)).build();
    let server = serve(hub.service()).await;
    // Loads the publish script (a first EVALSHA can be a NOSCRIPT, then EVAL).
    assert_eq!(publish(server.addr, "fan", "warm-up").await.status, 202);
    let mut calls = Vec::new();
    let mut streams = Vec::new();
    for subscribers in [1, 25] {
        while streams.len() < subscribers {
            streams.push(SseStream::open(server.addr, "/sub/fan").await);
        }
        let before = redis.script_calls().await;
        for i in 0..10 {
            let res = publish(server.addr, "fan", &format!("m{i}")).await;
            assert_eq!(json(&res)["subscribers"], subscribers);
        }
        calls.push(redis.script_calls().await - before);
    }
    assert_eq!(
        calls,
        [10, 10],
        "script calls for 10 publishes, to 1 and to 25 subscribers"
    );
    server.stop().await;
}
