//! An SSE signalling server (koa-signal's protocol) at `/`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example signal_server -- [--addr 127.0.0.1:9000]
//! ```
//!
//! and try (the walk-through in `docs/signal.md` explains each step):
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

use delayed_response::{server, signal::Signal};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("{msg}\nusage: signal_server [--addr HOST:PORT]");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    // The bound address (a port of 0 picks a free one), on stdout for
    // scripts and tests.
    match listener.local_addr() {
        Ok(bound) => println!("listening on http://{bound}"),
        Err(e) => eprintln!("listening (address unknown: {e})"),
    }
    let signal = Signal::builder()
        .keep_alive(Duration::from_secs(15))
        .build();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    if let Err(e) = server::serve(listener, signal, shutdown).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut addr = "127.0.0.1:9000".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(addr)
}
