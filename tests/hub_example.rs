//! `examples/hub_server` as the built binary: the page, a login, a stream
//! and a publish. Run alone (`--test hub_example`), cargo does not rebuild
//! the example: build it first (`cargo build --all-features --examples`).
mod support;

use support::example::*;
use support::sse::SseStream;
use support::*;

async fn start(args: &[&str]) -> Example {
    listen(example("hub_server").args(args), "http").await
}

#[tokio::test]
async fn hub_server_serves_the_page_logs_in_and_chats() {
    let Example {
        addr,
        child: _child,
    } = start(&[
        "--secret",
        "0123456789abcdef0123456789abcdef",
        "--http1-only",
    ])
    .await;
    let mut s = get(addr, "/").await;
    let page = read_response(&mut s).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("EventSource"));

    let res = post(
        addr,
        "/login",
        Some("application/json"),
        r#"{"name":"ann"}"#,
    )
    .await;
    assert_eq!(res.status, 200);
    let cookie = res
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("hub_token="));
    assert_eq!(
        post(addr, "/login", None, r#"{"name":"a b"}"#).await.status,
        400
    );

    let mut ann = SseStream::open_with(
        addr,
        "/hub/sub/chat.lobby",
        &format!("Cookie: {cookie}\r\n"),
    )
    .await;
    assert_eq!(ann.status, 200);
    assert_eq!(ann.expect("join").await["user"], "ann");
    // Anonymous posts to a room are refused; signed-in ones go through.
    assert_eq!(
        post(addr, "/hub/pub/chat.lobby", None, "x").await.status,
        401
    );
    let mut s = send_raw(
        addr,
        &format!(
            "POST /hub/pub/chat.lobby HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Length: 5\r\n\r\nhello"
        ),
    )
    .await;
    assert_eq!(read_response(&mut s).await.status, 201);
    assert_eq!(ann.next_event().await.unwrap().data, "hello");
}

#[tokio::test]
async fn hub_server_open_publish_lets_anyone_publish_to_public_channels() {
    let Example {
        addr,
        child: _child,
    } = start(&["--open-publish", "--history", "5"]).await;
    let mut sub = SseStream::open(addr, "/hub/sub/news").await;
    let res = post(addr, "/hub/pub/news", None, "hi").await;
    assert_eq!(res.status, 201);
    assert_eq!(sub.next_event().await.unwrap().data, "hi");
    assert_eq!(
        post(addr, "/hub/pub/private:x", None, "no").await.status,
        401
    );
}
