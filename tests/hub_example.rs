//! `examples/hub_server` as the built binary: the page, a login, a stream
//! and a publish. Run alone (`--test hub_example`), cargo does not rebuild
//! the example: build it first (`cargo build --all-features --examples`).
mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use support::sse::SseStream;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn start(args: &[&str]) -> (Child, SocketAddr) {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join("hub_server");
    assert!(path.exists(), "{} is not built", path.display());
    let mut child = Command::new(path)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the example to listen", lines.next_line())
        .await
        .unwrap()
        .expect("the example printed nothing");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test]
async fn hub_server_serves_the_page_logs_in_and_chats() {
    let (_child, addr) = start(&[
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
    let (_child, addr) = start(&["--open-publish", "--history", "5"]).await;
    let mut sub = SseStream::open(addr, "/hub/sub/news").await;
    let res = post(addr, "/hub/pub/news", None, "hi").await;
    assert_eq!(res.status, 201);
    assert_eq!(sub.next_event().await.unwrap().data, "hi");
    assert_eq!(
        post(addr, "/hub/pub/private:x", None, "no").await.status,
        401
    );
}
