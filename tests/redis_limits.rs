//! The hub's rate limits on the Redis backplane: one budget per identity,
//! whichever instance a request lands on (two hubs on their own ports and
//! backplane connections, one real `redis-server`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::RedisBackplane;
use delayed_response::hub::{
    Authorizer, Builder, Hub, Identity, Namespace, Publishers, Unauthorized,
};
use delayed_response::limit::Rate;
use http::request::Parts;
use support::redis::{on_big_stack, RedisServer};
use support::sse::SseStream;
use support::*;

/// `X-User: name` identifies user `name`.
struct HeaderAuth;

impl Authorizer for HeaderAuth {
    fn identify(&self, parts: &Parts) -> Result<Identity, Unauthorized> {
        match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
            Some(user) => Ok(Identity::user(user)),
            None => Ok(Identity::anonymous()),
        }
    }
}

/// A budget of `n` that practically does not refill during a test (one
/// token every 100 s).
fn budget(n: u32) -> Option<Rate> {
    Some(Rate::per_second(0.01).burst(n))
}

fn hub() -> Builder {
    Hub::builder()
        .no_limits()
        .authorizer(HeaderAuth)
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
}

async fn instance(redis: &RedisServer, builder: Builder) -> TestServer {
    let backplane = RedisBackplane::builder(redis.url())
        .timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to redis");
    serve(builder.backplane(Arc::new(backplane)).build().service()).await
}

async fn publish(addr: SocketAddr, user: &str) -> RawResponse {
    let mut s = send_raw(
        addr,
        &format!(
            "POST /pub/news HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-User: {user}\r\nContent-Length: 2\r\n\r\nhi"
        ),
    )
    .await;
    read_response(&mut s).await
}

/// `Retry-After` in seconds; fails the test unless it is there.
fn retry_after(res: &RawResponse) -> u64 {
    res.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {res:?}"))
}

#[tokio::test]
async fn n_publishes_split_across_instances_pass_and_the_next_gets_429_on_either() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, hub().publish_rate(budget(4))).await;
    let b = instance(&redis, hub().publish_rate(budget(4))).await;
    for addr in [a.addr, b.addr, a.addr, b.addr] {
        let res = publish(addr, "ann").await;
        assert_eq!(res.status, 202, "{}", res.text());
    }
    for addr in [a.addr, b.addr] {
        let res = publish(addr, "ann").await;
        assert_eq!(res.status, 429, "one budget for both: {}", res.text());
        assert!(
            (1..=100).contains(&retry_after(&res)),
            "a token comes within 100 s: {res:?}"
        );
        assert_eq!(res.text(), "too many publishes\n");
    }
    // Another identity has a budget of its own.
    assert_eq!(publish(b.addr, "bob").await.status, 202);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_connect_rate_is_one_budget_across_instances() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, hub().connect_rate(budget(2))).await;
    let b = instance(&redis, hub().connect_rate(budget(2))).await;
    let on_a = SseStream::open_with(a.addr, "/sub/news", "X-User: ann\r\n").await;
    assert_eq!(on_a.status, 200);
    let on_b = SseStream::open_with(b.addr, "/sub/news", "X-User: ann\r\n").await;
    assert_eq!(on_b.status, 200);
    let mut s = send_raw(
        a.addr,
        "GET /sub/news HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-User: ann\r\n\r\n",
    )
    .await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 429, "{}", res.text());
    assert!(retry_after(&res) >= 1);
    assert_eq!(res.text(), "too many connects\n");
    drop((on_a, on_b));
    a.stop().await;
    b.stop().await;
}

#[test]
fn with_redis_gone_each_instance_counts_its_own_budget() {
    on_big_stack(redis_gone);
}

async fn redis_gone() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis, hub().connect_rate(budget(1))).await;
    redis.stop();
    // The shared bucket cannot be read: A counts alone and lets one
    // connect through (whose stream then finds history unavailable).
    let open = |addr: SocketAddr| async move {
        let mut s = send_raw(
            addr,
            "GET /sub/news HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-User: ann\r\n\r\n",
        )
        .await;
        read_response(&mut s).await
    };
    let first = open(a.addr).await;
    assert_eq!(first.status, 503, "{}", first.text());
    let second = open(a.addr).await;
    assert_eq!(second.status, 429, "{}", second.text());
    a.stop().await;
}
