//! `prefer`: scripts against the async-jobs shape of `park` (the
//! `async_jobs` example): `POST /jobs?work_ms=W&deadline_ms=D` runs
//! `DelayedResponse::for_request(..).timeout(D).park(store).wait(work)`,
//! and `/jobs/{id}` is the store's status service. `$LOC` is the last
//! `Location`. Checks:
//!
//! - `Prefer::from_headers` agrees with an independent RFC 7240 reading
//!   (for values without quoted strings, see the README's known findings);
//! - the answer to a job follows from the preferences and the work time:
//!   `200` with the result when it is ready before the deadline
//!   (`respond-async`: 0, else `wait=N` capped at `max_wait`, else `D`),
//!   `202` with `Location` after it; `Preference-Applied` says exactly what
//!   was honoured, and its `wait` never exceeds `max_wait`;
//! - every parked job is served with its result once it finished, unless
//!   a `DELETE` removed it;
//! - status URLs answer only documented statuses.

use std::collections::HashSet;
use std::time::Duration;

use delayed_response::limit::ClientKey;
use delayed_response::park::{Prefer, Store};
use delayed_response::{Body, DelayedResponse};
use http::header::{HeaderValue, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use crate::driver::{self, End, ReqBody};
use crate::script;
use crate::shim;

const PATIENCE: Duration = Duration::from_secs(70);
/// The store's TTL of a finished result (the default, 10 min).
const TTL: Duration = Duration::from_secs(600);
const MAX_WAIT: Duration = Duration::from_secs(25);
/// The longest work a job may ask for (all finish well within the TTL).
const MAX_WORK_MS: u64 = 60_000;
const STATUSES: &[u16] = &[200, 202, 204, 400, 404, 405, 503];

/// See the module docs.
pub fn prefer(data: &[u8]) {
    let steps = script::parse(data);
    driver::runtime().block_on(async move {
        let store = Store::builder()
            .base_path("/jobs/")
            .max_wait(MAX_WAIT)
            .build();
        let status = shim::park_status(store.clone());
        let mut location = String::new();
        let mut parked: Vec<(String, u64, tokio::time::Instant)> = Vec::new();
        let mut deleted: HashSet<String> = HashSet::new();
        let mut held = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let vars = [("LOC", location.clone())];
            let Some((req, _)) = driver::request(&step, &vars) else {
                continue;
            };
            check_prefer_parse(req.headers());
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            if path.starts_with("/jobs/") {
                let mut t = driver::send(&status, req, leave);
                t.started(PATIENCE).await;
                let ex = t.snapshot();
                driver::trace(&format!("status {method} {path}"), &ex);
                if let Some(s) = ex.status {
                    assert!(
                        STATUSES.contains(&s.as_u16()),
                        "unexpected {s} for {method} {path}"
                    );
                    check_applied_wait(&ex.headers);
                    if method == Method::DELETE && s == StatusCode::NO_CONTENT {
                        deleted.insert(job_id(&path).to_string());
                    }
                }
                held.push(t);
                continue;
            }
            let job = job_of(&req);
            let prefer = Prefer::from_headers(req.headers());
            let mut t = driver::spawn_exchange(respond(req, store.clone()), leave);
            t.started(PATIENCE).await;
            let ex = t.snapshot();
            driver::trace(&format!("job {method} {path}"), &ex);
            let Some(s) = ex.status else {
                held.push(t);
                continue;
            };
            assert!(
                STATUSES.contains(&s.as_u16()),
                "unexpected {s} for {method} {path}"
            );
            check_applied_wait(&ex.headers);
            let Some((work_ms, deadline_ms)) = job else {
                held.push(t);
                continue;
            };
            let wait = prefer.wait.map(|w| w.min(MAX_WAIT));
            let deadline = if prefer.respond_async {
                Duration::ZERO
            } else {
                wait.unwrap_or(Duration::from_millis(deadline_ms))
            };
            let work = Duration::from_millis(work_ms);
            let applied = |respond_async: bool| {
                let mut parts = Vec::new();
                if respond_async {
                    parts.push("respond-async".to_string());
                }
                if let (false, Some(w)) = (prefer.respond_async, wait) {
                    parts.push(format!("wait={}", w.as_secs()));
                }
                parts.join(", ")
            };
            let got_applied = ex
                .headers
                .get("preference-applied")
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .unwrap_or_default();
            if work_ms == 0 || work < deadline {
                assert_eq!(
                    s,
                    StatusCode::OK,
                    "ready at {work:?}, deadline {deadline:?}"
                );
            } else if work > deadline {
                assert_eq!(
                    s,
                    StatusCode::ACCEPTED,
                    "ready at {work:?}, deadline {deadline:?}"
                );
            }
            match s {
                StatusCode::OK => {
                    assert_eq!(got_applied, applied(false));
                    if ex.end == End::Complete {
                        assert_eq!(ex.body, result(work_ms).as_bytes());
                    }
                }
                StatusCode::ACCEPTED => {
                    assert_eq!(got_applied, applied(prefer.respond_async));
                    let loc = ex.headers.get(LOCATION).and_then(|v| v.to_str().ok());
                    let loc = loc.expect("a 202 without Location").to_string();
                    assert!(loc.starts_with("/jobs/"), "Location {loc}");
                    parked.push((loc.clone(), work_ms, tokio::time::Instant::now()));
                    location = loc;
                }
                _ => {}
            }
            held.push(t);
        }
        // Every parked job finishes within MAX_WORK_MS of the last step.
        tokio::time::sleep(Duration::from_millis(MAX_WORK_MS + 1)).await;
        for (loc, work_ms, posted) in parked {
            if posted.elapsed() + Duration::from_secs(1) >= TTL + Duration::from_millis(work_ms) {
                // Finished and expired since: nothing to check.
                continue;
            }
            let req = Request::get(loc.as_str())
                .body(driver::body_of(Vec::new(), 1, false))
                .expect("a status request");
            let mut t = driver::send(&status, req, None);
            t.started(PATIENCE).await;
            let ex = t.snapshot();
            driver::trace(&format!("final GET {loc}"), &ex);
            if deleted.contains(job_id(&loc)) {
                assert_eq!(
                    ex.status,
                    Some(StatusCode::NOT_FOUND),
                    "a deleted job at {loc}"
                );
            } else {
                assert_eq!(
                    ex.status,
                    Some(StatusCode::OK),
                    "a finished job at {loc}: {ex:?}"
                );
                assert_eq!(ex.body, result(work_ms).as_bytes());
            }
        }
        drop(held);
    });
}

/// The id in a status path: its last non-empty segment, as the status
/// service reads it.
fn job_id(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("")
}

fn result(work_ms: u64) -> String {
    format!("done after {work_ms} ms")
}

/// `(work_ms, deadline_ms)` of a well-formed job request.
fn job_of(req: &Request<ReqBody>) -> Option<(u64, u64)> {
    if req.method() != Method::POST || req.uri().path() != "/jobs" {
        return None;
    }
    let query = req.uri().query().unwrap_or("");
    let work = number(query, "work_ms")?.ok()?;
    let deadline = number(query, "deadline_ms").unwrap_or(Ok(1000)).ok()?;
    (work <= MAX_WORK_MS && deadline <= MAX_WORK_MS).then_some((work, deadline))
}

fn number(query: &str, name: &str) -> Option<Result<u64, ()>> {
    let raw = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)?;
    Some(raw.parse::<u64>().map_err(|_| ()))
}

/// The job route of the async_jobs shape.
async fn respond(req: Request<ReqBody>, store: Store) -> Response<Body> {
    let Some((work_ms, deadline_ms)) = job_of(&req) else {
        let mut res = Response::new(Body::from("POST /jobs?work_ms=N\n"));
        *res.status_mut() = if req.uri().path() == "/jobs" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NOT_FOUND
        };
        return res;
    };
    DelayedResponse::for_request(&req)
        .timeout(Duration::from_millis(deadline_ms))
        .park(store, ClientKey::new("fuzz"))
        .wait(async move {
            if work_ms > 0 {
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
            }
            result(work_ms)
        })
        .await
}

fn check_applied_wait(headers: &HeaderMap) {
    let Some(applied) = headers.get("preference-applied") else {
        return;
    };
    let applied = applied.to_str().expect("Preference-Applied is ASCII");
    for item in applied.split(", ") {
        if let Some(secs) = item.strip_prefix("wait=") {
            let secs: u64 = secs.parse().expect("wait=N");
            assert!(
                secs <= MAX_WAIT.as_secs(),
                "applied {applied} over max_wait"
            );
        } else {
            assert_eq!(item, "respond-async", "applied {applied}");
        }
    }
}

/// Compares `Prefer::from_headers` with [`reference`] where the latter
/// applies (no quoted strings).
fn check_prefer_parse(headers: &HeaderMap) {
    let values: Vec<&HeaderValue> = headers.get_all("prefer").iter().collect();
    if values.iter().any(|v| v.as_bytes().contains(&b'"')) {
        return;
    }
    let got = Prefer::from_headers(headers);
    let want = reference(&values);
    assert_eq!(
        (got.respond_async, got.wait),
        want,
        "Prefer {values:?} read differently"
    );
}

/// RFC 7240 read independently: `preference *( "," preference )`, each
/// `token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )`; names are
/// case-insensitive; the first of a repeated preference wins, even when its
/// value is malformed; `wait` takes delta-seconds (digits). Header values
/// with bytes that are not visible ASCII are skipped whole (as
/// `HeaderValue::to_str` fails on them).
fn reference(values: &[&HeaderValue]) -> (bool, Option<Duration>) {
    let mut respond_async = None;
    let mut wait: Option<Option<Duration>> = None;
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let pref = item.split(';').next().unwrap_or("");
            let (name, val) = match pref.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (pref.trim(), None),
            };
            if name.eq_ignore_ascii_case("respond-async") {
                respond_async.get_or_insert(true);
            } else if name.eq_ignore_ascii_case("wait") && wait.is_none() {
                let secs = val
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                wait = Some(secs.map(Duration::from_secs));
            }
        }
    }
    (respond_async.unwrap_or(false), wait.flatten())
}
