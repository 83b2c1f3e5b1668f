//! Start-up shared by the example servers: logs on stderr, the `--addr`
//! argument, and a listener that prints the address it bound.
//!
//! The first line an example prints on stdout is `listening on http://ADDR`
//! with the *bound* address (`--addr 127.0.0.1:0` picks a free port);
//! `tests/examples.rs` and scripts read it.

// Each example uses only some of these.
#![allow(dead_code)]

use std::fmt::Display;

use tokio::net::{TcpListener, ToSocketAddrs};

/// Logs to stderr through `tracing`, at INFO unless `RUST_LOG` says otherwise.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Reads the only argument of the simple examples, `--addr HOST:PORT`
/// (default `127.0.0.1:9000`); anything else prints the usage and exits 2.
pub(crate) fn addr_arg(example: &str) -> String {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9000".to_string();
    while let Some(arg) = args.next() {
        let problem = match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => {
                addr = value;
                continue;
            }
            ("--addr", None) => "--addr needs a value".to_string(),
            (other, _) => format!("unknown argument {other:?}"),
        };
        eprintln!("{example}: {problem}\nusage: {example} [--addr HOST:PORT]");
        std::process::exit(2);
    }
    addr
}

/// Binds `addr` (exits 1 with the reason if it cannot) and prints the bound
/// address as the first line of stdout.
pub(crate) async fn listen(addr: impl ToSocketAddrs + Display) -> TcpListener {
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on http://{bound}"),
        Err(e) => println!("listening on http://{addr} (bound address unknown: {e})"),
    }
    listener
}

/// Resolves on ctrl-c: the shutdown signal of the example servers.
pub(crate) async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
