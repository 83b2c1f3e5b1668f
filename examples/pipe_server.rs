//! The ephemeral pipe server: an upload is streamed into a later download.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example pipe_server -- --addr 127.0.0.1:9000
//! ```
//!
//! Then, on one side, `curl -T file http://127.0.0.1:9000/` (it prints the
//! download URL and waits), and on the other `curl -o file <URL>`.
//!
//! With `--protocol piping` it speaks Piping Server's protocol instead, for
//! Piping's clients and scripts: `curl -T file http://127.0.0.1:9000/mypath`
//! and `curl http://127.0.0.1:9000/mypath > file`, in either order; the page
//! at `http://127.0.0.1:9000/` sends from a browser.
//!
//! Options: `--addr HOST:PORT` (default 127.0.0.1:9000), `--ttl SECS` (600),
//! `--max-upload-bytes N` (1 GiB, 0 = no limit), `--reservations`,
//! `--required-referer URL`, `--heartbeat-secs SECS` (15),
//! `--max-waiting N` (10000), `--max-waiting-per-client N` (100),
//! `--max-reservations-per-client N` (100), `--protocol ephemeral|piping`
//! (ephemeral), `--max-receivers N` (64, Piping's largest `?n=`),
//! `--no-page` (no web page at `/`), `--http1-only` (refuses h2c),
//! `--tls-cert PATH --tls-key PATH` (HTTPS, with the `tls` feature; the
//! README says how to make a test certificate), `--redis URL --advertise URL`
//! (feature `redis`: several instances, one pipe). Logging:
//! `RUST_LOG=delayed_response=debug`.
//!
//! Two instances and one Redis (`--features redis`): the upload waits on one,
//! the download streams through the other.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run --features redis --example pipe_server -- --addr 127.0.0.1:9001 \
//!     --redis redis://127.0.0.1:6379 --advertise http://127.0.0.1:9001 &
//! cargo run --features redis --example pipe_server -- --addr 127.0.0.1:9002 \
//!     --redis redis://127.0.0.1:6379 --advertise http://127.0.0.1:9002 &
//! curl -N -T file http://127.0.0.1:9001/    # prints http://127.0.0.1:9001/ID
//! curl -o copy http://127.0.0.1:9002/ID     # the same ID, on the other one
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use delayed_response::pipe::{self, Cut, DefaultHooks, Hooks, Socket, Stats};
use delayed_response::Heartbeat;

mod common;

const USAGE: &str = "usage: pipe_server [--addr HOST:PORT] [--ttl SECS] [--max-upload-bytes N] \
[--reservations] [--required-referer URL] [--heartbeat-secs SECS] [--max-waiting N] \
[--max-waiting-per-client N] [--max-reservations-per-client N] [--protocol ephemeral|piping] \
[--max-receivers N] [--no-page] [--http1-only] [--redis URL --advertise URL]";

/// [`USAGE`] with the TLS options of this build.
fn usage() -> String {
    format!("{USAGE}{}", common::TLS_USAGE)
}

struct Args {
    addr: SocketAddr,
    pipe: delayed_response::pipe::Builder,
    http1_only: bool,
    tls: common::Tls,
    redis: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut addr: SocketAddr = ([127, 0, 0, 1], 9000).into();
    let mut pipe = pipe::Service::builder().hooks(Logged);
    let mut http1_only = false;
    let mut tls = common::Tls::default();
    let mut redis = None;
    let mut advertise = None;
    while let Some(arg) = args.next() {
        if tls.take(&arg, &mut args)? {
            continue;
        }
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => {
                addr = value("--addr")?
                    .parse()
                    .map_err(|e| format!("--addr: {e}"))?
            }
            "--ttl" => pipe = pipe.ttl(Duration::from_secs(number(&value("--ttl")?, "--ttl")?)),
            "--max-upload-bytes" => {
                pipe = pipe
                    .max_upload_bytes(number(&value("--max-upload-bytes")?, "--max-upload-bytes")?)
            }
            "--max-waiting" => {
                pipe = pipe.max_waiting(number(&value("--max-waiting")?, "--max-waiting")? as usize)
            }
            "--max-waiting-per-client" => {
                let n = number(
                    &value("--max-waiting-per-client")?,
                    "--max-waiting-per-client",
                )?;
                pipe = pipe.max_waiting_per_client(n as usize)
            }
            "--max-reservations-per-client" => {
                let name = "--max-reservations-per-client";
                pipe = pipe.max_reservations_per_client(number(&value(name)?, name)? as usize)
            }
            "--heartbeat-secs" => {
                let secs = number(&value("--heartbeat-secs")?, "--heartbeat-secs")?;
                pipe = pipe.heartbeat(Heartbeat::every(Duration::from_secs(secs.max(1))))
            }
            "--reservations" => pipe = pipe.reservations(true),
            "--protocol" => {
                pipe = pipe.protocol(match value("--protocol")?.as_str() {
                    "ephemeral" => pipe::Protocol::Ephemeral,
                    "piping" => pipe::Protocol::Piping,
                    other => return Err(format!("--protocol: ephemeral or piping, not {other:?}")),
                })
            }
            "--max-receivers" => {
                let n = number(&value("--max-receivers")?, "--max-receivers")?;
                pipe = pipe.max_receivers(u32::try_from(n).unwrap_or(u32::MAX))
            }
            "--no-page" => pipe = pipe.page(false),
            "--http1-only" => http1_only = true,
            "--required-referer" => pipe = pipe.required_referer(value("--required-referer")?),
            "--redis" if cfg!(feature = "redis") => redis = Some(value("--redis")?),
            "--advertise" if cfg!(feature = "redis") => advertise = Some(value("--advertise")?),
            "--redis" | "--advertise" => {
                return Err(format!("{arg} needs the feature redis (--features redis)"))
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    tls.check()?;
    #[cfg(feature = "redis")]
    if let Some(url) = advertise {
        if redis.is_none() {
            return Err("--advertise needs --redis".into());
        }
        // The builder panics on a URL it cannot use: say it here instead.
        let ok = url.parse::<http::Uri>().is_ok_and(|u| {
            u.scheme_str() == Some("http")
                && u.host().is_some()
                && u.query().is_none()
                && !url.contains(['@', '#'])
        });
        if !ok {
            return Err(format!("--advertise: an http://host:port URL, not {url:?}"));
        }
        pipe = pipe.advertise(url);
    }
    #[cfg(not(feature = "redis"))]
    let _ = advertise;
    Ok(Args {
        addr,
        pipe,
        http1_only,
        tls,
        redis,
    })
}

/// The default answers, plus one log line per event.
struct Logged;

impl Hooks for Logged {
    fn opened(&self, socket: &Socket) -> Bytes {
        tracing::info!(id = %socket.id, file = ?socket.filename, "opened");
        DefaultHooks.opened(socket)
    }

    fn connected(&self, socket: &Socket) {
        tracing::info!(id = %socket.id, "receiver connected");
    }

    fn end(&self, socket: &Socket, stats: &Stats) -> Bytes {
        tracing::info!(id = %socket.id, bytes = stats.bytes, secs = stats.elapsed.as_secs_f64(), "done");
        DefaultHooks.end(socket, stats)
    }

    fn cut(&self, socket: &Socket, stats: &Stats, cut: Cut) -> Bytes {
        tracing::info!(id = %socket.id, bytes = stats.bytes, ?cut, "cut");
        DefaultHooks.cut(socket, stats, cut)
    }

    fn timeout(&self, socket: &Socket, ttl: Duration) -> Bytes {
        tracing::info!(id = %socket.id, "timed out");
        DefaultHooks.timeout(socket, ttl)
    }
}

fn number(s: &str, name: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{name}: not a number: {s:?}"))
}

const ABOUT: &str = "\
The ephemeral pipe: an upload is held open and streamed into a later
download; nothing is stored.

try, in two terminals:
  curl -T report.tar http://127.0.0.1:9000/   # prints the download URL at once, then waits
  curl -o report.tar URL                      # streams it; the sender then prints \"done: ...\"

When the sender's output goes to a pipe or a file, add -N (curl -N -T ...):
curl buffers its output there, and the URL would only show at the end.

With --protocol piping it speaks Piping Server's protocol: any path is a pipe,
either side may come first, ?n=N receivers each get every byte:
  curl -T report.tar http://127.0.0.1:9000/mypath
  curl http://127.0.0.1:9000/mypath > report.tar
The page at http://127.0.0.1:9000/ sends and receives from a browser.";

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        // `--help`: the usage and how to try it, on stdout, exit 0.
        Err(msg) if msg.is_empty() => common::help(&usage(), ABOUT),
        Err(msg) => common::refuse("pipe_server", &msg, &usage()),
    };
    common::init_tracing();
    let (server, listener) = common::start("pipe_server", args.addr, &args.tls).await;
    let pipe = match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => match delayed_response::backplane::RedisBackplane::connect(url).await {
            Ok(redis) => args.pipe.backplane(std::sync::Arc::new(redis)),
            Err(e) => {
                eprintln!("pipe_server: redis at {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => args.pipe,
    };
    let pipe = pipe.build();
    let result = server
        .http1_only(args.http1_only)
        .serve(listener, pipe, common::ctrl_c())
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipe_server: {e}");
            ExitCode::FAILURE
        }
    }
}
