//! Per-client limits (issue 9, item 3: one client could fill a global cap
//! for everyone). A client at its limit gets `429` with `Retry-After`, and
//! other clients are unaffected; a stream gives its slot back however it
//! ends.
//!
//! Clients are told apart by a layer that keys each request by its
//! `?client=` query (the service ignores the query), as an application keys
//! clients by an API key; one test checks the default key, the peer address.

use http::Request;
use hyper::body::Incoming;

use delayed_response::limit::{ClientKey, Rate};
use delayed_response::signal;
use serde_json::json;

use super::support::sse::SseStream;
use super::support::*;
use super::{get_status, peer, post_json, Peer, JSON};

/// Serves `signal` behind a layer that puts a [`ClientKey`] named by the
/// `?client=` query into each request's extensions.
async fn serve_keyed(signal: signal::Service) -> TestServer {
    serve(hyper::service::service_fn(
        move |mut req: Request<Incoming>| {
            let name = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("client="))
                .map(str::to_owned);
            if let Some(name) = name {
                req.extensions_mut().insert(ClientKey::new(name));
            }
            signal.respond(req)
        },
    ))
    .await
}

/// `client` creates a swarm.
async fn create_as(server: &TestServer, client: &str) -> Peer {
    let stream = SseStream::open(server.addr, &format!("/?client={client}")).await;
    peer(stream, 201).await
}

/// `client` joins `init`'s swarm; waits until the initiator has seen it.
async fn join_as(server: &TestServer, init: &mut Peer, client: &str) -> Peer {
    let path = format!("/{}?client={client}", init.id);
    let peer = peer(SseStream::open(server.addr, &path).await, 200).await;
    assert_eq!(init.stream.expect("join").await["cid"], peer.cid.as_str());
    peer
}

/// A `GET path` refused with `429`, `Retry-After: 5` and `reason`.
async fn assert_too_many(server: &TestServer, path: &str, reason: &str) {
    let res = get_status(server.addr, path, "").await;
    assert_eq!(res.status, 429, "{path}: {}", res.text());
    assert_eq!(res.header("retry-after"), Some("5"));
    assert_eq!(res.text(), reason);
}

const STREAMS: &str = "too many open streams from this client\n";
const SWARMS: &str = "too many open swarms from this client\n";

#[tokio::test]
async fn a_client_at_its_stream_cap_gets_429_while_another_client_still_joins() {
    let server = serve_keyed(signal::Service::builder().max_peers_per_client(2).build()).await;
    let mut init = create_as(&server, "a").await;
    let _a = join_as(&server, &mut init, "a").await;

    // Joining and creating both open a stream.
    assert_too_many(&server, &format!("/{}?client=a", init.id), STREAMS).await;
    assert_too_many(&server, "/?client=a", STREAMS).await;

    // Client b is not held back by a.
    let _b = join_as(&server, &mut init, "b").await;
    let _b_swarm = create_as(&server, "b").await;
    server.stop().await;
}

#[tokio::test]
async fn a_stream_slot_is_given_back_when_its_peer_leaves() {
    let server = serve_keyed(signal::Service::builder().max_peers_per_client(2).build()).await;
    let mut init = create_as(&server, "a").await;
    let a = join_as(&server, &mut init, "a").await;
    assert_too_many(&server, &format!("/{}?client=a", init.id), STREAMS).await;

    drop(a.stream);
    assert_eq!(init.stream.expect("leave").await["cid"], a.cid.as_str());
    let _again = join_as(&server, &mut init, "a").await;
    server.stop().await;
}

#[tokio::test]
async fn joiners_give_their_slots_back_when_the_initiator_closes_the_swarm() {
    let server = serve_keyed(signal::Service::builder().max_peers_per_client(1).build()).await;
    let mut init = create_as(&server, "b").await;
    let mut a = join_as(&server, &mut init, "a").await;
    assert_too_many(&server, "/?client=a", STREAMS).await;

    drop(init.stream);
    assert_eq!(a.stream.expect("close").await, json!({"id": init.id}));
    assert!(a.stream.end().await);
    let _again = create_as(&server, "a").await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_peer_holds_its_slot_until_its_connection_ends() {
    let signal = signal::Service::builder()
        .peer_queue_bytes(8 * 1024)
        .body_limit(64 * 1024)
        .max_peers_per_client(1)
        .build();
    let server = serve_keyed(signal).await;
    let mut init = create_as(&server, "i").await;
    let fast = join_as(&server, &mut init, "f").await;
    // The slow peer reads its head and `connect`, then not until told.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let path = format!("/{}?client=slow", init.id);
    let tcp = socket.connect(server.addr).await.unwrap();
    let slow = peer(SseStream::on(tcp, &path).await, 200).await;
    assert_eq!(init.stream.expect("join").await["cid"], slow.cid.as_str());

    let data = "x".repeat(32 * 1024);
    let mut sent = 0;
    loop {
        let body = json!({"token": fast.token, "cid": slow.cid, "data": data});
        let res = post_json(server.addr, &init.id, body).await;
        if res.status != 200 {
            assert_eq!(res.status, 404);
            break;
        }
        sent += 1;
        assert!(sent < 1000, "the slow peer was never disconnected");
    }
    assert_eq!(init.stream.expect("leave").await["cid"], slow.cid.as_str());
    // Out of the swarm, but its connection still holds the server's buffers.
    assert_too_many(&server, &path, STREAMS).await;

    // It reads what was queued; its stream then ends, cut.
    let mut slow_stream = slow.stream;
    while slow_stream.next_event().await.is_some() {}
    assert!(!slow_stream.end().await);
    let _again = join_as(&server, &mut init, "slow").await;
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_gives_every_slot_back() {
    let signal = signal::Service::builder()
        .max_peers_per_client(2)
        .max_swarms_per_client(1)
        .build();
    let server = serve_keyed(signal.clone()).await;
    let mut init = create_as(&server, "a").await;
    let mut a = join_as(&server, &mut init, "a").await;
    server.shutdown.trigger();
    while init.stream.next_event().await.is_some() {}
    while a.stream.next_event().await.is_some() {}
    server.stop().await;

    // The same service behind a new server: client a starts afresh.
    let server = serve_keyed(signal).await;
    let mut init = create_as(&server, "a").await;
    let _a = join_as(&server, &mut init, "a").await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_at_its_swarm_cap_gets_429_while_another_client_still_creates() {
    let server = serve_keyed(signal::Service::builder().max_swarms_per_client(1).build()).await;
    let mut mine = create_as(&server, "a").await;
    let mut watcher = join_as(&server, &mut mine, "b").await;
    assert_too_many(&server, "/?client=a", SWARMS).await;

    // Client a may still join, and client b still creates.
    let mut theirs = create_as(&server, "b").await;
    let _a = join_as(&server, &mut theirs, "a").await;

    // The swarm's slot is back once it closes.
    drop(mine.stream);
    assert_eq!(watcher.stream.expect("close").await, json!({"id": mine.id}));
    assert!(watcher.stream.end().await);
    let _again = create_as(&server, "a").await;
    server.stop().await;
}

#[tokio::test]
async fn without_an_application_key_a_client_is_its_peer_address() {
    // `server::serve` puts the peer address in every request's extensions.
    let server = serve(signal::Service::builder().max_peers_per_client(1).build()).await;
    let _init = create_as(&server, "ignored").await;
    let res = get_status(server.addr, "/", "").await;
    assert_eq!(res.status, 429);
    assert_eq!(res.text(), STREAMS);
    server.stop().await;
}

#[tokio::test]
async fn signal_rate_per_client_refuses_posts_past_the_burst_with_429() {
    // Practically no refill within the test: 2 POSTs, then 429.
    let signal = signal::Service::builder()
        .signal_rate_per_client(Rate::per_second(0.001).burst(2))
        .build();
    let server = serve_keyed(signal).await;
    let mut init = create_as(&server, "a").await;
    let body = json!({"token": init.token, "data": "hi"}).to_string();
    let mine = format!("/{}?client=a", init.id);
    for _ in 0..2 {
        assert_eq!(post(server.addr, &mine, JSON, &body).await.status, 200);
        assert_eq!(init.stream.expect("signal").await["data"], "hi");
    }
    let res = post(server.addr, &mine, JSON, &body).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.text(), "too many signals from this client; slow down\n");
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 900, "Retry-After: {retry}");

    // Another client still signals.
    let theirs = format!("/{}?client=b", init.id);
    assert_eq!(post(server.addr, &theirs, JSON, &body).await.status, 200);
    assert_eq!(init.stream.expect("signal").await["data"], "hi");
    server.stop().await;
}
