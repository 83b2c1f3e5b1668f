//! The signal service over real sockets: koa-signal's six test cases, the
//! added cases from the behaviour spec, abort cases, and a regression test
//! for each koa-signal fault we fixed. Per-client limits are in
//! `signal/limits.rs`.
mod support;

#[path = "signal/limits.rs"]
mod limits;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use delayed_response::signal;
use serde_json::{json, Value};
use support::sse::SseStream;
use support::*;

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_string()
}

fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// A peer: its stream and what its `connect` event said.
struct Peer {
    stream: SseStream,
    id: String,
    cid: String,
    token: String,
}

/// The peer of an opened stream, once its `connect` event has come.
async fn peer(mut stream: SseStream, status: u16) -> Peer {
    assert_eq!(stream.status, status);
    let connect = stream.expect("connect").await;
    Peer {
        stream,
        id: s(&connect, "id"),
        cid: s(&connect, "cid"),
        token: s(&connect, "token"),
    }
}

async fn create(addr: SocketAddr) -> Peer {
    peer(SseStream::open(addr, "/").await, 201).await
}

async fn join(addr: SocketAddr, id: &str) -> Peer {
    let mut stream = SseStream::open(addr, &format!("/{id}")).await;
    assert_eq!(stream.status, 200);
    // A joiner's stream has the same headers as the initiator's.
    assert_eq!(
        stream.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    let connect = stream.expect("connect").await;
    assert_eq!(s(&connect, "id"), id);
    Peer {
        stream,
        id: id.to_string(),
        cid: s(&connect, "cid"),
        token: s(&connect, "token"),
    }
}

/// Joins `init`'s swarm and waits until the initiator has seen the `join`.
async fn joined(addr: SocketAddr, init: &mut Peer) -> Peer {
    let peer = join(addr, &init.id).await;
    assert_eq!(init.stream.expect("join").await["cid"], peer.cid.as_str());
    peer
}

async fn post_json(addr: SocketAddr, id: &str, body: Value) -> RawResponse {
    post(addr, &format!("/{id}"), JSON, &body.to_string()).await
}

async fn get_status(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let mut stream = send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n"),
    )
    .await;
    read_response(&mut stream).await
}

// ---- koa-signal's own test cases ----

#[tokio::test]
async fn create_answers_201_with_connect_and_the_swarm_ends_with_its_initiator() {
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let peer = create(server.addr).await;
    assert_eq!(
        peer.stream.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(peer.stream.header("cache-control"), Some("no-cache"));
    // nginx would otherwise buffer the events.
    assert_eq!(peer.stream.header("x-accel-buffering"), Some("no"));
    // HTTP/2-safe: no connection-specific headers.
    assert_eq!(peer.stream.header("connection"), None);
    assert!(is_id(&peer.id) && is_id(&peer.cid) && is_id(&peer.token));
    assert_eq!(signal.swarm_count(), 1);
    assert_eq!(signal.peer_count(&peer.id), Some(1));

    drop(peer.stream);
    eventually("the swarm to close", || signal.swarm_count() == 0).await;
    let res = get_status(server.addr, &format!("/{}", peer.id), "").await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn joiners_get_connect_and_the_initiator_gets_join_and_leave() {
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let mut init = create(server.addr).await;
    let j1 = join(server.addr, &init.id).await;
    let j2 = join(server.addr, &init.id).await;
    assert_ne!(j1.cid, j2.cid);
    assert_ne!(j1.token, j2.token);
    assert_ne!(j1.cid, init.cid);
    assert_eq!(
        init.stream.expect("join").await,
        json!({"id": init.id, "cid": j1.cid})
    );
    assert_eq!(
        init.stream.expect("join").await,
        json!({"id": init.id, "cid": j2.cid})
    );
    assert_eq!(signal.peer_count(&init.id), Some(3));

    drop(j1.stream);
    assert_eq!(
        init.stream.expect("leave").await,
        json!({"id": init.id, "cid": j1.cid})
    );
    assert_eq!(signal.peer_count(&init.id), Some(2));
    drop(j2.stream);
    assert_eq!(
        init.stream.expect("leave").await,
        json!({"id": init.id, "cid": j2.cid})
    );
    assert_eq!(signal.peer_count(&init.id), Some(1));

    drop(init.stream);
    eventually("the swarm to close", || signal.swarm_count() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn when_the_initiator_leaves_every_joiner_stream_ends_cleanly() {
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let mut init = create(server.addr).await;
    let mut joiners = Vec::new();
    for _ in 0..10 {
        joiners.push(join(server.addr, &init.id).await);
    }
    for j in &joiners {
        assert_eq!(init.stream.expect("join").await["cid"], j.cid.as_str());
    }
    drop(init.stream);
    for j in &mut joiners {
        assert_eq!(j.stream.expect("close").await, json!({"id": init.id}));
        assert!(j.stream.end().await, "a joiner's stream was cut, not ended");
    }
    // The swarm left the registry before the streams were ended.
    assert_eq!(signal.swarm_count(), 0);
    assert_eq!(signal.peer_count(&init.id), None);
    let res = post_json(
        server.addr,
        &init.id,
        json!({"token": joiners[0].token, "data": 1}),
    )
    .await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn post_statuses_follow_koa_signal() {
    let server = serve(signal::Service::new()).await;
    let addr = server.addr;
    let init = create(addr).await;
    let id = &init.id;

    assert_eq!(post(addr, "/", FORM, "").await.status, 404);
    assert_eq!(post(addr, "/555", FORM, "").await.status, 404);
    let wrong = "0".repeat(32);
    let res = post(
        addr,
        &format!("/{id}"),
        FORM,
        &format!("token={wrong}&data=1"),
    )
    .await;
    assert_eq!(res.status, 401);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let res = post(
        addr,
        &format!("/{id}"),
        FORM,
        &format!("token={}", init.token),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.text(), "no data\n");
    let big = format!("token={}&data={}", init.token, "x".repeat(15000));
    assert_eq!(post(addr, &format!("/{id}"), FORM, &big).await.status, 413);
    let res = post(
        addr,
        &format!("/{id}"),
        FORM,
        &format!("token={}&data=1&cid={}", init.token, "1".repeat(32)),
    )
    .await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn form_broadcast_reaches_every_peer_and_a_direct_signal_only_its_target() {
    let server = serve(signal::Service::new()).await;
    let addr = server.addr;
    let mut init = create(addr).await;
    let mut a = joined(addr, &mut init).await;
    let mut b = joined(addr, &mut init).await;

    let res = post(
        addr,
        &format!("/{}", init.id),
        FORM,
        &format!("token={}&data[x]=555", init.token),
    )
    .await;
    assert_eq!((res.status, res.text().as_str()), (200, "OK"));
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let from = init.cid.clone();
    for peer in [&mut init, &mut a, &mut b] {
        // The sender gets its own broadcast, as in koa-signal.
        let signal = peer.stream.expect("signal").await;
        assert_eq!(signal, json!({"from": from, "data": {"x": "555"}}));
    }

    // Any member may send, to one peer.
    let res = post(
        addr,
        &format!("/{}", init.id),
        FORM,
        &format!("token={}&cid={}&data=777", a.token, b.cid),
    )
    .await;
    assert_eq!(res.status, 200);
    let signal = b.stream.expect("signal").await;
    assert_eq!(signal, json!({"from": a.cid, "data": "777"}));
    // Nobody else got it: the next thing the others see is a later broadcast.
    post_json(addr, &init.id, json!({"token": init.token, "data": "next"})).await;
    for peer in [&mut init, &mut a] {
        assert_eq!(peer.stream.expect("signal").await["data"], "next");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_direct_signal_to_a_peer_that_left_is_404() {
    let server = serve(signal::Service::new()).await;
    let mut init = create(server.addr).await;
    let a = joined(server.addr, &mut init).await;
    drop(a.stream);
    init.stream.expect("leave").await;
    let res = post_json(
        server.addr,
        &init.id,
        json!({"token": init.token, "data": 1, "cid": a.cid}),
    )
    .await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

// ---- added cases from the behaviour spec ----

#[tokio::test]
async fn accept_header_refuses_only_when_it_excludes_event_streams() {
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let res = get_status(server.addr, "/", "Accept: application/json\r\n").await;
    assert_eq!(res.status, 406);
    assert_eq!(signal.swarm_count(), 0);
    // No Accept at all, or */*, is fine.
    let res_stream = get(server.addr, "/").await;
    let mut raw = Vec::new();
    let mut res_stream = res_stream;
    read_until(&mut res_stream, &mut raw, b"event: connect").await;
    assert!(raw.starts_with(b"HTTP/1.1 201"));
    let mut star = send_raw(
        server.addr,
        "GET / HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
    )
    .await;
    let mut raw = Vec::new();
    read_until(&mut star, &mut raw, b"event: connect").await;
    assert!(raw.starts_with(b"HTTP/1.1 201"));
    server.stop().await;
}

#[tokio::test]
async fn post_body_errors() {
    let server = serve(signal::Service::new()).await;
    let addr = server.addr;
    let init = create(addr).await;
    let path = format!("/{}", init.id);
    // A JSON scalar at the top level.
    assert_eq!(post(addr, &path, JSON, "5").await.status, 400);
    assert_eq!(post(addr, &path, JSON, "{bad").await.status, 400);
    // No Content-Type, or one we do not parse.
    assert_eq!(post(addr, &path, None, "{}").await.status, 415);
    assert_eq!(post(addr, &path, Some("text/plain"), "x").await.status, 415);
    // An empty JSON body is `{}`: no token.
    assert_eq!(post(addr, &path, JSON, "").await.status, 401);
    // A JSON array parses, but has no token.
    assert_eq!(post(addr, &path, JSON, "[1]").await.status, 401);
    // Content types match case-insensitively.
    let body = json!({"token": init.token, "data": 1}).to_string();
    let res = post(addr, &path, Some("Application/JSON; charset=UTF-8"), &body).await;
    assert_eq!(res.status, 200);
    // A cid that is not a string.
    let body = json!({"token": init.token, "data": 1, "cid": 7}).to_string();
    assert_eq!(post(addr, &path, JSON, &body).await.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn fix_falsy_but_present_data_is_delivered() {
    // koa-signal bug: `data` of 0, false or "" was "no data" (400).
    let server = serve(signal::Service::new()).await;
    let mut init = create(server.addr).await;
    for data in [json!(0), json!(false), json!("")] {
        let res = post_json(
            server.addr,
            &init.id,
            json!({"token": init.token, "data": data}),
        )
        .await;
        assert_eq!(res.status, 200);
        assert_eq!(init.stream.expect("signal").await["data"], data);
    }
    let res = post_json(
        server.addr,
        &init.id,
        json!({"token": init.token, "data": null}),
    )
    .await;
    assert_eq!(res.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn fix_prototype_keys_are_unknown_ids_not_server_errors() {
    // koa-signal bug: cids were looked up on a plain object, so
    // `cid=toString` answered 500.
    let server = serve(signal::Service::new()).await;
    let init = create(server.addr).await;
    for cid in ["toString", "constructor", "__proto__"] {
        let res = post(
            server.addr,
            &format!("/{}", init.id),
            FORM,
            &format!("token={}&data=1&cid={cid}", init.token),
        )
        .await;
        assert_eq!(res.status, 404, "cid={cid}");
    }
    assert_eq!(
        get_status(server.addr, "/constructor", "").await.status,
        404
    );
    assert_eq!(
        post(server.addr, "/constructor", FORM, "token=x&data=1")
            .await
            .status,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn fix_a_left_peers_token_is_revoked() {
    let server = serve(signal::Service::new()).await;
    let mut init = create(server.addr).await;
    let a = joined(server.addr, &mut init).await;
    drop(a.stream);
    init.stream.expect("leave").await;
    let res = post_json(server.addr, &init.id, json!({"token": a.token, "data": 1})).await;
    assert_eq!(res.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn fix_a_token_is_bound_to_its_peer_and_swarm() {
    // koa-signal bug: any token of the swarm worked and the signal did not
    // say who sent it; here the signal carries the sender's cid, and a token
    // of another swarm is refused.
    let server = serve(signal::Service::new()).await;
    let mut one = create(server.addr).await;
    let two = create(server.addr).await;
    let mut a = joined(server.addr, &mut one).await;
    let res = post_json(server.addr, &one.id, json!({"token": two.token, "data": 1})).await;
    assert_eq!(res.status, 401);
    let res = post_json(server.addr, &one.id, json!({"token": a.token, "data": 2})).await;
    assert_eq!(res.status, 200);
    let from = a.cid.clone();
    for peer in [&mut one, &mut a] {
        assert_eq!(
            peer.stream.expect("signal").await,
            json!({"from": from, "data": 2})
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn envelope_off_sends_exactly_the_posted_data() {
    let server = serve(signal::Service::builder().envelope(false).build()).await;
    let mut init = create(server.addr).await;
    let res = post_json(
        server.addr,
        &init.id,
        json!({"token": init.token, "data": {"boom": "boom"}}),
    )
    .await;
    assert_eq!(res.status, 200);
    let event = init.stream.next_event().await.unwrap();
    assert_eq!(event.event, "signal");
    assert_eq!(event.data, r#"{"boom":"boom"}"#);
    server.stop().await;
}

#[tokio::test]
async fn echo_off_keeps_a_broadcast_from_its_sender() {
    let server = serve(signal::Service::builder().echo(false).build()).await;
    let mut init = create(server.addr).await;
    let mut a = joined(server.addr, &mut init).await;
    post_json(
        server.addr,
        &init.id,
        json!({"token": a.token, "data": "x"}),
    )
    .await;
    assert_eq!(init.stream.expect("signal").await["data"], "x");
    // `a` sees the next broadcast (from the initiator), not its own.
    post_json(
        server.addr,
        &init.id,
        json!({"token": init.token, "data": "y"}),
    )
    .await;
    assert_eq!(a.stream.expect("signal").await["data"], "y");
    server.stop().await;
}

// ---- koa-signal faults fixed ----

#[tokio::test]
async fn fix_idle_streams_get_keep_alive_comments() {
    // koa-signal sent nothing while idle, so proxies closed its streams.
    let server = serve(
        signal::Service::builder()
            .keep_alive(Duration::from_millis(30))
            .build(),
    )
    .await;
    let mut init = create(server.addr).await;
    init.stream.comments_until(3).await;
    server.stop().await;
}

#[tokio::test]
async fn fix_methods_other_than_get_and_post_are_405_and_open_nothing() {
    // koa-signal opened a swarm for every method but POST (`OPTIONS /` → 201).
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    for method in ["OPTIONS", "PUT", "DELETE", "HEAD", "PATCH"] {
        let mut stream = send_raw(
            server.addr,
            &format!("{method} / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let mut raw = Vec::new();
        read_until(&mut stream, &mut raw, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 405"), "{method}: {head}");
        assert!(head.contains("allow: get, post"), "{method}: {head}");
    }
    assert_eq!(signal.swarm_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn fix_stray_paths_are_404_not_new_swarms() {
    // koa-signal created a swarm for any path that was not an id.
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    for path in ["/foo/bar", "/ABC", "/a-b", "/x/", "/favicon.ico"] {
        let res = get_status(server.addr, path, "").await;
        assert_eq!(res.status, 404, "{path}");
    }
    // Lowercase alphanumerics that are no id of ours: no such swarm.
    assert_eq!(get_status(server.addr, "/555", "").await.status, 404);
    assert_eq!(signal.swarm_count(), 0);
    // Leading slashes collapse, as in koa-signal.
    let init = create(server.addr).await;
    let mut again = SseStream::open(server.addr, &format!("//{}", init.id)).await;
    assert_eq!(again.status, 200);
    again.expect("connect").await;
    server.stop().await;
}

#[tokio::test]
async fn fix_swarm_ids_are_forgotten_when_swarms_end() {
    // koa-signal's id generator remembered every id it ever issued.
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    for _ in 0..20 {
        let init = create(server.addr).await;
        drop(init.stream);
        // One at a time: one client may hold only 16 swarms at once.
        eventually("the swarm to close", || signal.swarm_count() == 0).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn fix_a_slow_peer_is_disconnected_and_never_stalls_the_swarm() {
    // koa-signal piped one stream to every peer: one slow reader paused the
    // swarm, and POSTs buffered without bound.
    let signal = signal::Service::builder()
        .peer_queue_bytes(8 * 1024)
        .body_limit(64 * 1024)
        .build();
    let server = serve(signal.clone()).await;
    let addr = server.addr;
    let mut init = create(addr).await;
    let mut fast = joined(addr, &mut init).await;
    // The slow peer reads its head and `connect`, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = SseStream::on(
        socket.connect(addr).await.unwrap(),
        &format!("/{}", init.id),
    )
    .await;
    let slow_cid = s(&slow.expect("connect").await, "cid");
    assert_eq!(init.stream.expect("join").await["cid"], slow_cid.as_str());

    let data = "x".repeat(32 * 1024);
    let mut sent = 0;
    let status = loop {
        let res = post_json(
            addr,
            &init.id,
            json!({"token": fast.token, "cid": slow_cid, "data": data}),
        )
        .await;
        if res.status != 200 {
            break res.status;
        }
        sent += 1;
        // Bounded: the kernel buffers hold a few MiB at most.
        assert!(sent < 1000, "the slow peer was never disconnected");
    };
    assert_eq!(status, 404);
    assert_eq!(
        init.stream.expect("leave").await,
        json!({"id": init.id, "cid": slow_cid})
    );
    assert_eq!(signal.peer_count(&init.id), Some(2));
    // The others still get every signal.
    let res = post_json(addr, &init.id, json!({"token": init.token, "data": "on"})).await;
    assert_eq!(res.status, 200);
    assert_eq!(fast.stream.expect("signal").await["data"], "on");
    assert_eq!(init.stream.expect("signal").await["data"], "on");
    drop(slow);
    server.stop().await;
}

#[tokio::test]
async fn max_peers_refuses_one_more_join_with_503() {
    let server = serve(signal::Service::builder().max_peers(2).build()).await;
    let init = create(server.addr).await;
    let _a = join(server.addr, &init.id).await;
    let res = get_status(server.addr, &format!("/{}", init.id), "").await;
    assert_eq!(res.status, 503);
    assert_eq!(res.text(), "swarm is full\n");
    server.stop().await;
}

#[tokio::test]
async fn max_swarms_refuses_one_more_swarm_until_one_ends() {
    let signal = signal::Service::builder().max_swarms(1).build();
    let server = serve(signal.clone()).await;
    let init = create(server.addr).await;
    assert_eq!(get_status(server.addr, "/", "").await.status, 503);
    drop(init.stream);
    eventually("the swarm to close", || signal.swarm_count() == 0).await;
    let again = create(server.addr).await;
    drop(again);
    server.stop().await;
}

// ---- aborts ----

#[tokio::test]
async fn a_peer_that_vanishes_produces_leave_within_a_keep_alive_interval() {
    let keep_alive = Duration::from_millis(500);
    let server = serve(signal::Service::builder().keep_alive(keep_alive).build()).await;
    let mut init = create(server.addr).await;
    let closed = joined(server.addr, &mut init).await;
    let reset = joined(server.addr, &mut init).await;

    // A clean close (FIN).
    let t0 = Instant::now();
    drop(closed.stream);
    assert_eq!(
        init.stream.expect("leave").await["cid"],
        closed.cid.as_str()
    );
    assert!(t0.elapsed() < keep_alive * 2, "{:?}", t0.elapsed());

    // A reset (RST).
    let socket = reset.stream.into_inner();
    #[allow(deprecated)]
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    let t0 = Instant::now();
    drop(socket);
    assert_eq!(init.stream.expect("leave").await["cid"], reset.cid.as_str());
    assert!(t0.elapsed() < keep_alive * 2, "{:?}", t0.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn a_half_closed_peer_counts_as_gone() {
    // hyper treats a read EOF mid-response as the client leaving (the
    // default `half_close(false)`).
    let server = serve(signal::Service::new()).await;
    let mut init = create(server.addr).await;
    let a = joined(server.addr, &mut init).await;
    let mut socket = a.stream.into_inner();
    tokio::io::AsyncWriteExt::shutdown(&mut socket)
        .await
        .unwrap();
    assert_eq!(init.stream.expect("leave").await["cid"], a.cid.as_str());
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_ends_streams_and_forgets_swarms() {
    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let mut init = create(server.addr).await;
    let mut a = joined(server.addr, &mut init).await;
    server.shutdown.trigger();
    // Ended by the shutdown (abnormally, so an EventSource reconnects).
    // (The joiner may see `close` first: the initiator's end closes the swarm.)
    while init.stream.next_event().await.is_some() {}
    while a.stream.next_event().await.is_some() {}
    eventually("the swarm to close", || signal.swarm_count() == 0).await;
    server.stop().await;
}

// ---- tower ----

#[tokio::test]
async fn works_under_axum_nest_service() {
    let signal = signal::Service::new();
    let app = axum::Router::new().nest_service("/signal", signal.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut init = SseStream::open(addr, "/signal/").await;
    assert_eq!(init.status, 201);
    let connect = init.expect("connect").await;
    let (id, token) = (s(&connect, "id"), s(&connect, "token"));
    let mut a = SseStream::open(addr, &format!("/signal/{id}")).await;
    assert_eq!(a.status, 200);
    a.expect("connect").await;
    init.expect("join").await;
    let res = post(
        addr,
        &format!("/signal/{id}"),
        JSON,
        &json!({"token": token, "data": "hi"}).to_string(),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(a.expect("signal").await["data"], "hi");
    task.abort();
}

// ---- HTTP/2 ----

/// Reads data frames from an HTTP/2 event stream until `needle` has arrived.
async fn h2_read_until(body: &mut hyper::body::Incoming, buf: &mut String, needle: &str) {
    use http_body_util::BodyExt;
    within(needle, async {
        while !buf.contains(needle) {
            let frame = body.frame().await.expect("stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    })
    .await
}

#[tokio::test]
async fn works_over_http2_and_an_rst_stream_is_a_leave() {
    use http_body_util::{BodyExt, Empty, Full};

    let signal = signal::Service::new();
    let server = serve(signal.clone()).await;
    let mut send = h2_connect(server.addr).await;
    let get = |path: String| {
        http::Request::get(format!("http://test{path}"))
            .body(Empty::<bytes::Bytes>::new().boxed())
            .unwrap()
    };

    let res = send.send_request(get("/".into())).await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("connection").is_none());
    let mut init = res.into_body();
    let mut init_buf = String::new();
    h2_read_until(&mut init, &mut init_buf, "}\n\n").await;
    let connect: Value = serde_json::from_str(
        init_buf
            .split("data: ")
            .nth(1)
            .unwrap()
            .trim_end_matches('\n'),
    )
    .unwrap();
    let (id, token) = (s(&connect, "id"), s(&connect, "token"));

    let res = send.send_request(get(format!("/{id}"))).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut joiner = res.into_body();
    let mut joiner_buf = String::new();
    h2_read_until(&mut joiner, &mut joiner_buf, "event: connect").await;
    h2_read_until(&mut init, &mut init_buf, "event: join").await;

    let post = http::Request::post(format!("http://test/{id}"))
        .header("content-type", "application/json")
        .body(
            Full::new(bytes::Bytes::from(
                json!({"token": token, "data": "over h2"}).to_string(),
            ))
            .boxed(),
        )
        .unwrap();
    let res = send.send_request(post).await.unwrap();
    assert_eq!(res.status(), 200);
    h2_read_until(&mut joiner, &mut joiner_buf, "\"over h2\"").await;

    // Dropping the initiator's body resets its stream: the swarm ends, and
    // the joiner's stream ends cleanly.
    drop(init);
    let end = within("the joiner's stream to end", async {
        loop {
            match joiner.frame().await {
                None => break true,
                Some(Err(_)) => break false,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        joiner_buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    })
    .await;
    assert!(end, "the joiner's stream was reset, not ended");
    assert!(joiner_buf.ends_with(&format!("event: close\ndata: {{\"id\":\"{id}\"}}\n\n")));
    assert_eq!(signal.swarm_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    // No Content-Length to check first: the limit applies while reading.
    let server = serve(signal::Service::builder().body_limit(100).build()).await;
    let init = create(server.addr).await;
    let body = format!(
        r#"{{"token":"{}","data":"{}"}}"#,
        init.token,
        "x".repeat(200)
    );
    let mut stream = send_raw(
        server.addr,
        &format!(
            "POST /{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            init.id,
            body.len()
        ),
    )
    .await;
    let res = read_response(&mut stream).await;
    assert_eq!(res.status, 413);
    assert_eq!(res.text(), "the body is over the limit\n");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_initiator_is_disconnected_and_its_swarm_ends() {
    let signal = signal::Service::builder()
        .peer_queue_bytes(8 * 1024)
        .body_limit(64 * 1024)
        .build();
    let server = serve(signal.clone()).await;
    let addr = server.addr;
    // The initiator reads its head and `connect`, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut init = SseStream::on(socket.connect(addr).await.unwrap(), "/").await;
    let id = s(&init.expect("connect").await, "id");
    let mut a = join(addr, &id).await;

    let data = "x".repeat(32 * 1024);
    let mut sent = 0;
    loop {
        let res = post_json(addr, &id, json!({"token": a.token, "data": data})).await;
        if res.status != 200 {
            // The swarm is gone: the slow initiator took it with it.
            assert_eq!(res.status, 404);
            break;
        }
        assert_eq!(a.stream.expect("signal").await["data"], data.as_str());
        sent += 1;
        assert!(sent < 1000, "the slow initiator was never disconnected");
    }
    assert_eq!(a.stream.expect("close").await, json!({"id": id}));
    assert!(a.stream.end().await);
    assert_eq!(signal.swarm_count(), 0);
    drop(init);
    server.stop().await;
}

#[tokio::test]
async fn allow_origin_adds_cors_headers_and_answers_preflights() {
    let signal = signal::Service::builder()
        .allow_origin(http::HeaderValue::from_static("https://app.example"))
        .build();
    let server = serve(signal.clone()).await;
    let mut stream = send_raw(
        server.addr,
        "OPTIONS /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    )
    .await;
    let res = read_response(&mut stream).await;
    assert_eq!(res.status, 204);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        res.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(res.header("vary"), Some("origin"));
    assert_eq!(signal.swarm_count(), 0);

    let init = create(server.addr).await;
    assert_eq!(
        init.stream.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let res = post_json(
        server.addr,
        &init.id,
        json!({"token": init.token, "data": 1}),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let res = post_json(server.addr, "555", json!({})).await;
    assert_eq!(res.status, 404);
    assert!(res.header("access-control-allow-origin").is_some());
    server.stop().await;
}

/// Regression (found by the `sse_roundtrip` fuzz target): `data` was
/// parsed into serde_json values and written again, and serde_json's
/// float parsing is not correctly rounded: `1.0000000000000005e20` reached
/// the peers as `1.0000000000000003e+20`, a long integer as a rounded
/// float. `data` goes out as it was sent, token for token.
#[tokio::test]
async fn fix_signalled_numbers_arrive_as_they_were_sent() {
    let server = serve(signal::Service::new()).await;
    let mut init = create(server.addr).await;
    let data = r#"{"f": 1.0000000000000005e20, "big": 123456789012345678901234567890, "x": 1.50}"#;
    let body = format!(r#"{{"token": "{}", "data": {data}}}"#, init.token);
    let res = post(server.addr, &format!("/{}", init.id), JSON, &body).await;
    assert_eq!(res.status, 200);
    let event = init.stream.next_event().await.unwrap();
    assert_eq!(event.event, "signal");
    assert_eq!(
        event.data,
        format!(
            r#"{{"from":"{}","data":{{"f":1.0000000000000005e20,"big":123456789012345678901234567890,"x":1.50}}}}"#,
            init.cid
        )
    );
    server.stop().await;
}
