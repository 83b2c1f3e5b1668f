//! The chat page of `examples/hub_server` in real headless Chromium, through
//! WebDriver (Debian's chromium and chromium-driver; `.ci/run` installs
//! them): two pages chat and see each other online; the server cuts one
//! page's stream; the browser reconnects by itself with `Last-Event-ID`;
//! the messages published during the cut appear there exactly once, in
//! order.
//!
//! Without `chromedriver` on the `PATH` the test says so and passes, unless
//! `CI` is set: then it fails.
mod support;

#[path = "../examples/hub/app.rs"]
mod app;

use std::convert::Infallible;

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use support::browser::{eval, until, Browser};

const ROOM: &str = "chat.lobby";

const ONLINE: &str =
    "return [...document.querySelectorAll('#online li')].map(li => li.dataset.user)";
const MESSAGES: &str =
    "return [...document.querySelectorAll('#log li.message')].map(li => li.textContent)";

async fn join(client: &Client, base: &str, name: &str) {
    client.goto(base).await.unwrap();
    let input = client.find(Locator::Id("name")).await.unwrap();
    input.send_keys(name).await.unwrap();
    client
        .find(Locator::Id("join"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the stream to open",
        "return document.getElementById('status').textContent",
        |v| v == "connected",
    )
    .await;
}

async fn say(client: &Client, text: &str) {
    let input = client.find(Locator::Id("text")).await.unwrap();
    input.send_keys(text).await.unwrap();
    client
        .find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_and_a_cut_stream_resumes_with_last_event_id_exactly_once() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = app::App::new(&app::Options {
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        open_publish: false,
        history: 100,
        no_limits: true,
    });
    let hub = app.hub.clone();
    let server = support::serve(hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.respond(req).await) }
    }))
    .await;
    let base = format!("http://{}/", server.addr);

    let ann = browser.session().await;
    let bob = browser.session().await;

    // 1. Two pages chat, and each sees the other online and their messages.
    join(&ann, &base, "ann").await;
    join(&bob, &base, "bob").await;
    for page in [&ann, &bob] {
        until(page, "both online", ONLINE, |v| {
            strings(v) == ["ann", "bob"]
        })
        .await;
    }
    say(&ann, "hello bob").await;
    until(&bob, "ann's message", MESSAGES, |v| strings(v).len() == 1).await;
    say(&bob, "hi ann").await;
    let before = ["ann: hello bob", "bob: hi ann"];
    for page in [&ann, &bob] {
        until(page, "both messages", MESSAGES, |v| strings(v) == before).await;
    }

    // 2. The server cuts bob's stream, and messages go out meanwhile (the
    // browser waits the stream's `retry:` of 1 s before reconnecting).
    assert_eq!(hub.kick("bob"), 1);
    for i in 1..=3 {
        let body = json!({"from": "ann", "text": format!("during {i}")}).to_string();
        hub.publish(ROOM, body).await.unwrap();
    }

    // 3 and 4. The browser reconnects by itself with Last-Event-ID, and the
    // messages of the cut appear exactly once, in order. (A reconnect
    // without the cursor would start from the end and show none of them.)
    let expected = [
        "ann: hello bob",
        "bob: hi ann",
        "ann: during 1",
        "ann: during 2",
        "ann: during 3",
    ];
    until(&bob, "the replay", MESSAGES, |v| {
        strings(v).len() >= expected.len()
    })
    .await;
    say(&bob, "back").await;
    let after: Vec<&str> = expected.iter().copied().chain(["bob: back"]).collect();
    for page in [&ann, &bob] {
        let got = until(page, "the message after the cut", MESSAGES, |v| {
            strings(v).last().map(String::as_str) == Some("bob: back")
        })
        .await;
        assert_eq!(strings(&got), after);
    }
    // Back within the grace window: nobody saw bob leave.
    assert_eq!(strings(&eval(&ann, ONLINE).await), ["ann", "bob"]);

    ann.close().await.unwrap();
    bob.close().await.unwrap();
    drop(browser);
    server.stop().await;
}
