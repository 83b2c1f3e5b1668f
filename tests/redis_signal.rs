//! Signal swarms across instances: signal services on their own ports, each
//! with its own `RedisBackplane`, sharing one real `redis-server`; and two
//! `signal_server` processes, one killed with SIGKILL. Run alone (`--test
//! redis_signal`), cargo does not rebuild the examples: build them first
//! (`cargo build --all-features --examples`).
#![cfg(all(feature = "redis", feature = "signal"))]

mod support;

#[path = "redis_signal/cut.rs"]
mod cut;
#[path = "redis_signal/peers.rs"]
mod peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cut::Cut;
use delayed_response::backplane::RedisBackplane;
use delayed_response::signal;
use peers::*;
use serde_json::{json, Value};
use support::example::{example, listen};
use support::redis::RedisServer;
use support::*;

/// Short, so that a dead instance is noticed quickly.
const LEASE: Duration = Duration::from_millis(600);

/// An instance: a signal service on its own backplane connection and port.
struct Instance {
    signal: signal::Service,
    server: TestServer,
}

impl Instance {
    fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

async fn instance(url: &str, builder: signal::Builder) -> Instance {
    let backplane = RedisBackplane::builder(url)
        .timeout(Duration::from_millis(500))
        .lease(LEASE)
        .connect()
        .await
        .expect("connect to redis");
    let signal = builder.backplane(Arc::new(backplane)).build();
    let server = serve(signal.clone()).await;
    Instance { signal, server }
}

#[tokio::test]
async fn a_swarm_spans_two_instances() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis.url(), signal::Service::builder()).await;
    let b = instance(&redis.url(), signal::Service::builder()).await;
    spanning(&a, &b).await;
    a.server.stop().await;
    b.server.stop().await;
}

async fn spanning(a: &Instance, b: &Instance) {
    let mut init = create(a.addr()).await;
    let mut on_b = joined(b.addr(), &mut init).await;
    let mut on_a = joined(a.addr(), &mut init).await;
    assert_eq!(a.signal.peer_count(&init.id), Some(2), "A's own peers");
    assert_eq!(b.signal.peer_count(&init.id), Some(1), "B's own peers");

    // Broadcasts reach every peer on both instances, whichever instance
    // the POST lands on.
    send(b.addr(), &on_b, None, json!({"x": 1})).await;
    let from = on_b.cid.clone();
    for peer in [&mut init, &mut on_b, &mut on_a] {
        got(peer, &from, json!({"x": 1})).await;
    }
    send(a.addr(), &init, None, json!("hi")).await;
    got(&mut on_b, &init.cid, json!("hi")).await;
    got(&mut on_a, &init.cid, json!("hi")).await;
    let me = init.cid.clone();
    got(&mut init, &me, json!("hi")).await;

    // Direct signals, both ways, posted on either instance: only the
    // target gets one (the next broadcast is the others' next event).
    send(a.addr(), &init, Some(&on_b), json!(5)).await;
    got(&mut on_b, &init.cid, json!(5)).await;
    send(a.addr(), &on_b, Some(&init), json!([1, 2])).await;
    got(&mut init, &on_b.cid, json!([1, 2])).await;
    send(b.addr(), &on_a, None, null_free()).await;
    let from = on_a.cid.clone();
    for peer in [&mut init, &mut on_b, &mut on_a] {
        got(peer, &from, null_free()).await;
    }

    // A peer on B leaves: the initiator on A gets its `leave`.
    drop(on_b.stream);
    assert_eq!(
        expect(&mut init.stream, "leave").await["cid"],
        on_b.cid.as_str()
    );
    eventually("B to forget the swarm", || b.signal.swarm_count() == 0).await;

    // Another joins on B; then the initiator leaves: the peers on both
    // instances get `close`, and the swarm is gone everywhere.
    let mut again = joined(b.addr(), &mut init).await;
    drop(init.stream);
    assert_eq!(
        expect(&mut again.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut again.stream).await, "B's peer ends cleanly");
    assert_eq!(
        expect(&mut on_a.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut on_a.stream).await, "A's peer ends cleanly");
    for addr in [a.addr(), b.addr()] {
        assert_eq!(get_status(addr, &format!("/{}", init.id)).await.status, 404);
        let res = post_json(addr, &init.id, json!({"token": on_a.token, "data": 1})).await;
        assert_eq!(res.status, 404, "{}", res.text());
    }
}

/// Data with escapes in it (the event stays one line).
fn null_free() -> Value {
    json!({"n": 1.5, "s": "é \" \n"})
}

#[tokio::test]
async fn max_peers_and_max_swarms_count_every_instance() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limits = || signal::Service::builder().max_peers(2).max_swarms(1);
    let a = instance(&redis.url(), limits()).await;
    let b = instance(&redis.url(), limits()).await;
    let mut init = create(a.addr()).await;
    let mut peer = joined(b.addr(), &mut init).await;
    let full = get_status(a.addr(), &format!("/{}", init.id)).await;
    assert_eq!(full.status, 503);
    assert_eq!(full.text(), "swarm is full\n");
    let full = get_status(b.addr(), "/").await;
    assert_eq!(full.status, 503);
    assert_eq!(full.text(), "too many swarms\n");

    // Once the swarm is over (its `close` is published with its end), B
    // may create one.
    drop(init.stream);
    expect(&mut peer.stream, "close").await;
    let _second = create(b.addr()).await;
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn when_the_initiators_instance_dies_the_swarm_ends_on_the_others_within_the_lease() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // A reaches Redis through a connection that the test cuts: no clean
    // leave, no renewal, as if A's machine went away.
    let cut = Cut::start(redis.port).await;
    let a = instance(&cut.url(), signal::Service::builder()).await;
    let b = instance(&redis.url(), signal::Service::builder()).await;
    let c = instance(&redis.url(), signal::Service::builder()).await;
    let mut init = create(a.addr()).await;
    let mut on_b = joined(b.addr(), &mut init).await;
    let mut on_c = joined(c.addr(), &mut init).await;

    let started = tokio::time::Instant::now();
    cut.cut().await;
    // B's and C's sweepers both look; the swarm ends once for each peer.
    assert_eq!(
        expect(&mut on_b.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut on_b.stream).await);
    assert_eq!(
        expect(&mut on_c.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut on_c.stream).await);
    eprintln!("the swarm ended {:?} after the cut", started.elapsed());
    assert_eq!(
        get_status(b.addr(), &format!("/{}", init.id)).await.status,
        404
    );
    // A, cut off for a whole lease, ends its own swarms too.
    assert_eq!(
        expect(&mut init.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut init.stream).await);
    b.server.stop().await;
    c.server.stop().await;
    a.server.stop().await;
}

#[tokio::test]
async fn a_peer_of_a_dead_instance_leaves_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let cut = Cut::start(redis.port).await;
    let a = instance(&cut.url(), signal::Service::builder()).await;
    let b = instance(&redis.url(), signal::Service::builder()).await;
    let c = instance(&redis.url(), signal::Service::builder()).await;
    let mut init = create(b.addr()).await;
    let lost = joined(a.addr(), &mut init).await;
    let on_c = joined(c.addr(), &mut init).await;
    cut.cut().await;
    assert_eq!(
        expect(&mut init.stream, "leave").await["cid"],
        lost.cid.as_str()
    );
    // Exactly one leave: the next event is this signal, after the sweeps
    // of B and C had time to run a few times.
    tokio::time::sleep(LEASE).await;
    send(c.addr(), &on_c, None, json!("next")).await;
    got(&mut init, &on_c.cid, json!("next")).await;
    assert_eq!(b.signal.peer_count(&init.id), Some(1));
    b.server.stop().await;
    c.server.stop().await;
    a.server.stop().await;
}

#[tokio::test]
async fn a_redis_that_lost_its_data_ends_the_swarms_it_forgot() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let a = instance(&redis.url(), signal::Service::builder()).await;
    let b = instance(&redis.url(), signal::Service::builder()).await;
    let mut init = create(a.addr()).await;
    let mut on_b = joined(b.addr(), &mut init).await;
    assert!(redis.command("FLUSHALL").await.starts_with("+OK"));
    // Each instance's next tick finds its lease gone: its streams end,
    // rather than stay in a swarm nobody else can find.
    assert_eq!(
        expect(&mut on_b.stream, "close").await["id"],
        init.id.as_str()
    );
    assert_eq!(
        expect(&mut init.stream, "close").await["id"],
        init.id.as_str()
    );
    // And the instances go on: a new swarm spans them again.
    let mut init = create(a.addr()).await;
    let _peer = joined(b.addr(), &mut init).await;
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_answers_of_one_instance() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let remote = instance(&redis.url(), signal::Service::builder()).await;
    let other = instance(&redis.url(), signal::Service::builder()).await;
    let plain = serve(signal::Service::new()).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    for (addr, elsewhere) in [
        (plain.addr, plain.addr),
        (remote.addr(), remote.addr()),
        (remote.addr(), other.addr()),
    ] {
        let mut init = create(addr).await;
        let peer = joined(addr, &mut init).await;
        let id = init.id.clone();
        let id = id.as_str();
        let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
            (
                "/foo/bar",
                Some("application/json"),
                "{}".into(),
                404,
                "not found\n",
            ),
            (
                unknown,
                Some("application/json"),
                "{}".into(),
                404,
                "no such swarm\n",
            ),
            (id, Some("text/plain"), "{}".into(), 415, ""),
            (id, Some("application/json"), "{".into(), 400, ""),
            (id, Some("application/json"), "5".into(), 400, ""),
            (
                id,
                Some("application/json"),
                json!({"token": unknown, "data": 1}).to_string(),
                401,
                "",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": 5, "data": 1}).to_string(),
                401,
                "",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": peer.token}).to_string(),
                400,
                "no data\n",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": peer.token, "data": 1, "cid": 5}).to_string(),
                400,
                "cid must be a string\n",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": peer.token, "data": 1, "cid": unknown}).to_string(),
                404,
                "no such peer (cid)\n",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": peer.token, "data": 1, "cid": "x"}).to_string(),
                404,
                "no such peer (cid)\n",
            ),
            (
                id,
                Some("application/json"),
                json!({"token": unknown}).to_string(),
                401,
                "",
            ),
        ];
        for (path, ct, body, status, text) in cases {
            let path = format!("/{}", path.trim_start_matches('/'));
            let res = post(elsewhere, &path, ct, &body).await;
            assert_eq!(res.status, status, "POST {path} {body}: {}", res.text());
            if !text.is_empty() {
                assert_eq!(res.text(), text, "POST {path} {body}");
            }
        }
        let too_big = format!(
            r#"{{"token":"{}","data":"{}"}}"#,
            peer.token,
            "x".repeat(20_000)
        );
        let res = post(
            elsewhere,
            &format!("/{id}"),
            Some("application/json"),
            &too_big,
        )
        .await;
        assert_eq!(res.status, 413);
        // An id that names no swarm costs the instance no subscription.
        let subscribes = redis.calls(&["subscribe", "unsubscribe"]).await;
        assert_eq!(
            get_status(elsewhere, &format!("/{unknown}")).await.status,
            404
        );
        assert_eq!(redis.calls(&["subscribe", "unsubscribe"]).await, subscribes);
        assert_eq!(get_status(elsewhere, "/nothex").await.status, 404);
        assert_eq!(get_status(elsewhere, "/a/b").await.status, 404);
    }
    plain.stop().await;
    remote.server.stop().await;
    other.server.stop().await;
}

#[tokio::test]
async fn redis_out_of_reach_answers_503_with_retry_after() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let cut = Cut::start(redis.port).await;
    let a = instance(&cut.url(), signal::Service::builder()).await;
    let init = create(a.addr()).await;
    cut.cut().await;
    let res = get_status(a.addr(), "/").await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));
    let res = post_json(a.addr(), &init.id, json!({"token": init.token, "data": 1})).await;
    assert_eq!(res.status, 503, "{}", res.text());
    a.server.stop().await;
}

#[tokio::test]
async fn two_example_processes_share_a_swarm_and_a_sigkill_ends_it_on_the_survivor() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let lease = LEASE.as_millis().to_string();
    let start = || async {
        let mut cmd = example("signal_server");
        cmd.args(["--redis", &redis.url(), "--redis-lease-ms", &lease]);
        listen(&mut cmd, "http").await
    };
    let mut a = start().await;
    let b = start().await;
    let mut init = create(a.addr).await;
    let mut peer = joined(b.addr, &mut init).await;
    send(a.addr, &peer, Some(&init), json!("offer")).await;
    got(&mut init, &peer.cid, json!("offer")).await;
    send(b.addr, &init, Some(&peer), json!("answer")).await;
    got(&mut peer, &init.cid, json!("answer")).await;

    // SIGKILL: no leave, no goodbye; B's sweeper ends the swarm.
    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    assert_eq!(
        expect(&mut peer.stream, "close").await["id"],
        init.id.as_str()
    );
    assert!(end(&mut peer.stream).await);
    assert_eq!(
        get_status(b.addr, &format!("/{}", init.id)).await.status,
        404
    );
}
