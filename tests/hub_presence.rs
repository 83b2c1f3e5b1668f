//! Presence, join/leave with the grace window, and the lifecycle hooks.
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delayed_response::hub::{
    Authorizer, Builder, Hub, Identity, Item, Namespace, Publishers, Reason, Subscription,
    Unauthorized,
};
use futures_util::{FutureExt, StreamExt};
use http::request::Parts;
use serde_json::json;
use support::sse::SseStream;
use support::*;
use tokio::io::AsyncWriteExt;

/// `X-User: name` identifies user `name`, with `{"name": name}` as info.
struct HeaderAuth;

impl Authorizer for HeaderAuth {
    fn identify(&self, parts: &Parts) -> Result<Identity, Unauthorized> {
        match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
            Some("bad") => Err(Unauthorized::new("bad user")),
            Some(user) => Ok(Identity::user(user).info(json!({ "name": user }))),
            None => Ok(Identity::anonymous()),
        }
    }
}

fn rooms() -> Builder {
    Hub::builder()
        .authorizer(HeaderAuth)
        .default_namespace(
            Namespace::new()
                .join_leave(true)
                .publishers(Publishers::Anyone),
        )
        .no_limits()
}

fn user(name: &str) -> Identity {
    Identity::user(name).info(json!({ "name": name }))
}

/// The next item, which must already be queued.
fn ready(sub: &mut Subscription) -> Item {
    sub.next()
        .now_or_never()
        .expect("an item is ready")
        .expect("the subscription ended")
}

fn presence_event(item: Item) -> (String, String) {
    match item {
        Item::Message {
            event: Some(event),
            data,
            ..
        } => {
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            (event.to_string(), v["user"].as_str().unwrap().to_string())
        }
        other => panic!("expected a presence event, got {other:?}"),
    }
}

/// Lets the sweeper run what is due after an `advance`.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_who_reconnects_within_the_grace_window_causes_neither_leave_nor_join() {
    let hub = rooms().grace(Duration::from_secs(5)).build();
    let mut ann = hub
        .subscribe_as(user("ann"), &["room"], None)
        .await
        .unwrap();
    assert_eq!(
        presence_event(ready(&mut ann)),
        ("join".into(), "ann".into())
    );
    let bob = hub
        .subscribe_as(user("bob"), &["room"], None)
        .await
        .unwrap();
    assert_eq!(
        presence_event(ready(&mut ann)),
        ("join".into(), "bob".into())
    );

    drop(bob);
    tokio::time::advance(Duration::from_secs(4)).await;
    settle().await;
    let bob = hub
        .subscribe_as(user("bob"), &["room"], None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    hub.publish("room", "marker").await.unwrap();
    match ready(&mut ann) {
        Item::Message {
            event: None, data, ..
        } => assert_eq!(&data[..], b"marker"),
        other => panic!("expected the marker alone, got {other:?}"),
    }
    let members = hub.presence("room").await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1].user, "bob");
    assert_eq!(members[1].connections, 1);
    assert_eq!(members[1].info.as_deref(), Some(&br#"{"name":"bob"}"#[..]));

    drop(bob);
    tokio::time::advance(Duration::from_millis(4900)).await;
    settle().await;
    assert!(
        ann.next().now_or_never().is_none(),
        "still within the grace window"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert_eq!(
        presence_event(ready(&mut ann)),
        ("leave".into(), "bob".into())
    );
    assert_eq!(hub.presence("room").await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn presence_counts_each_users_connections() {
    let hub = rooms().build();
    let _a1 = hub.subscribe_as(user("ann"), &["r"], None).await.unwrap();
    let _a2 = hub
        .subscribe_as(user("ann"), &["r", "s"], None)
        .await
        .unwrap();
    let _anon = hub.subscribe(&["r"], None).await.unwrap();
    let members = hub.presence("r").await.unwrap();
    assert_eq!(members.len(), 1, "anonymous clients are not listed");
    assert_eq!(
        (members[0].user.as_str(), members[0].connections),
        ("ann", 2)
    );
    assert_eq!(hub.stats().users, 1);
    assert_eq!(hub.stats().connections, 3);
}

async fn open_as(addr: SocketAddr, path: &str, name: &str) -> SseStream {
    SseStream::open_with(addr, path, &format!("X-User: {name}\r\n")).await
}

#[tokio::test]
async fn streams_get_join_and_leave_and_presence_is_served_over_http() {
    let hub = rooms().grace(Duration::ZERO).build();
    let server = serve(hub.service()).await;
    let mut ann = open_as(server.addr, "/sub/room", "ann").await;
    assert_eq!(ann.expect("join").await["user"], "ann");
    let bob = open_as(server.addr, "/sub/room", "bob").await;
    let join = ann.expect("join").await;
    assert_eq!(
        join,
        json!({"channel": "room", "user": "bob", "info": {"name": "bob"}})
    );

    let res = post(server.addr, "/pub/room", None, "hi").await;
    assert_eq!(res.status, 201);
    let mut s = send_raw(
        server.addr,
        "GET /presence/room HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(
        body,
        json!({"channel": "room", "users": [
            {"user": "ann", "connections": 1, "info": {"name": "ann"}},
            {"user": "bob", "connections": 1, "info": {"name": "bob"}},
        ]})
    );
    drop(bob);
    let next = ann.next_event().await.unwrap();
    assert_eq!(next.data, "hi");
    assert_eq!(ann.expect("leave").await["user"], "bob");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_vanishes_silently_leaves_within_two_keep_alive_intervals() {
    // A request pipelined behind the stream keeps hyper from reading the
    // socket, so it never sees the FIN: only a failed heartbeat write tells.
    let beat = Duration::from_millis(200);
    let hub = rooms().keep_alive(beat).grace(Duration::ZERO).build();
    let server = serve(hub.service()).await;
    let mut ann = open_as(server.addr, "/sub/room", "ann").await;
    ann.expect("join").await;
    let mut bob = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    bob.write_all(
        b"GET /sub/room HTTP/1.1\r\nHost: t\r\nX-User: bob\r\n\r\nGET /stats HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(ann.expect("join").await["user"], "bob");
    let left = std::time::Instant::now();
    drop(bob);
    assert_eq!(ann.expect("leave").await["user"], "bob");
    // Two intervals, plus slack for a loaded machine.
    assert!(
        left.elapsed() < beat * 2 + Duration::from_secs(1),
        "{:?}",
        left.elapsed()
    );
    server.stop().await;
}

type Log = Arc<Mutex<Vec<(String, Reason)>>>;

fn logged() -> (Builder, Log, Arc<Mutex<usize>>) {
    let log: Log = Arc::default();
    let subscribed = Arc::new(Mutex::new(0));
    let (l, s) = (log.clone(), subscribed.clone());
    let builder = rooms()
        .on_subscribe(move |identity, _| {
            *s.lock().unwrap() += 1;
            identity.user_id() != Some("refused")
        })
        .on_unsubscribe(move |identity, _, reason| {
            let who = identity.user_id().unwrap_or("anonymous").to_string();
            l.lock().unwrap().push((who, reason));
        });
    (builder, log, subscribed)
}

fn reasons(log: &Log, who: &str) -> Vec<Reason> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(w, _)| w == who)
        .map(|(_, r)| *r)
        .collect()
}

#[tokio::test]
async fn hooks_fire_exactly_once_for_every_way_a_connection_ends() {
    let (builder, log, subscribed) = logged();
    let hub = builder
        .max_wait(Duration::from_millis(50))
        .poll_lease(Duration::from_millis(100))
        .build();
    let server = serve(hub.service()).await;

    // Refused: 403, and no unsubscribe later.
    let mut s = send_raw(
        server.addr,
        "GET /sub/a HTTP/1.1\r\nHost: t\r\nX-User: refused\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(read_response(&mut s).await.status, 403);

    // SSE, the client leaves.
    let gone = open_as(server.addr, "/sub/a", "gone").await;
    drop(gone);
    eventually("gone", || reasons(&log, "gone").len() == 1).await;

    // SSE, kicked: `event: kicked`, then a clean end.
    let mut kicked = open_as(server.addr, "/sub/a", "kicked").await;
    kicked.expect("join").await;
    eventually("kicked to be counted", || hub.stats().connections == 1).await;
    assert_eq!(hub.kick("kicked"), 1);
    assert_eq!(kicked.expect("kicked").await, json!({}));
    assert!(kicked.end().await);

    // In process, dropped.
    drop(
        hub.subscribe_as(user("inproc"), &["a"], None)
            .await
            .unwrap(),
    );

    // Long-poll: the lease runs out after the last poll.
    let mut p = send_raw(
        server.addr,
        "GET /poll/a HTTP/1.1\r\nHost: t\r\nX-User: poller\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(read_response(&mut p).await.status, 200);
    eventually("the poller's lease", || reasons(&log, "poller").len() == 1).await;

    // SSE, shutdown.
    let mut down = open_as(server.addr, "/sub/a", "down").await;
    down.expect("join").await;
    server.shutdown.trigger();
    while down.next_event().await.is_some() {}
    eventually("down", || reasons(&log, "down").len() == 1).await;
    server.stop().await;

    assert_eq!(reasons(&log, "refused"), []);
    assert_eq!(reasons(&log, "gone"), [Reason::ClientGone]);
    assert_eq!(reasons(&log, "kicked"), [Reason::Kicked]);
    assert_eq!(reasons(&log, "inproc"), [Reason::ClientGone]);
    assert_eq!(reasons(&log, "poller"), [Reason::ClientGone]);
    assert_eq!(reasons(&log, "down"), [Reason::Shutdown]);
    assert_eq!(*subscribed.lock().unwrap(), 6);
    assert_eq!(log.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn a_long_poll_session_ended_by_shutdown_reports_shutdown_once() {
    let (builder, log, _) = logged();
    let hub = builder.build();
    let server = serve(hub.service()).await;
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let mut p = send_raw(
            addr,
            "GET /poll/a HTTP/1.1\r\nHost: t\r\nX-User: poller\r\nConnection: close\r\n\r\n",
        )
        .await;
        read_response(&mut p).await.status
    });
    eventually("the poll to wait", || hub.stats().channels == 1).await;
    server.shutdown.trigger();
    assert_eq!(waiting.await.unwrap(), 503);
    eventually("the hook", || reasons(&log, "poller").len() == 1).await;
    assert_eq!(reasons(&log, "poller"), [Reason::Shutdown]);
    server.stop().await;
}
