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
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const ROOM: &str = "chat.lobby";
/// How long the test waits for the browser to show something.
const BROWSER_PATIENCE: Duration = Duration::from_secs(20);

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

async fn start_driver(path: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    // Waits for an external process to listen: there is no signal to await.
    let ready = tokio::time::timeout(BROWSER_PATIENCE, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "chromedriver did not listen on {port}");
    Driver {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A headless Chromium session with a fresh profile (so its own cookies).
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.push("--window-size=1000,700".into());
    let mut options = json!({ "args": args });
    if let Some(binary) = find_on_path("chromium") {
        options["binary"] = json!(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

async fn eval(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .expect("the script runs")
}

/// Polls `script` until `check` accepts its value; returns it.
async fn until(client: &Client, what: &str, script: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let found = tokio::time::timeout(BROWSER_PATIENCE, async {
        loop {
            last = eval(client, script).await;
            if check(&last) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last saw {last}"))
}

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
    let Some(chromedriver) = find_on_path("chromedriver") else {
        assert!(
            !in_ci(),
            "chromedriver is not on the PATH, and CI is set: install chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED: chromedriver is not on the PATH (apt-get install chromium chromium-driver)"
        );
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

    let driver = start_driver(&chromedriver).await;
    let root = std::env::temp_dir().join(format!("hub-browser-{}", std::process::id()));
    let ann = browser(&driver, &root.join("ann")).await;
    let bob = browser(&driver, &root.join("bob")).await;

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
    drop(driver);
    let _ = std::fs::remove_dir_all(&root);
    server.stop().await;
}
