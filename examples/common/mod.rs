//! Start-up shared by the example servers: logs on stderr, the command line
//! (`--addr`, `--help`), and a listener that prints the address it bound.
//!
//! The first line an example prints on stdout is `listening on http://ADDR`
//! with the *bound* address (`--addr 127.0.0.1:0` picks a free port);
//! `tests/examples.rs` and scripts read it.

// Each example uses only some of these.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::IsTerminal;

use tokio::net::{TcpListener, ToSocketAddrs};

/// Logs to stderr through `tracing`, at INFO unless `RUST_LOG` says
/// otherwise. Colours only when stderr is a terminal (and `NO_COLOR` is not
/// set), so a log redirected to a file or a pipe stays plain text.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        // A log line that cannot be written (stderr piped into a reader that
        // has gone, such as `| head`) is lost; by default tracing would
        // report it with `eprintln!`, which panics on that same stderr, in
        // the middle of answering a request.
        .log_internal_errors(false)
        .init();
}

/// Colour codes only for a person at a terminal: never in a file or a pipe,
/// never with `NO_COLOR` set (<https://no-color.org>).
pub(crate) fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints `usage` and `about` (what the example does, how to try it) on
/// stdout and exits 0: the answer to `--help`.
pub(crate) fn help(usage: &str, about: &str) -> ! {
    println!("{usage}\n\n{}", about.trim());
    std::process::exit(0);
}

/// Prints `problem` and `usage` on stderr and exits 2: the answer to a bad
/// command line.
pub(crate) fn refuse(example: &str, problem: &str, usage: &str) -> ! {
    eprintln!("{example}: {problem}\n{usage}\n(--help says more)");
    std::process::exit(2);
}

/// Reads the command line of the simple examples: `--addr HOST:PORT`
/// (default `127.0.0.1:9000`) and `--help` (or `-h`: the usage and `about`
/// on stdout, exit 0); anything else prints the usage on stderr and exits 2.
pub(crate) fn addr_arg(example: &str, about: &str) -> String {
    let usage = format!(
        "usage: {example} [--addr HOST:PORT]\n\n\
         options:\n  \
         --addr HOST:PORT  where to listen (default 127.0.0.1:9000; port 0 picks a free one)\n  \
         -h, --help        print this help and exit"
    );
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9000".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => help(&usage, about),
            "--addr" => match args.next() {
                Some(value) => addr = value,
                None => refuse(example, "--addr needs a value", &usage),
            },
            other => refuse(example, &format!("unknown argument {other:?}"), &usage),
        }
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
