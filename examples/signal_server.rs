//! An SSE signalling server (koa-signal's protocol) at `/`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example signal_server -- [--addr 127.0.0.1:9000]
//! ```
//!
//! With `--redis URL` (feature `redis`) the swarms live in Redis: several
//! `signal_server`s on one Redis serve the same swarms (create on one, join
//! on another):
//!
//! ```text
//! cargo run --features redis --example signal_server -- --addr 127.0.0.1:9000 --redis redis://127.0.0.1:6379
//! cargo run --features redis --example signal_server -- --addr 127.0.0.1:9001 --redis redis://127.0.0.1:6379
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

use common::{help, refuse, Tls, TLS_OPTIONS, TLS_USAGE};

mod common;

const ABOUT: &str = "\
An SSE signalling server (koa-signal's protocol) at /: browsers find each
other in swarms and exchange signals over Server-Sent Events.

try, in three terminals (-N: show each event as it arrives):
  curl -N http://127.0.0.1:9000/                    # 201, event: connect {id, cid, token}
  curl -N http://127.0.0.1:9000/ID                  # 200, joins; the first stream gets event: join
  curl -d token=TOKEN -d data=hello http://127.0.0.1:9000/ID   # both streams get event: signal

several instances, one Redis (feature redis): start two with --redis URL and
--addr 127.0.0.1:9000 / 127.0.0.1:9001; create on one, join on the other.

RUST_LOG=delayed_response::signal=debug shows swarms and peers coming and going.";

/// The command line: `common::args`' options, `--redis URL` and
/// `--redis-lease-ms MS`.
struct Args {
    addr: String,
    tls: Tls,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: Option<String>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    lease_ms: u64,
}

fn args() -> Args {
    let usage = format!(
        "usage: signal_server [--addr HOST:PORT] [--redis URL [--redis-lease-ms MS]]{TLS_USAGE}\n\n\
         options:\n  \
         --addr HOST:PORT  where to listen (default 127.0.0.1:9000; port 0 picks a free one)\n  \
         --redis URL       keep the swarms in Redis (redis://HOST:PORT), shared by every\n                    \
         signal_server on it (feature redis)\n  \
         --redis-lease-ms MS\n                    \
         how soon the others notice that an instance died (default 15000)\
         {TLS_OPTIONS}\n  \
         -h, --help        print this help and exit"
    );
    let fail = |problem: &str| -> ! { refuse("signal_server", problem, &usage) };
    let mut out = Args {
        addr: "127.0.0.1:9000".to_string(),
        tls: Tls::default(),
        redis: None,
        lease_ms: 15_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match out.tls.take(&arg, &mut args) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(problem) => fail(&problem),
        }
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => help(&usage, ABOUT),
            "--addr" => out.addr = value("--addr"),
            "--redis" if cfg!(feature = "redis") => out.redis = Some(value("--redis")),
            "--redis" => fail("--redis needs the feature redis (--features redis)"),
            "--redis-lease-ms" => {
                out.lease_ms = value("--redis-lease-ms")
                    .parse()
                    .unwrap_or_else(|_| fail("--redis-lease-ms takes a number of milliseconds"))
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    if let Err(problem) = out.tls.check() {
        fail(&problem);
    }
    out
}

#[tokio::main]
async fn main() {
    let args = args();
    common::init_tracing();
    // Per client (here its address; behind a proxy, put a
    // `delayed_response::limit::ClientKey` in each request's extensions):
    // at most 64 open streams and 16 open swarms, then 429 + Retry-After.
    // With several instances these caps are per instance.
    #[allow(unused_mut)]
    let mut builder = signal::Service::builder()
        .keep_alive(Duration::from_secs(15))
        .max_peers_per_client(signal::DEFAULT_MAX_PEERS_PER_CLIENT)
        .max_swarms_per_client(signal::DEFAULT_MAX_SWARMS_PER_CLIENT);
    #[cfg(feature = "redis")]
    if let Some(url) = &args.redis {
        let backplane = delayed_response::backplane::RedisBackplane::builder(url)
            .lease(Duration::from_millis(args.lease_ms))
            .connect();
        match backplane.await {
            Ok(backplane) => builder = builder.backplane(std::sync::Arc::new(backplane)),
            Err(e) => {
                eprintln!("signal_server: redis at {url}: {e}");
                std::process::exit(1);
            }
        }
    }
    let signal = builder.build();
    let (server, listener) = common::start("signal_server", &args.addr, &args.tls).await;
    if let Err(e) = server.serve(listener, signal, common::ctrl_c()).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
