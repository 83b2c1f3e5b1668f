//! A demo server for the three ways of waiting.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example long_poll -- [--addr 127.0.0.1:9000]
//! ```
//!
//! and try:
//!
//! ```text
//! curl -i 'http://127.0.0.1:9000/wait?work_ms=200'                  # 200 {"slept_ms":200}
//! curl -i 'http://127.0.0.1:9000/wait?work_ms=2000&timeout_ms=500'  # 202 at 0.5 s
//! curl -iN 'http://127.0.0.1:9000/start?work_ms=5000&interval_ms=1000&initial_delay_ms=500'
//! curl -i 'http://127.0.0.1:9000/poll?ready_after_ms=3000&interval_ms=500'
//! ```
//!
//! Each request's outcome (done, timeout, abort, error) is logged at INFO on
//! stderr (`RUST_LOG` overrides the filter).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use delayed_response::{Body, DelayedResponse, Heartbeat, Json, Outcome};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;

mod common;

const ABOUT: &str = "\
A demo server for the three ways of waiting: wait (a deadline, then 202),
start (long-poll with heartbeats) and poll (re-check until ready).

try:
  curl -i  'http://127.0.0.1:9000/wait?work_ms=200'                  # 200 {\"slept_ms\":200}
  curl -i  'http://127.0.0.1:9000/wait?work_ms=2000&timeout_ms=500'  # 202 at 0.5 s
  curl -iN 'http://127.0.0.1:9000/start?work_ms=5000&interval_ms=1000&initial_delay_ms=500'
  curl -i  'http://127.0.0.1:9000/poll?ready_after_ms=3000&interval_ms=500'

Logs go to stderr (RUST_LOG overrides the INFO filter).";

/// The longest work, interval or deadline a request may ask for.
const MAX_MS: u64 = 3_600_000;

/// The shortest heartbeat or poll interval a request may ask for: the core's
/// floor. Each beat wakes the server, and a client must not make it spin.
const MIN_INTERVAL: Duration = DelayedResponse::DEFAULT_MIN_INTERVAL;

#[tokio::main]
async fn main() {
    let args = common::args("long_poll", ABOUT);
    common::init_tracing();
    let (server, listener) = common::start("long_poll", &args.addr, &args.tls).await;
    let service = service_fn(|req| async move { Ok::<_, Infallible>(route(req).await) });
    if let Err(e) = server.serve(listener, service, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

async fn route(req: Request<Incoming>) -> Response<Body> {
    let query = Query(req.uri().query().unwrap_or("").to_string());
    let result = match req.uri().path() {
        "/wait" => wait(&req, &query).await,
        "/start" => start(&req, &query).await,
        "/poll" => poll(&req, &query).await,
        _ => Err((
            StatusCode::NOT_FOUND,
            "not found: try /wait, /start or /poll".into(),
        )),
    };
    result.unwrap_or_else(|(status, reason)| {
        let mut res = Response::new(Body::from(format!("{reason}\n")));
        *res.status_mut() = status;
        res
    })
}

type Rejection = (StatusCode, String);

/// The base builder of every route: shutdown-aware, logs the outcome.
fn delayed(req: &Request<Incoming>, mode: &'static str) -> DelayedResponse {
    let path = req.uri().to_string();
    let started = Instant::now();
    DelayedResponse::for_request(req).on_outcome(move |outcome: Outcome| {
        tracing::info!(
            mode,
            %path,
            %outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
    })
}

async fn work(ms: u64) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(serde_json::json!({ "slept_ms": ms }))
}

async fn wait(req: &Request<Incoming>, q: &Query) -> Result<Response<Body>, Rejection> {
    let work_ms = q.required("work_ms")?;
    let mut d = delayed(req, "wait");
    if let Some(t) = q.optional("timeout_ms")? {
        d = d.timeout(Duration::from_millis(t));
    }
    Ok(d.wait(work(work_ms)).await)
}

async fn start(req: &Request<Incoming>, q: &Query) -> Result<Response<Body>, Rejection> {
    let work_ms = q.required("work_ms")?;
    let mut hb = Heartbeat::default();
    if let Some(i) = q.interval("interval_ms")? {
        hb = Heartbeat::every(i);
    }
    if let Some(d) = q.optional("initial_delay_ms")? {
        hb = hb.after(Duration::from_millis(d));
    }
    let mut d = delayed(req, "start").json().heartbeat(hb);
    if let Some(t) = q.optional("timeout_ms")? {
        d = d.timeout(Duration::from_millis(t));
    }
    Ok(d.start(work(work_ms)).await)
}

async fn poll(req: &Request<Incoming>, q: &Query) -> Result<Response<Body>, Rejection> {
    let ready_after = Duration::from_millis(q.required("ready_after_ms")?);
    let interval = q.interval("interval_ms")?.unwrap_or(Duration::from_secs(1));
    let started = Instant::now();
    Ok(delayed(req, "poll")
        .json()
        .poll(interval, move || async move {
            let waited = started.elapsed();
            (waited >= ready_after)
                .then(|| Json(serde_json::json!({ "ready_after_ms": waited.as_millis() as u64 })))
        })
        .await)
}

struct Query(String);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn optional(&self, name: &str) -> Result<Option<u64>, Rejection> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        // Digits only: `u64::from_str` also takes a leading `+`.
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "{name} must be a whole number of milliseconds, got {raw:?}"
            )));
        }
        match raw.parse::<u64>() {
            Ok(v) if v <= MAX_MS => Ok(Some(v)),
            _ => Err(bad(format!("{name} must be at most {MAX_MS}"))),
        }
    }

    /// A heartbeat or poll interval: at least [`MIN_INTERVAL`].
    fn interval(&self, name: &str) -> Result<Option<Duration>, Rejection> {
        let Some(ms) = self.optional(name)? else {
            return Ok(None);
        };
        let interval = Duration::from_millis(ms);
        if interval < MIN_INTERVAL {
            return Err(bad(format!(
                "{name} must be at least {}",
                MIN_INTERVAL.as_millis()
            )));
        }
        Ok(Some(interval))
    }

    fn required(&self, name: &str) -> Result<u64, Rejection> {
        self.optional(name)?
            .ok_or_else(|| bad(format!("missing query parameter {name}")))
    }
}

fn bad(reason: String) -> Rejection {
    (StatusCode::BAD_REQUEST, reason)
}
