//! `piping_routes`: any script against the pipe in the Piping mode
//! (Piping Server's protocol: any path is a pipe, sender and receivers in
//! either order, `?n=` receivers). Checks:
//!
//! - every status is one the Piping mode documents, and every answer
//!   carries `Access-Control-Allow-Origin: *`;
//! - `?n=` that is not a number, under 1 or over `max_receivers` is `400`
//!   on every pipe path (read independently: the first `n` parameter, as a
//!   decimal number);
//! - every held request ends by the TTL plus two heartbeats, and afterwards
//!   no request waits and no path is in use (no path leaks); with the small
//!   per-client cap, the client then gets its whole cap again (no permit
//!   leaks);
//! - a receiver that got a whole body (it ended cleanly) got exactly the
//!   body of a whole upload to its path (raw uploads: a multipart one sends
//!   its first part); a cut or over-limit upload never ends a receiver
//!   cleanly;
//! - a sender whose response ends cleanly ends with Piping Server's
//!   `[INFO] All receiver(s) was/were received successfully.`, and at least
//!   its `n` receivers got its whole upload;
//! - a receiver's `Content-Type` never names `text/html`, in any item of
//!   a list (the pipe must not serve a page on the server's origin), and
//!   it carries `X-Content-Type-Options: nosniff`.

use std::time::Duration;

use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONTENT_TYPE, RETRY_AFTER};
use http::Method;

use crate::driver::{self, End, Exchange, Sent, Tracked};
use crate::script::{self, Step};
use crate::shim;

/// How long a request may take to show its first byte (virtual time).
const PATIENCE: Duration = Duration::from_secs(5);
/// The pipe's TTL (30 s, see `shim::piping`), two heartbeats and a margin.
const SETTLE: Duration = Duration::from_secs(60);
/// What the Piping mode may answer.
const STATUSES: &[u16] = &[200, 204, 400, 404, 405, 413, 429, 502, 503, 504];
/// The small per-client cap of settings bit 2.
const PER_CLIENT: usize = 2;
/// The paths that are not pipes.
const RESERVED: [&str; 6] = [
    "/",
    "/noscript",
    "/version",
    "/help",
    "/favicon.ico",
    "/robots.txt",
];
const ALL_RECEIVED: &str = "[INFO] All receiver(s) was/were received successfully.";

/// Any script against the Piping mode. The first byte picks the settings:
/// bits 0–1 the upload limit (none, 16 B, 1000 B, 1 MiB), bit 2 a
/// per-client cap of 2 waiting requests instead of the default, bits 3–4
/// `max_receivers` (1, 2, 3, 8).
///
/// Beside the script's directives, `x-fuzz-give-up: MS` drops a request
/// that long after it was sent, wherever it stands (a receiver that leaves
/// while it waits without a head).
pub fn piping_routes(data: &[u8]) {
    let Some((&cfg, script)) = data.split_first() else {
        return;
    };
    let limit: u64 = [0, 16, 1000, 1 << 20][usize::from(cfg & 3)];
    let per_client = (cfg & 4 != 0).then_some(PER_CLIENT);
    let max_receivers: u32 = [1, 2, 3, 8][usize::from((cfg >> 3) & 3)];
    run(script::parse(script), limit, per_client, max_receivers);
}

/// What one request was.
struct Request {
    method: Method,
    path: String,
    /// Its `?n=`, read independently: `Some(Ok(n))`, `Some(Err(()))` when
    /// malformed or out of range, `None` when absent (1).
    n: Option<Result<u32, ()>>,
    sent: Sent,
    multipart: bool,
}

impl Request {
    fn n(&self) -> u32 {
        match self.n {
            Some(Ok(n)) => n,
            _ => 1,
        }
    }

    fn is_pipe(&self) -> bool {
        !RESERVED.contains(&self.path.as_str())
    }

    fn is_upload(&self) -> bool {
        self.method == Method::POST || self.method == Method::PUT
    }
}

fn run(steps: Vec<Step>, limit: u64, per_client: Option<usize>, max_receivers: u32) {
    driver::runtime().block_on(async move {
        let pipe = shim::piping(limit, max_receivers, per_client);
        let mut tracked: Vec<Tracked> = Vec::new();
        let mut requests: Vec<Request> = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let give_up = driver::take_give_up(&mut step);
            let Some((req, sent)) = driver::request(&step, &[]) else {
                continue;
            };
            let path = match req.uri().path() {
                "" => "/".to_string(),
                p => p.to_string(),
            };
            let request = Request {
                method: req.method().clone(),
                n: receivers(req.uri().query(), max_receivers),
                multipart: req.headers().get(CONTENT_TYPE).is_some_and(|v| {
                    let v = v.as_bytes();
                    v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"multipart")
                }),
                path,
                sent,
            };
            let mut t = driver::send_until(&pipe, req, leave, give_up);
            t.started(PATIENCE).await;
            tracked.push(t);
            requests.push(request);
        }
        let done = driver::settle(&mut tracked, SETTLE).await;
        let exchanges: Vec<Exchange> = tracked.iter().map(Tracked::snapshot).collect();
        for (i, (ex, r)) in exchanges.iter().zip(&requests).enumerate() {
            driver::trace(&format!("piping #{i} {} {}", r.method, r.path), ex);
        }
        assert!(done, "a Piping request outlived its TTL: {exchanges:#?}");
        assert_eq!(shim::pipe_waiting(&pipe), 0, "a request still waits");
        assert_eq!(shim::piping_paths(&pipe), 0, "a path is still in use");
        for (ex, r) in exchanges.iter().zip(&requests) {
            check_answer(ex, r);
            if r.is_pipe() && r.method == Method::GET && ex.status.is_some_and(|s| s == 200) {
                check_receiver(ex, r, limit, &exchanges, &requests);
            }
        }
        for (ex, r) in exchanges.iter().zip(&requests) {
            if r.is_pipe() && r.is_upload() && ex.status.is_some_and(|s| s == 200) {
                check_sender(ex, r, &exchanges, &requests);
            }
        }
        if let Some(cap) = per_client {
            check_cap_released(&pipe, cap).await;
        }
    });
}

fn check_answer(ex: &Exchange, r: &Request) {
    let Some(status) = ex.status else {
        return;
    };
    let code = status.as_u16();
    let what = format!("{} {}", r.method, r.path);
    assert!(STATUSES.contains(&code), "unexpected {status} for {what}");
    assert_eq!(
        ex.headers
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.as_bytes()),
        Some(&b"*"[..]),
        "no CORS on {status} for {what}"
    );
    if code == 429 {
        assert!(
            ex.headers.contains_key(RETRY_AFTER),
            "429 without Retry-After"
        );
    }
    let pipe_method = r.method == Method::GET || r.is_upload();
    if r.is_pipe() && pipe_method && matches!(r.n, Some(Err(()))) {
        assert_eq!(code, 400, "a bad ?n= was taken for {what}: {ex:?}");
    }
    if !r.is_pipe() && r.is_upload() {
        assert_eq!(code, 400, "an upload to a reserved path: {ex:?}");
    }
}

/// A receiver's answer: its headers, and a clean end only with a whole
/// upload's bytes.
fn check_receiver(
    ex: &Exchange,
    r: &Request,
    limit: u64,
    exchanges: &[Exchange],
    requests: &[Request],
) {
    // Item by item: a browser takes the last type of a list.
    for ct in ex.headers.get_all(CONTENT_TYPE) {
        for item in ct.as_bytes().split(|&b| b == b',') {
            let essence = item.split(|&b| b == b';').next().unwrap_or(b"");
            assert!(
                !essence.trim_ascii().eq_ignore_ascii_case(b"text/html"),
                "a receiver got Content-Type {ct:?} on {}",
                r.path
            );
        }
    }
    assert_eq!(
        ex.headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "a receiver without nosniff"
    );
    if ex.end != End::Complete {
        return;
    }
    let whole = exchanges.iter().zip(requests).any(|(e, q)| {
        q.is_upload()
            && q.path == r.path
            && e.status.is_some_and(|s| s == 200)
            && !q.sent.cut
            && !(limit > 0 && q.sent.body.len() as u64 > limit)
            && (q.multipart || q.sent.body == ex.body)
    });
    assert!(
        whole,
        "a receiver on {} ended cleanly with {} bytes that no whole upload sent",
        r.path,
        ex.body.len()
    );
}

/// Every clean receiver end is a whole upload; a clean sender end means its
/// receivers all got it.
fn check_sender(ex: &Exchange, r: &Request, exchanges: &[Exchange], requests: &[Request]) {
    if ex.end != End::Complete {
        return;
    }
    let text = String::from_utf8_lossy(&ex.body);
    let last = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("");
    assert_eq!(
        last, ALL_RECEIVED,
        "a sender on {} ended cleanly without saying all was received: {text:?}",
        r.path
    );
    assert!(!r.sent.cut, "a cut upload ended its sender cleanly");
    if r.multipart {
        return;
    }
    let got = exchanges
        .iter()
        .zip(requests)
        .filter(|(e, q)| {
            q.method == Method::GET
                && q.path == r.path
                && e.status.is_some_and(|s| s == 200)
                && e.body == r.sent.body
        })
        .count();
    assert!(
        got >= r.n() as usize,
        "{} receiver(s) of {} got the upload to {}, {} wanted",
        got,
        requests.len(),
        r.path,
        r.n()
    );
}

/// With the small per-client cap: once everything settled, the client may
/// have its whole cap of requests waiting again.
async fn check_cap_released(pipe: &shim::Pipe, cap: usize) {
    let mut held = Vec::new();
    for i in 0..cap {
        let step = Step {
            method: b"GET".to_vec(),
            target: format!("/after/{i}").into_bytes(),
            chunks: 1,
            ..Step::default()
        };
        let (req, _) = driver::request(&step, &[]).expect("a request");
        held.push(driver::send(pipe, req, None));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        shim::pipe_waiting(pipe),
        cap,
        "the client could not hold its whole cap: a permit leaked"
    );
    for t in &held {
        assert_eq!(
            t.snapshot().status,
            None,
            "a receiver under the cap was refused"
        );
    }
}

/// `?n=` as Piping Server reads it: the first parameter named `n` (a
/// parameter without `=` has an empty value), a decimal number from 1 to
/// `max`.
fn receivers(query: Option<&str>, max: u32) -> Option<Result<u32, ()>> {
    let value = query?
        .split('&')
        .map(|pair| match pair.find('=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        })
        .find(|(name, _)| *name == "n")?
        .1;
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(()));
    }
    let negative = value.starts_with('-');
    let magnitude = digits.trim_start_matches('0');
    let in_range = !negative && !magnitude.is_empty() && magnitude.len() <= 10;
    match magnitude.parse::<u64>() {
        Ok(n) if in_range && n <= u64::from(max) => Some(Ok(n as u32)),
        _ => Some(Err(())),
    }
}
