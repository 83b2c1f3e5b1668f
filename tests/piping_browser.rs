//! The pipe's web page in real headless Chromium, through WebDriver (see
//! `tests/support/browser.rs`): page A sends a file, page B receives it,
//! and the bytes are checked; in the Piping mode (a path) and in the
//! ephemeral mode (reserve, share the link, send).
//!
//! Without `chromedriver` on the `PATH` the tests say so and pass, unless
//! `CI` is set: then they fail.
mod support;

use std::fmt::Write as _;

use delayed_response::pipe::{self, Protocol};
use fantoccini::{Client, Locator};
use support::browser::{eval, until, Browser};

/// A file of `len` bytes that are not all alike, in a fresh directory.
fn file(name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("piping-browser-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

const RECEIVED_HEX: &str = "var b = window.pipeReceived; if (!b) { return null; } \
    var s = ''; for (var i = 0; i < b.length; i++) { s += (b[i] < 16 ? '0' : '') + b[i].toString(16); } \
    return s;";

async fn text_of(page: &Client, id: &str) -> String {
    let v = eval(
        page,
        &format!("return document.getElementById('{id}').textContent"),
    )
    .await;
    v.as_str().unwrap_or_default().to_owned()
}

async fn type_into(page: &Client, id: &str, text: &str) {
    let input = page.find(Locator::Id(id)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Page B receives `what` (a path or a link) and returns the bytes' hex.
async fn receive(page: &Client, what: &str, len: usize) -> String {
    type_into(page, "receive-path", what).await;
    click(page, "receive-button").await;
    let check = "var b = window.pipeReceived; return b ? b.length : -1;";
    until(page, "page B to receive the file", check, |v| {
        v.as_i64() == Some(len as i64)
    })
    .await;
    eval(page, RECEIVED_HEX)
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_a_sends_a_file_to_a_path_and_page_b_receives_the_same_bytes() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let pipe = pipe::Service::builder().protocol(Protocol::Piping).build();
    let server = support::serve(pipe).await;
    let base = format!("http://{}/", server.addr);
    let (path, bytes) = file("report.bin", 300 * 1024 + 17);

    let a = browser.session().await;
    let b = browser.session().await;
    a.goto(&base).await.unwrap();
    b.goto(&base).await.unwrap();

    // 1. Page A sends the file to a path; it waits for its receiver.
    a.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
    type_into(&a, "path", "browser/report.bin").await;
    click(&a, "send-button").await;
    until(
        &a,
        "page A to send",
        "return document.getElementById('send-status').textContent",
        |v| {
            v.as_str()
                .is_some_and(|t| t.starts_with("Waiting") || t.starts_with("Sent"))
        },
    )
    .await;

    // 2. Page B receives it; 3. the bytes are the file's.
    let got = receive(&b, "browser/report.bin", bytes.len()).await;
    assert!(got == hex(&bytes), "page B got other bytes");

    until(
        &a,
        "page A to finish",
        "return document.getElementById('send-status').textContent",
        |v| v.as_str() == Some("Done."),
    )
    .await;
    let log = text_of(&a, "send-log").await;
    assert!(
        log.contains("[INFO] All receiver(s) was/were received successfully."),
        "{log}"
    );

    a.close().await.unwrap();
    b.close().await.unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_a_reserves_a_link_sends_a_file_and_page_b_receives_it_by_the_link() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let pipe = pipe::Service::builder().reservations(true).build();
    let server = support::serve(pipe).await;
    let base = format!("http://{}/", server.addr);
    let (path, bytes) = file("photo.jpg", 200 * 1024 + 3);

    let a = browser.session().await;
    let b = browser.session().await;
    a.goto(&base).await.unwrap();
    b.goto(&base).await.unwrap();

    // 1. Page A reserves a link to share.
    click(&a, "reserve").await;
    let link = until(
        &a,
        "the link",
        "return document.getElementById('download-link').href",
        |v| {
            v.as_str()
                .is_some_and(|h| h.starts_with("http://") && !h.ends_with('#'))
        },
    )
    .await;
    let link = link.as_str().unwrap().to_owned();
    // 2. It sends the file.
    a.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
    click(&a, "send-button").await;
    // 3. Page B receives it by the link; the bytes are the file's.
    let got = receive(&b, &link, bytes.len()).await;
    assert!(got == hex(&bytes), "page B got other bytes");
    until(
        &a,
        "page A to finish",
        "return document.getElementById('send-status').textContent",
        |v| v.as_str() == Some("Done."),
    )
    .await;
    assert!(text_of(&a, "send-log").await.contains("done: "));

    a.close().await.unwrap();
    b.close().await.unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    server.stop().await;
}
