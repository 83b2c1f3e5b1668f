//! Headless Chromium through WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them), for the tests that drive
//! the crate's web pages.
//!
//! [`Browser::launch`] starts `chromedriver` on a free port; each
//! [`Browser::session`] is a Chromium with a fresh profile of its own. A
//! test without `chromedriver` on the `PATH` is skipped with a message,
//! unless `CI` is set: then it fails.
//!
//! ```ignore
//! let Some(browser) = support::browser::Browser::launch().await else { return };
//! let page = browser.session().await;
//! page.goto("http://127.0.0.1:8080/").await.unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// How long a test waits for the browser to show something.
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(20);

/// The flags every session starts Chromium with.
pub const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,800",
];

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Is this a CI run (`CI` set to anything but empty, `0` or `false`)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A running `chromedriver` (killed when dropped) and the profiles of its
/// sessions (removed when dropped).
pub struct Browser {
    _driver: Child,
    url: String,
    profiles: PathBuf,
    next: std::sync::atomic::AtomicUsize,
}

impl Browser {
    /// Starts `chromedriver` on a free port. `None` (after saying why on
    /// stderr) when it is not installed and this is not CI; under CI a
    /// missing `chromedriver` fails the test.
    pub async fn launch() -> Option<Browser> {
        let Some(chromedriver) = find_on_path("chromedriver") else {
            assert!(
                !in_ci(),
                "chromedriver is not on the PATH, and CI is set: install chromium and chromium-driver"
            );
            eprintln!(
                "SKIPPED: chromedriver is not on the PATH (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        Some(Browser::start(&chromedriver).await)
    }

    async fn start(path: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        // An external process has no signal to await: look for its port.
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
        let profiles = std::env::temp_dir().join(format!(
            "delayed-response-browser-{}-{port}",
            std::process::id()
        ));
        Browser {
            _driver: driver,
            url: format!("http://127.0.0.1:{port}"),
            profiles,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A new headless Chromium with a fresh profile (its own cookies and
    /// storage).
    pub async fn session(&self) -> Client {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.join(format!("profile-{n}"));
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut options = json!({ "args": args });
        if let Some(binary) = find_on_path("chromium") {
            options["binary"] = json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// Runs `script` in the page and returns its value.
pub async fn eval(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .expect("the script runs")
}

/// Polls `script` until `check` accepts its value; returns it.
pub async fn until(
    client: &Client,
    what: &str,
    script: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
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
