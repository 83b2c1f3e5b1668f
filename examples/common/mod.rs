//! Start-up shared by the example servers: logs on stderr, the command line
//! (`--addr`, `--tls-cert`/`--tls-key`, `--help`), and a server with a
//! listener that prints the address it bound.
//!
//! The first line an example prints on stdout is `listening on http://ADDR`
//! (`https://` with TLS) with the *bound* address (`--addr 127.0.0.1:0`
//! picks a free port); `tests/examples.rs`, `tests/tls.rs` and scripts read
//! it.

// Each example uses only some of these.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::IsTerminal;

use delayed_response::server::Server;
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

/// The TLS options of every example: `--tls-cert PATH --tls-key PATH`
/// (both or neither) serve HTTPS, with HTTP/2 by ALPN. They need the `tls`
/// feature; without it they are refused with a note on how to build.
#[derive(Debug, Default)]
pub(crate) struct Tls {
    cert: Option<String>,
    key: Option<String>,
}

/// The TLS options for a usage line (empty without the `tls` feature).
pub(crate) const TLS_USAGE: &str = if cfg!(feature = "tls") {
    " [--tls-cert PATH --tls-key PATH]"
} else {
    ""
};

/// The TLS options for `--help` (empty without the `tls` feature).
pub(crate) const TLS_OPTIONS: &str = if cfg!(feature = "tls") {
    "\n  --tls-cert PATH   serve HTTPS with this PEM certificate chain (with --tls-key)\
     \n  --tls-key PATH    the PEM private key of --tls-cert"
} else {
    ""
};

impl Tls {
    /// Takes `arg` if it is a TLS option (its value from `rest`): `Ok(true)`.
    /// Without the `tls` feature, a TLS option is an error that says how to
    /// build with it.
    pub(crate) fn take(
        &mut self,
        arg: &str,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let slot = match arg {
            "--tls-cert" => &mut self.cert,
            "--tls-key" => &mut self.key,
            _ => return Ok(false),
        };
        if !cfg!(feature = "tls") {
            return Err(format!(
                "{arg}: this build has no TLS; build with `--features tls` (or `--all-features`)"
            ));
        }
        *slot = Some(rest.next().ok_or_else(|| format!("{arg} needs a value"))?);
        Ok(true)
    }

    /// Checks that both files are given, or neither.
    pub(crate) fn check(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                Err("--tls-cert needs --tls-key (the certificate's private key)".into())
            }
            (None, Some(_)) => Err("--tls-key needs --tls-cert (the certificate chain)".into()),
            _ => Ok(()),
        }
    }

    /// Is HTTPS on?
    pub(crate) fn on(&self) -> bool {
        self.cert.is_some()
    }

    /// The server to serve with: HTTPS when asked. A certificate or key
    /// that cannot be loaded prints the reason and exits 1.
    pub(crate) fn server(&self, example: &str) -> Server {
        let server = Server::new();
        #[cfg(feature = "tls")]
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            return match delayed_response::server::load_tls_config(cert, key) {
                Ok(config) => server.tls(std::sync::Arc::new(config)),
                Err(e) => {
                    eprintln!("{example}: {e}");
                    std::process::exit(1);
                }
            };
        }
        let _ = example;
        server
    }
}

/// The command line of the simple examples.
pub(crate) struct Args {
    /// `--addr HOST:PORT`, default `127.0.0.1:9000`.
    pub(crate) addr: String,
    pub(crate) tls: Tls,
}

/// Reads the command line of the simple examples: `--addr HOST:PORT`
/// (default `127.0.0.1:9000`), the [`Tls`] options, and `--help` (or `-h`:
/// the usage and `about` on stdout, exit 0); anything else prints the usage
/// on stderr and exits 2.
pub(crate) fn args(example: &str, about: &str) -> Args {
    let usage = format!(
        "usage: {example} [--addr HOST:PORT]{TLS_USAGE}\n\n\
         options:\n  \
         --addr HOST:PORT  where to listen (default 127.0.0.1:9000; port 0 picks a free one)\
         {TLS_OPTIONS}\n  \
         -h, --help        print this help and exit"
    );
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9000".to_string();
    let mut tls = Tls::default();
    while let Some(arg) = args.next() {
        match tls.take(&arg, &mut args) {
            Ok(true) => continue,
            Ok(false) => {}
            Err(problem) => refuse(example, &problem, &usage),
        }
        match arg.as_str() {
            "-h" | "--help" => help(&usage, about),
            "--addr" => match args.next() {
                Some(value) => addr = value,
                None => refuse(example, "--addr needs a value", &usage),
            },
            other => refuse(example, &format!("unknown argument {other:?}"), &usage),
        }
    }
    if let Err(problem) = tls.check() {
        refuse(example, &problem, &usage);
    }
    Args { addr, tls }
}

/// Loads the TLS files if any (see [`Tls::server`]), binds `addr` and
/// prints `listening on http://ADDR` (`https://` with TLS) with the bound
/// address as the first line of stdout: the server and listener to serve
/// with. Exits 1 with the reason if any of it fails.
pub(crate) async fn start(
    example: &str,
    addr: impl ToSocketAddrs + Display,
    tls: &Tls,
) -> (Server, TcpListener) {
    // Before binding: a bad certificate must not look like a server up.
    let server = tls.server(example);
    let listener = listen(addr, tls.on()).await;
    (server, listener)
}

/// Binds `addr` (exits 1 with the reason if it cannot) and prints the bound
/// address as the first line of stdout (`https://` if `tls`).
pub(crate) async fn listen(addr: impl ToSocketAddrs + Display, tls: bool) -> TcpListener {
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let scheme = if tls { "https" } else { "http" };
    match listener.local_addr() {
        Ok(bound) => println!("listening on {scheme}://{bound}"),
        Err(e) => println!("listening on {scheme}://{addr} (bound address unknown: {e})"),
    }
    listener
}

/// Resolves on ctrl-c: the shutdown signal of the example servers.
pub(crate) async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
