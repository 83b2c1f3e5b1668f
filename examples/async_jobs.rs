//! Async request-reply: jobs answered with their result when they finish in
//! time, else `202 Accepted` + `Location` + `Retry-After`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example async_jobs -- [--addr 127.0.0.1:9000] [--redis redis://127.0.0.1:6379]
//! ```
//!
//! With `--redis URL` (feature `redis`) the jobs are shared through Redis:
//! several `async_jobs` on one Redis answer each other's status URLs, a
//! `DELETE` on any of them cancels the job where it runs, and a job whose
//! instance died answers `500` (`job lost`) instead of `202` for ever.
//!
//! ```text
//! cargo run --features redis --example async_jobs -- --addr 127.0.0.1:9000 --redis redis://127.0.0.1:6379
//! cargo run --features redis --example async_jobs -- --addr 127.0.0.1:9001 --redis redis://127.0.0.1:6379
//! curl -i -X POST 'http://127.0.0.1:9000/jobs?work_ms=5000&deadline_ms=500' # 202, Location: /jobs/…
//! curl -i -H 'Prefer: wait=10' http://127.0.0.1:9001/jobs/<id>              # the result, from the other one
//! ```
//!
//! and try:
//!
//! ```text
//! curl -i -X POST 'http://127.0.0.1:9000/jobs?work_ms=300'                  # 200 {"slept_ms":300}
//! curl -i -X POST 'http://127.0.0.1:9000/jobs?work_ms=5000&deadline_ms=500' # 202, Location: /jobs/…
//! curl -i -H 'Prefer: wait=10' http://127.0.0.1:9000/jobs/<id>              # long-polls for the result
//! curl -i -X DELETE http://127.0.0.1:9000/jobs/<id>                         # 204: cancelled
//! curl -i -X POST -H 'Prefer: respond-async' 'http://127.0.0.1:9000/jobs?work_ms=100'
//! ```
//!
//! Each client (by its address) may have 100 jobs running at once; the next
//! one gets `429 Too Many Requests` with `Retry-After`, while other clients
//! go on parking. Results are kept up to 64 MiB in all, 16 MiB per client.

use std::convert::Infallible;
use std::time::Duration;

use delayed_response::limit::ClientKey;
use delayed_response::park::{self, Store};
use delayed_response::{Body, DelayedResponse, Json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;

mod common;

const ABOUT: &str = "\
Async request-reply: POST /jobs answers with the result when the job ends
within its deadline, else 202 Accepted + Location + Retry-After.

try:
  curl -i -X POST 'http://127.0.0.1:9000/jobs?work_ms=300'                   # 200
  curl -i -X POST 'http://127.0.0.1:9000/jobs?work_ms=5000&deadline_ms=500'  # 202, Location: /jobs/ID
  curl -i -H 'Prefer: wait=10' http://127.0.0.1:9000/jobs/ID                 # long-polls for the result
  curl -i -X DELETE http://127.0.0.1:9000/jobs/ID                            # 204: cancelled

With --redis URL (feature redis), several instances on one Redis share their jobs.";

const MAX_MS: u64 = 3_600_000;

#[tokio::main]
async fn main() {
    let args = args();
    common::init_tracing();
    let builder = Store::builder().base_path("/jobs/");
    let store = match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => match delayed_response::backplane::RedisBackplane::connect(url).await {
            Ok(backplane) => builder.backplane(std::sync::Arc::new(backplane)).build(),
            Err(e) => {
                eprintln!("async_jobs: redis at {url}: {e}");
                std::process::exit(1);
            }
        },
        _ => builder.build(),
    };
    // After Redis answered: "listening on" means ready.
    let (server, listener) = common::start("async_jobs", &args.addr, &args.tls).await;
    let status = park::Service::new(store.clone());
    let service = service_fn(move |req: Request<Incoming>| {
        let store = store.clone();
        let status = status.clone();
        async move {
            let res = if req.uri().path().starts_with("/jobs/") {
                let Ok(res) = status.respond(req).await;
                res
            } else if req.uri().path() == "/jobs" && req.method() == Method::POST {
                create(req, store).await
            } else if req.uri().path() == "/jobs" {
                text(StatusCode::METHOD_NOT_ALLOWED, "use POST /jobs\n")
            } else {
                text(StatusCode::NOT_FOUND, "not found: POST /jobs?work_ms=N\n")
            };
            Ok::<_, Infallible>(res)
        }
    });
    if let Err(e) = server.serve(listener, service, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

struct Args {
    addr: String,
    tls: common::Tls,
    redis: Option<String>,
}

/// `--addr`, the TLS options, `--redis URL` and `--help`.
fn args() -> Args {
    let usage = format!(
        "usage: async_jobs [--addr HOST:PORT] [--redis URL]{}\n\n\
         options:\n  \
         --addr HOST:PORT  where to listen (default 127.0.0.1:9000; port 0 picks a free one)\n  \
         --redis URL       share the jobs with other instances through Redis (feature redis){}\n  \
         -h, --help        print this help and exit",
        common::TLS_USAGE,
        common::TLS_OPTIONS,
    );
    let mut out = Args {
        addr: "127.0.0.1:9000".to_string(),
        tls: common::Tls::default(),
        redis: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match out.tls.take(&arg, &mut args) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(problem) => common::refuse("async_jobs", &problem, &usage),
        }
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                common::refuse("async_jobs", &format!("{name} needs a value"), &usage)
            })
        };
        match arg.as_str() {
            "-h" | "--help" => common::help(&usage, ABOUT),
            "--addr" => out.addr = value("--addr"),
            "--redis" if cfg!(feature = "redis") => out.redis = Some(value("--redis")),
            "--redis" => common::refuse(
                "async_jobs",
                "--redis needs the feature redis (--features redis)",
                &usage,
            ),
            other => common::refuse("async_jobs", &format!("unknown argument {other:?}"), &usage),
        }
    }
    if let Err(problem) = out.tls.check() {
        common::refuse("async_jobs", &problem, &usage);
    }
    out
}

async fn create(req: Request<Incoming>, store: Store) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let work_ms = match number(&query, "work_ms") {
        Ok(Some(n)) => n,
        Ok(None) => return text(StatusCode::BAD_REQUEST, "missing query parameter work_ms\n"),
        Err(reason) => return text(StatusCode::BAD_REQUEST, &reason),
    };
    let deadline_ms = match number(&query, "deadline_ms") {
        Ok(n) => n.unwrap_or(1000),
        Err(reason) => return text(StatusCode::BAD_REQUEST, &reason),
    };
    // The peer address that `server::serve` records; behind a proxy, put a
    // `ClientKey` of your own in the request's extensions.
    let client = ClientKey::from_extensions(req.extensions());
    DelayedResponse::for_request(&req)
        .timeout(Duration::from_millis(deadline_ms))
        .park(store, client)
        .on_outcome(move |outcome| tracing::info!(work_ms, %outcome, "job request answered"))
        .wait(async move {
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
            tracing::info!(work_ms, "job finished");
            Json(serde_json::json!({ "slept_ms": work_ms }))
        })
        .await
}

fn number(query: &str, name: &str) -> Result<Option<u64>, String> {
    let Some(raw) = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    // Digits only: `u64::from_str` also takes a leading `+`.
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name} must be a whole number of milliseconds, got {raw:?}\n"
        ));
    }
    match raw.parse::<u64>() {
        Ok(v) if v <= MAX_MS => Ok(Some(v)),
        _ => Err(format!("{name} must be at most {MAX_MS}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res
}
