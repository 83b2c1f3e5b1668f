//! An SSE signalling server (koa-signal's protocol) at `/`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example signal_server -- [--addr 127.0.0.1:9000]
//! ```
//!
//! and try (the README's "Walk-through with curl" explains each step):
//!
//! ```text
//! curl -N http://127.0.0.1:9000/                    # 201, event: connect {id, cid, token}
//! curl -N http://127.0.0.1:9000/ID                  # 200, joins; the first stream gets event: join
//! curl -d token=TOKEN -d data=hello http://127.0.0.1:9000/ID   # both streams get event: signal
//! ```
//!
//! Logs go to stderr; `RUST_LOG=delayed_response::signal=debug` shows swarms
//! and peers coming and going.

use std::time::Duration;

use delayed_response::signal;

mod common;

const ABOUT: &str = "\
An SSE signalling server (koa-signal's protocol) at /: browsers find each
other in swarms and exchange signals over Server-Sent Events.

try, in three terminals (-N: show each event as it arrives):
  curl -N http://127.0.0.1:9000/                    # 201, event: connect {id, cid, token}
  curl -N http://127.0.0.1:9000/ID                  # 200, joins; the first stream gets event: join
  curl -d token=TOKEN -d data=hello http://127.0.0.1:9000/ID   # both streams get event: signal

RUST_LOG=delayed_response::signal=debug shows swarms and peers coming and going.";

#[tokio::main]
async fn main() {
    let args = common::args("signal_server", ABOUT);
    common::init_tracing();
    let (server, listener) = common::start("signal_server", &args.addr, &args.tls).await;
    // Per client (here its address; behind a proxy, put a
    // `delayed_response::limit::ClientKey` in each request's extensions):
    // at most 64 open streams and 16 open swarms, then 429 + Retry-After.
    let signal = signal::Service::builder()
        .keep_alive(Duration::from_secs(15))
        .max_peers_per_client(signal::DEFAULT_MAX_PEERS_PER_CLIENT)
        .max_swarms_per_client(signal::DEFAULT_MAX_SWARMS_PER_CLIENT)
        .build();
    if let Err(e) = server.serve(listener, signal, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
