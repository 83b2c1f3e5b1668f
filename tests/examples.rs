//! The README's example servers, run as the built binaries (`cargo test`
//! builds the examples) on 127.0.0.1:0 and driven over real sockets: the
//! headline `pipe_server`, the core's `long_poll` and `axum`; and what a new
//! user meets first: `--help`, bad arguments, and logs in a file. Run alone
//! (`--test examples`), cargo does not rebuild the examples: build them first
//! (`cargo build --all-features --examples`).

mod support;

use std::process::Stdio;

use support::example::*;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::ChildStderr;

/// The teaching examples this build has (each needs its module's feature).
fn examples() -> Vec<&'static str> {
    let mut names = vec!["long_poll", "axum", "pipe_server"];
    if cfg!(feature = "signal") {
        names.push("signal_server");
    }
    if cfg!(feature = "park") {
        names.push("async_jobs");
    }
    names
}

/// Starts `name` with `args`, its stderr dropped.
async fn start(name: &str, args: &[&str]) -> Example {
    listen(example(name).args(args), "http").await
}

/// [`start`], with the example's stderr (its log, at INFO) to read.
async fn start_with_logs(name: &str, args: &[&str]) -> (Example, Lines<BufReader<ChildStderr>>) {
    let mut ex = listen(
        example(name)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stderr(Stdio::piped()),
        "http",
    )
    .await;
    let stderr = ex.child.stderr.take().unwrap();
    (ex, BufReader::new(stderr).lines())
}

#[tokio::test]
async fn pipe_server_streams_an_upload_into_a_download() {
    let ex = start("pipe_server", &["--heartbeat-secs", "1"]).await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // `curl -T report.bin http://host/` sends `PUT /report.bin`.
    let mut sender = send_raw(
        ex.addr,
        &format!(
            "PUT /report.bin HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            ex.addr,
            payload.len()
        ),
    )
    .await;
    let mut head = Vec::new();
    read_until(&mut sender, &mut head, b"\n").await;
    read_until(&mut sender, &mut head, b"\r\n\r\n").await;
    // The first body line is the download URL, sent before any receiver.
    read_until(&mut sender, &mut head, b"\n\r\n").await;
    let text = String::from_utf8_lossy(&head).into_owned();
    let url = text
        .lines()
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL line in {text:?}"))
        .trim()
        .to_string();
    let path = url.split_once(&ex.addr.to_string()).unwrap().1.to_string();
    let upload = tokio::spawn(async move {
        sender.write_all(&payload).await.unwrap();
        (sender, payload)
    });
    let mut receiver = get(ex.addr, &path).await;
    let res = read_response(&mut receiver).await;
    let (mut sender, payload) = within("the upload", upload).await.unwrap();
    assert_eq!(res.status, 200);
    assert!(res.complete);
    assert_eq!(res.body, payload);
    assert_eq!(
        res.header("content-disposition"),
        Some("attachment; filename=\"report.bin\"")
    );
    let mut rest = Vec::new();
    read_until(&mut sender, &mut rest, b"done: 200000 bytes").await;
    // Single use: a second download is 404.
    let mut again = get(ex.addr, &path).await;
    assert_eq!(read_response(&mut again).await.status, 404);
    drop(ex.child);
}

#[tokio::test]
async fn long_poll_serves_wait_start_poll_and_rejects_bad_numbers() {
    let ex = start("long_poll", &[]).await;
    let fetch = |path: &'static str| async move {
        let mut s = get(ex.addr, path).await;
        read_response(&mut s).await
    };
    let res = fetch("/wait?work_ms=10").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, r#"{"slept_ms":10}"#)
    );
    let res = fetch("/wait?work_ms=5000&timeout_ms=50").await;
    assert_eq!(res.status, 202);
    let res = fetch("/start?work_ms=300&interval_ms=50&initial_delay_ms=20").await;
    assert_eq!(res.status, 202);
    assert!(res.complete);
    assert!(res.text().starts_with(' '), "{:?}", res.text());
    assert_eq!(res.text().trim_start(), r#"{"slept_ms":300}"#);
    let res = fetch("/poll?ready_after_ms=30&interval_ms=10").await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("ready_after_ms"));
    let res = fetch("/wait?work_ms=abc").await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.text(),
        "work_ms must be a whole number of milliseconds, got \"abc\"\n"
    );
    assert_eq!(fetch("/start").await.status, 400);
    assert_eq!(fetch("/nope").await.status, 404);
    drop(ex.child);
}

// Regression: the axum example printed the address it was asked for, not the
// one it bound, so `--addr 127.0.0.1:0` reported port 0.
#[tokio::test]
async fn axum_example_reports_its_bound_port_and_serves() {
    let ex = start("axum", &[]).await;
    assert_ne!(ex.addr.port(), 0);
    let mut s = get(ex.addr, "/report").await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), r#"{"report":"ready"}"#);
    drop(ex.child);
}

#[tokio::test]
async fn examples_reject_unknown_arguments_with_usage() {
    for name in examples() {
        let out = run(name, &["--bogus"]).await;
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage:"), "{name}: {err}");
        assert!(err.contains("--bogus"), "{name}: {err}");
    }
}

// Regression: `/start?interval_ms=0` gave a client a 1 ms heartbeat (1,000
// such connections took two cores to 169 %), and `+10` passed as a number.
#[tokio::test]
async fn long_poll_refuses_intervals_under_the_floor() {
    let ex = start("long_poll", &[]).await;
    let fetch = |path: &'static str| async move {
        let mut s = get(ex.addr, path).await;
        read_response(&mut s).await
    };
    for path in [
        "/start?work_ms=10&interval_ms=0",
        "/start?work_ms=10&interval_ms=9",
        "/poll?ready_after_ms=10&interval_ms=1",
    ] {
        let res = fetch(path).await;
        assert_eq!(res.status, 400, "{path}");
        assert_eq!(res.text(), "interval_ms must be at least 10\n", "{path}");
    }
    assert_eq!(fetch("/wait?work_ms=+10").await.status, 400);
    drop(ex.child);
}

// Regression: `async_jobs` took `work_ms=+10` for 10.
#[tokio::test]
async fn async_jobs_accepts_digits_only() {
    let ex = start("async_jobs", &[]).await;
    let res = post(ex.addr, "/jobs?work_ms=+10", None, "").await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.text(),
        "work_ms must be a whole number of milliseconds, got \"+10\"\n"
    );
    let res = post(ex.addr, "/jobs?work_ms=10", None, "").await;
    assert_eq!(res.status, 200);
    drop(ex.child);
}

// Regression: `--help` was "unknown argument" and exit 2.
#[tokio::test]
async fn help_prints_the_usage_and_how_to_try_it_and_exits_0() {
    for name in examples() {
        for flag in ["--help", "-h"] {
            let out = run(name, &[flag]).await;
            assert_eq!(out.status.code(), Some(0), "{name} {flag}");
            let help = String::from_utf8_lossy(&out.stdout);
            assert!(help.starts_with("usage: "), "{name} {flag}: {help}");
            assert!(help.contains("--addr"), "{name} {flag}: {help}");
            assert!(help.contains("curl "), "{name} {flag}: {help}");
            assert!(out.stderr.is_empty(), "{name} {flag}: {:?}", out.stderr);
        }
    }
}

// Regression: logs carried ANSI colour codes when stderr was a file or a
// pipe (here a pipe), which made them unreadable there.
#[tokio::test]
async fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let (ex, mut log) = start_with_logs("long_poll", &[]).await;
    let mut s = get(ex.addr, "/wait?work_ms=1").await;
    assert_eq!(read_response(&mut s).await.status, 200);
    // The request's outcome is logged at INFO once it is answered.
    let line = within("the request's log line", async {
        loop {
            let line = log.next_line().await.unwrap().expect("the log ended");
            if line.contains("request finished") {
                return line;
            }
        }
    })
    .await;
    assert!(line.contains("INFO"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    drop(ex.child);
}

// Regression: with stderr piped into a reader that had gone, every logged
// request panicked (tracing reported the failed write with `eprintln!`, which
// panics on the same broken stderr) and the client got no answer.
#[tokio::test]
async fn a_log_reader_that_has_gone_does_not_break_the_server() {
    let (ex, log) = start_with_logs("long_poll", &[]).await;
    drop(log);
    for _ in 0..2 {
        let mut s = get(ex.addr, "/wait?work_ms=1").await;
        let res = read_response(&mut s).await;
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, r#"{"slept_ms":1}"#)
        );
    }
    drop(ex.child);
}
