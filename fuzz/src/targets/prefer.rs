//! `prefer`: scripts against the async-jobs shape of `park` (the
//! `async_jobs` example): `POST /jobs?work_ms=W&deadline_ms=D` runs
//! `DelayedResponse::for_request(..).timeout(D).park(store).wait(work)`,
//! and `/jobs/{id}` is the store's status service. `$LOC` is the last
//! `Location`. Checks:
//!
//! - `Prefer::from_headers` agrees with an independent RFC 7240 reading
//!   (quoted strings with escapes; a malformed preference is ignored);
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

/// Compares `Prefer::from_headers` with [`reference`].
fn check_prefer_parse(headers: &HeaderMap) {
    let values: Vec<&HeaderValue> = headers.get_all("prefer").iter().collect();
    let got = Prefer::from_headers(headers);
    let want = reference(&values);
    assert_eq!(
        (got.respond_async, got.wait),
        want,
        "Prefer {values:?} read differently"
    );
}

/// A lexical token of a `Prefer` value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Token(Vec<u8>),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
    Equals,
    Semicolon,
    Comma,
    /// Anything the grammar has no place for, or a quoted string that does
    /// not close (which takes the rest of the value).
    Bad,
}

/// Splits a value into tokens, dropping whitespace (the grammar never puts
/// two words side by side, so whitespace only ever separates).
fn lex(value: &[u8]) -> Vec<Lex> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        i += 1;
        match b {
            b' ' | b'\t' => {}
            b'=' => out.push(Lex::Equals),
            b';' => out.push(Lex::Semicolon),
            b',' => out.push(Lex::Comma),
            b'"' => {
                let mut text = Vec::new();
                let mut closed = false;
                while i < value.len() {
                    let c = value[i];
                    i += 1;
                    if c == b'"' {
                        closed = true;
                        break;
                    }
                    if c == b'\\' {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                        match value.get(i) {
                            Some(&e) if e == b'\t' || (0x20..=0x7e).contains(&e) || e >= 0x80 => {
                                text.push(e);
                                i += 1;
                            }
                            _ => {
                                i = value.len();
                                break;
                            }
                        }
                        continue;
                    }
                    // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                    text.push(c);
                }
                out.push(if closed { Lex::Quoted(text) } else { Lex::Bad });
            }
            b if tchar(b) => {
                let start = i - 1;
                while i < value.len() && tchar(value[i]) {
                    i += 1;
                }
                out.push(Lex::Token(value[start..i].to_vec()));
            }
            _ => out.push(Lex::Bad),
        }
    }
    out
}

/// One list element, by RFC 7240 section 2:
/// `token [ "=" word ] *( ";" [ token [ "=" word ] ] )`, word being a
/// token or a quoted string. Its name and value, or `None` if malformed.
fn element(lexes: &[Lex]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    fn word(l: Option<&Lex>) -> Option<Vec<u8>> {
        match l? {
            Lex::Token(t) | Lex::Quoted(t) => Some(t.clone()),
            _ => None,
        }
    }
    let Some(Lex::Token(name)) = lexes.first() else {
        return None;
    };
    let mut i = 1;
    let mut value = None;
    if lexes.get(i) == Some(&Lex::Equals) {
        value = Some(word(lexes.get(i + 1))?);
        i += 2;
    }
    while i < lexes.len() {
        if lexes[i] != Lex::Semicolon {
            return None;
        }
        i += 1;
        if let Some(Lex::Token(_)) = lexes.get(i) {
            i += 1;
            if lexes.get(i) == Some(&Lex::Equals) {
                word(lexes.get(i + 1))?;
                i += 2;
            }
        }
    }
    Some((name.clone(), value))
}

/// RFC 7240 read independently: each value a comma-separated list of
/// elements (empty ones allowed), a malformed element ignored; names are
/// case-insensitive; the first of a repeated preference wins, even when
/// its value is not a number; `wait` takes delta-seconds (digits).
fn reference(values: &[&HeaderValue]) -> (bool, Option<Duration>) {
    let mut respond_async = None;
    let mut wait: Option<Option<Duration>> = None;
    for value in values {
        let lexes = lex(value.as_bytes());
        for item in lexes.split(|l| *l == Lex::Comma) {
            if item.is_empty() {
                continue;
            }
            let Some((name, val)) = element(item) else {
                continue;
            };
            if name.eq_ignore_ascii_case(b"respond-async") {
                respond_async.get_or_insert(true);
            } else if name.eq_ignore_ascii_case(b"wait") && wait.is_none() {
                let secs = val
                    .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
                    .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok());
                wait = Some(secs.map(Duration::from_secs));
            }
        }
    }
    (respond_async.unwrap_or(false), wait.flatten())
}
