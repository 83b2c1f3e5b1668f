//! The hub's auth: JWT (HS256) by bearer or cookie, 401 and 403, private
//! and user channels, publish rights per namespace.
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::hub::{Hub, Identity, JwtAuthorizer, Namespace, Publishers};
use support::sse::SseStream;
use support::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn hub() -> Hub {
    Hub::builder()
        .authorizer(JwtAuthorizer::hs256(SECRET))
        .namespace("members.", Namespace::new().anonymous(false))
        .namespace("open.", Namespace::new().publishers(Publishers::Anyone))
        .namespace("users.", Namespace::new().publishers(Publishers::Users))
        .no_limits()
        .build()
}

fn token(identity: Identity) -> String {
    JwtAuthorizer::hs256(SECRET)
        .sign(&identity, Duration::from_secs(600))
        .unwrap()
}

fn bearer(identity: Identity) -> String {
    format!("Authorization: Bearer {}\r\n", token(identity))
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let mut s = send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"),
    )
    .await;
    read_response(&mut s).await
}

/// The status of a subscribe (a stream's head, or a refusal).
async fn sub_status(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    SseStream::open_with(addr, path, extra).await.status
}

async fn publish(addr: SocketAddr, channel: &str, extra: &str) -> u16 {
    let mut s = send_raw(
        addr,
        &format!(
            "POST /pub/{channel} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}Content-Length: 2\r\n\r\nhi"
        ),
    )
    .await;
    read_response(&mut s).await.status
}

#[tokio::test]
async fn anonymous_clients_get_public_channels_and_401_for_the_rest() {
    let hub = hub();
    let server = serve(hub.service()).await;
    assert_eq!(sub_status(server.addr, "/sub/news", "").await, 200);
    assert_eq!(sub_status(server.addr, "/sub/private:x", "").await, 401);
    assert_eq!(sub_status(server.addr, "/sub/user:ann", "").await, 401);
    assert_eq!(
        sub_status(server.addr, "/sub/members.lounge", "").await,
        401
    );
    assert_eq!(
        get(server.addr, "/presence/private:x", "").await.status,
        401
    );
    let res = get(server.addr, "/sub?channel=news&channel=private:x", "").await;
    assert_eq!(res.status, 401);
    assert!(res.text().contains("private:x"));
    server.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_401_by_bearer_and_by_cookie() {
    let hub = hub();
    let server = serve(hub.service()).await;
    let forged = JwtAuthorizer::hs256(b"another secret, 32 bytes long!!!")
        .sign(&Identity::user("ann"), Duration::from_secs(60))
        .unwrap();
    for extra in [
        format!("Authorization: Bearer {forged}\r\n"),
        "Authorization: Bearer not.a.jwt\r\n".to_string(),
        format!("Cookie: hub_token={forged}\r\n"),
    ] {
        let res = get(server.addr, "/sub/news", &extra).await;
        assert_eq!(res.status, 401, "{extra}");
        assert!(res.text().contains("invalid"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_user_gets_their_own_channel_and_granted_private_ones_only() {
    let hub = hub();
    let server = serve(hub.service()).await;
    let ann = || Identity::user("ann").subscribe(["private:team-*"]);
    assert_eq!(
        sub_status(server.addr, "/sub/user:ann", &bearer(ann())).await,
        200
    );
    assert_eq!(
        sub_status(server.addr, "/sub/user:bob", &bearer(ann())).await,
        403
    );
    assert_eq!(
        sub_status(server.addr, "/sub/private:team-1", &bearer(ann())).await,
        200
    );
    assert_eq!(
        sub_status(server.addr, "/sub/private:other", &bearer(ann())).await,
        403
    );
    assert_eq!(
        sub_status(server.addr, "/sub/members.lounge", &bearer(ann())).await,
        200
    );
    let cookie = format!("Cookie: theme=dark; hub_token={}\r\n", token(ann()));
    assert_eq!(sub_status(server.addr, "/sub/user:ann", &cookie).await, 200);
    // A refused multiplexed subscribe subscribes to nothing.
    let res = get(
        server.addr,
        "/sub?channel=user:ann&channel=user:bob",
        &bearer(ann()),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(hub.stats().connections, 0);
    server.stop().await;
}

#[tokio::test]
async fn publish_user_reaches_only_that_users_channel() {
    let hub = hub();
    let server = serve(hub.service()).await;
    let mut ann =
        SseStream::open_with(server.addr, "/sub/user:ann", &bearer(Identity::user("ann"))).await;
    let sent = hub.publish_to_user("ann", "just for you").await.unwrap();
    assert_eq!(sent.subscribers, 1);
    assert_eq!(
        hub.publish_to_user("bob", "not ann's")
            .await
            .unwrap()
            .subscribers,
        0
    );
    assert_eq!(ann.next_event().await.unwrap().data, "just for you");
    server.stop().await;
}

#[tokio::test]
async fn publishing_needs_the_namespaces_right() {
    let hub = hub();
    let server = serve(hub.service()).await;
    // Authorized (the default): a publish grant.
    assert_eq!(publish(server.addr, "news", "").await, 401);
    assert_eq!(
        publish(server.addr, "news", &bearer(Identity::user("ann"))).await,
        403
    );
    let writer = Identity::user("ed").publish(["news", "private:*"]);
    assert_eq!(
        publish(server.addr, "news", &bearer(writer.clone())).await,
        202
    );
    assert_eq!(
        publish(server.addr, "private:x", &bearer(writer.clone())).await,
        202
    );
    assert_eq!(publish(server.addr, "other", &bearer(writer)).await, 403);
    // Users: anyone signed in.
    assert_eq!(publish(server.addr, "users.chat", "").await, 401);
    assert_eq!(
        publish(server.addr, "users.chat", &bearer(Identity::user("ann"))).await,
        202
    );
    // Anyone.
    assert_eq!(publish(server.addr, "open.chat", "").await, 202);
    assert_eq!(hub.stats().messages_in, 4);
    server.stop().await;
}
