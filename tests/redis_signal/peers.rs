//! Peers of a swarm over real sockets, for the cross-instance tests.

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::support::sse::SseStream;
use super::support::{post, read_response, send_raw, RawResponse};

// The SSE and HTTP helpers' futures hold read buffers: boxed here, so that a
// long test's future stays small (a debug build gives every await its own
// slot, and the test thread's stack is 2 MiB).

pub(crate) async fn expect(stream: &mut SseStream, name: &str) -> Value {
    Box::pin(stream.expect(name)).await
}

pub(crate) async fn end(stream: &mut SseStream) -> bool {
    Box::pin(stream.end()).await
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_string()
}

/// A peer: its stream and what its `connect` event said.
pub(crate) struct Peer {
    pub(crate) stream: SseStream,
    pub(crate) id: String,
    pub(crate) cid: String,
    pub(crate) token: String,
}

pub(crate) async fn open(addr: SocketAddr, path: &str, status: u16) -> Peer {
    let mut stream = Box::pin(SseStream::open(addr, path)).await;
    assert_eq!(stream.status, status, "GET {path}");
    let connect = expect(&mut stream, "connect").await;
    Peer {
        stream,
        id: s(&connect, "id"),
        cid: s(&connect, "cid"),
        token: s(&connect, "token"),
    }
}

pub(crate) async fn create(addr: SocketAddr) -> Peer {
    open(addr, "/", 201).await
}

pub(crate) async fn join(addr: SocketAddr, id: &str) -> Peer {
    let peer = open(addr, &format!("/{id}"), 200).await;
    assert_eq!(peer.id, id);
    peer
}

/// Joins `init`'s swarm on `addr` and waits until the initiator saw it.
pub(crate) async fn joined(addr: SocketAddr, init: &mut Peer) -> Peer {
    let peer = join(addr, &init.id).await;
    assert_eq!(
        expect(&mut init.stream, "join").await["cid"],
        peer.cid.as_str()
    );
    peer
}

pub(crate) async fn post_json(addr: SocketAddr, id: &str, body: Value) -> RawResponse {
    Box::pin(post(
        addr,
        &format!("/{id}"),
        Some("application/json"),
        &body.to_string(),
    ))
    .await
}

/// POSTs a signal and checks it was sent.
pub(crate) async fn send(addr: SocketAddr, from: &Peer, to: Option<&Peer>, data: Value) {
    let mut body = json!({"token": from.token, "data": data});
    if let Some(to) = to {
        body["cid"] = json!(to.cid);
    }
    let res = post_json(addr, &from.id, body).await;
    assert_eq!(res.status, 200, "{}", res.text());
}

/// The next event must be a signal from cid `from` with `data`.
pub(crate) async fn got(peer: &mut Peer, from: &str, data: Value) {
    assert_eq!(
        expect(&mut peer.stream, "signal").await,
        json!({"from": from, "data": data})
    );
}

pub(crate) async fn get_status(addr: SocketAddr, path: &str) -> RawResponse {
    let mut stream = send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    Box::pin(read_response(&mut stream)).await
}
