//! The hub on Redis as separate processes: `examples/hub_server --redis`
//! instances on one real `redis-server`, one of them killed with SIGKILL.
//!
//! Run alone (`--test redis_processes`), cargo does not rebuild the
//! example: build it first (`cargo build --features jwt,redis --example
//! hub_server`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::example::*;
use support::redis::{on_big_stack, RedisServer};
use support::sse::{SseEvent, SseStream};
use support::*;

/// The presence lease of every instance: a killed one's users leave within
/// it (plus a sweep, a third of it).
const LEASE_MS: u64 = 600;

const ROOM: &str = "chat.room";

/// A `hub_server` process on `redis`, with a short lease.
async fn instance(redis: &RedisServer) -> Example {
    let lease = LEASE_MS.to_string();
    listen(
        example("hub_server").args([
            "--secret",
            "0123456789abcdef0123456789abcdef",
            "--http1-only",
            "--redis",
            &redis.url(),
            "--lease",
            &lease,
        ]),
        "http",
    )
    .await
}

/// Logs `name` in on `addr`; returns the `Cookie:` header line.
async fn login(addr: SocketAddr, name: &str) -> String {
    let body = format!(r#"{{"name":"{name}"}}"#);
    let res = post(addr, "/login", Some("application/json"), &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let cookie = res.header("set-cookie").unwrap().split(';').next().unwrap();
    format!("Cookie: {cookie}\r\n")
}

/// `name` opens a stream of the room on `addr`.
async fn join(addr: SocketAddr, name: &str) -> SseStream {
    let cookie = login(addr, name).await;
    let s = SseStream::open_with(addr, &format!("/hub/sub/{ROOM}"), &cookie).await;
    assert_eq!(s.status, 200);
    s
}

/// Publishes `body` to the room as `name`, on `addr`.
async fn say(addr: SocketAddr, name: &str, body: &str) -> RawResponse {
    let cookie = login(addr, name).await;
    let mut s = send_raw(
        addr,
        &format!(
            "POST /hub/pub/{ROOM} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{cookie}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    read_response(&mut s).await
}

async fn next(s: &mut SseStream) -> SseEvent {
    s.next_event().await.expect("the stream ended")
}

/// The next event, a `join` or `leave`; returns its user.
async fn presence_event(s: &mut SseStream, name: &str) -> String {
    s.expect(name).await["user"].as_str().unwrap().to_string()
}

async fn present(addr: SocketAddr) -> Vec<String> {
    let mut s = get(addr, &format!("/hub/presence/{ROOM}")).await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_killed_instance_s_users_leave_exactly_once_and_the_others_lose_nothing() {
    on_big_stack(kill_one_of_three);
}

async fn kill_one_of_three() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut a = instance(&redis).await;
    let b = instance(&redis).await;
    let c = instance(&redis).await;

    // bob on B, dan on C; ann and cat on A.
    let mut bob = join(b.addr, "bob").await;
    assert_eq!(presence_event(&mut bob, "join").await, "bob");
    let mut dan = join(c.addr, "dan").await;
    assert_eq!(presence_event(&mut bob, "join").await, "dan");
    assert_eq!(presence_event(&mut dan, "join").await, "dan");
    let mut ann = join(a.addr, "ann").await;
    for stream in [&mut bob, &mut dan] {
        assert_eq!(presence_event(stream, "join").await, "ann");
    }
    let mut cat = join(a.addr, "cat").await;
    for stream in [&mut bob, &mut dan] {
        assert_eq!(presence_event(stream, "join").await, "cat");
    }
    assert_eq!(present(c.addr).await, ["ann", "bob", "cat", "dan"]);

    // A publish on A reaches A's, B's and C's subscribers.
    let res = say(a.addr, "ann", "from a").await;
    assert_eq!(res.status, 201, "{}", res.text());
    for stream in [&mut bob, &mut dan] {
        assert_eq!(next(stream).await.data, "from a");
    }
    assert_eq!(presence_event(&mut ann, "join").await, "ann");
    assert_eq!(presence_event(&mut ann, "join").await, "cat");
    assert_eq!(next(&mut ann).await.data, "from a");
    assert_eq!(presence_event(&mut cat, "join").await, "cat");
    assert_eq!(next(&mut cat).await.data, "from a");

    // SIGKILL: A says no goodbye and renews no lease.
    a.child.kill().await.unwrap();
    for stream in [&mut bob, &mut dan] {
        let mut left = vec![
            presence_event(stream, "leave").await,
            presence_event(stream, "leave").await,
        ];
        left.sort();
        assert_eq!(left, ["ann", "cat"], "within a lease");
    }
    // The scenario, not a synchronisation: B and C each sweep a few more
    // times; no second leave may come of it.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    let res = say(c.addr, "dan", "marker").await;
    assert_eq!(res.status, 201, "{}", res.text());
    for stream in [&mut bob, &mut dan] {
        assert_eq!(next(stream).await.data, "marker", "no second leave");
    }

    // B lost nothing of its own: bob is present, gets B's and C's
    // publishes, and a newcomer on B joins as usual.
    assert_eq!(present(b.addr).await, ["bob", "dan"]);
    let res = say(b.addr, "bob", "still here").await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(next(&mut bob).await.data, "still here");
    assert_eq!(next(&mut dan).await.data, "still here");
    let mut eve = join(b.addr, "eve").await;
    assert_eq!(presence_event(&mut eve, "join").await, "eve");
    assert_eq!(presence_event(&mut bob, "join").await, "eve");
    assert_eq!(presence_event(&mut dan, "join").await, "eve");
}
