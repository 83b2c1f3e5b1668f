//! `DelayedResponse` inside axum handlers.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example axum -- [--addr 127.0.0.1:9000]
//! ```
//!
//! and try:
//!
//! ```text
//! curl -i http://127.0.0.1:9000/report        # 200 if ready within 2 s, else 202
//! curl -iN http://127.0.0.1:9000/export       # long-poll: heartbeats, then the result
//! ```

use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use delayed_response::{DelayedResponse, Heartbeat, Json};
use hyper::body::Incoming;
use tower_service::Service as _;

mod common;

const ABOUT: &str = "\
DelayedResponse inside axum handlers.

try:
  curl -i  http://127.0.0.1:9000/report   # 200 if ready within 2 s, else 202
  curl -iN http://127.0.0.1:9000/export   # long-poll: heartbeats, then the result";

async fn report() -> impl IntoResponse {
    DelayedResponse::new()
        .timeout(Duration::from_secs(2))
        .wait(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Json(serde_json::json!({ "report": "ready" }))
        })
        .await
}

async fn export(req: Request) -> impl IntoResponse {
    // `for_request` picks up delayed_response's shutdown signal when served
    // by `delayed_response::server` (as here); under `axum::serve` there is
    // none and that is fine.
    DelayedResponse::for_request(&req)
        .json()
        .heartbeat(Heartbeat::every(Duration::from_secs(1)).after(Duration::from_millis(200)))
        .start(async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(serde_json::json!({ "rows": 42 }))
        })
        .await
}

fn app() -> Router {
    Router::new()
        .route("/report", get(report))
        .route("/export", get(export))
}

#[tokio::main]
async fn main() {
    let args = common::args("axum", ABOUT);
    common::init_tracing();
    let (server, listener) = common::start("axum", &args.addr, &args.tls).await;
    // `axum::serve(listener, app())` serves it too; `delayed_response::server`
    // adds TLS (`--tls-cert`/`--tls-key`), the header read and idle timeouts,
    // and a shutdown that also ends the held responses.
    let app = app();
    let service =
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| app.clone().call(req));
    if let Err(e) = server.serve(listener, service, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
