//! Load test of held responses: the memory and CPU a server spends holding
//! 10,000 long-poll responses with a 1 s heartbeat, against a bare hyper
//! server holding 10,000 pending requests.
//!
//! (Over 500 lines: every server mode sits beside the client that measures
//! it, and the modes share the client; `load/src/measure.rs` and
//! `load/src/callgrind.rs` hold what other harnesses can use.)
//!
//! ```text
//! ulimit -n 20000        # each process needs --conns + a few descriptors
//! cargo run --release -p load --bin load_held                   # all modes, ~100 s
//! cargo run --release -p load --bin load_held -- client --conns 10000 --secs 20 --runs 3 --modes bare,held,axum
//! cargo run --release -p load --bin load_held -- callgrind       # instructions per heartbeat
//! cargo run --release -p load --bin load_held -- server --mode held --addr 127.0.0.1:8080
//! curl -sN http://127.0.0.1:8080/                               # a space every second
//! ```
//!
//! The harness (`client`, the default) runs one child process per mode,
//! `server --mode MODE --addr 127.0.0.1:0`, so that the RSS and CPU it reads
//! (`load::measure`: `VmRSS` of `/proc/<pid>/status`, `utime` + `stime` of
//! `/proc/<pid>/stat`) are the server's alone. The modes:
//!
//! - `bare`: a hyper `service_fn` whose handler awaits `std::future::pending()`:
//!   hyper holds the request, nothing is written;
//! - `held`: `DelayedResponse::for_request(&req).heartbeat(Heartbeat::every(1 s))
//!   .start(std::future::pending::<()>())`: a 202 head after 1 s, then a space
//!   every second;
//! - `held-shared`: `held` with the builder made once and cloned per
//!   request (`.with_request(&req)`), so that no response copies settings;
//! - `axum`: axum's `Sse` with a 1 s `KeepAlive` over a stream that never
//!   yields: a `200` head at once, then the `:\n\n` comment every second
//!   (axum 0.8, served through the same `server::serve` as `held`, so that
//!   only the response differs);
//! - `hyper`: plain hyper, no `server::serve`: an accept loop that hands each
//!   socket to `hyper::server::conn::http1`, whose handler awaits
//!   `std::future::pending()` (the floor of a held HTTP/1.1 connection);
//! - `beat`: the hand-written baseline for the heartbeat CPU: a bare hyper
//!   handler returning a body that writes a space every second from its own
//!   `tokio::time::Sleep` (what one would write without this crate);
//! - `beat-tick`: `beat` with one tick shared by all bodies (a `Notify` that
//!   one interval task fires every second) instead of a timer per body: what
//!   the coalesced design would change, on real sockets;
//! - `raw`: the floor, no hyper: a tokio task per connection that reads the
//!   request head, writes a chunked head, then the 6 bytes of a heartbeat
//!   chunk every second;
//! - `timers` and `tick`: the heartbeat timers alone, no sockets: `--conns`
//!   tasks that each wake once a second, from their own `Sleep` (as `held`
//!   does today, phases spread over a second) or from one shared interval
//!   whose tick wakes them all (through a `watch` channel).
//!
//! For each mode it reads the server's idle RSS, opens `--conns` loopback
//! connections (at most 256 connecting at a time) that each send one GET and
//! then read (and count) whatever comes back, waits until the server has seen
//! every request (the timer modes start their tasks when told `go` on stdin,
//! after the idle RSS is read), lets it settle for 2 s, then samples RSS and
//! CPU over `--secs` seconds (8 by default).
//!
//! `load_held callgrind` counts instructions instead of CPU time, which does
//! not depend on what else the machine runs: it starts each mode's server
//! under `valgrind --tool=callgrind`, opens `--conns` connections (500 by
//! default), lets the first heartbeats go out, zeroes the counters
//! (`callgrind_control -z`), waits `--secs` seconds (10), dumps them
//! (`callgrind_control -d`) and divides the server's user-space instructions
//! by the heartbeats the clients received meanwhile. The dumps stay in
//! `--out` (`target/callgrind`) for `callgrind_annotate`. The client reads every
//! heartbeat, so socket buffers never fill. The child is killed at the end
//! (and exits by itself when its stdin closes or after `--max-secs`, 120 by
//! default).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use bytes::Bytes;
use delayed_response::{server, DelayedResponse, Heartbeat};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use load::callgrind::{Callgrind, Dump};
use load::measure::{self, Process};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::{sleep, timeout, Sleep};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BEAT: Duration = Duration::from_secs(1);

const USAGE: &str = "usage: load_held [client] [--conns N] [--secs S] [--modes M,M,...]
       load_held callgrind [--conns N] [--secs S] [--modes M,M,...] [--out DIR]
       load_held server [--mode MODE] [--addr HOST:PORT] [--tasks N] [--max-secs S]

  client (the default) runs one child `server` per mode and measures it:
  --conns N     held requests (or timer tasks) per mode (10000, at most 20000)
  --secs S      seconds over which CPU is sampled (8)
  --runs N      runs of every mode, in turn; medians at the end (1)
  --modes       any of hyper,bare,held,held-shared,axum,beat,beat-tick,raw,timers,tick (all)

  callgrind runs each mode's server under valgrind and counts its
  instructions per heartbeat (needs valgrind; the modes with heartbeats):
  --conns N     held requests per mode (500)
  --secs S      seconds over which instructions are counted (10)
  --modes       any of held,held-shared,axum,beat,beat-tick,raw (held,axum,beat)
  --out DIR     where the dumps go (target/callgrind)";

/// The modes of `client` when `--modes` is not given.
const ALL_MODES: &str = "hyper,bare,held,held-shared,axum,beat,beat-tick,raw,timers,tick";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("server") => rt.block_on(run_server(&args[1..])),
        Some("client") => rt.block_on(run_client(&args[1..])),
        Some("callgrind") => rt.block_on(run_callgrind(&args[1..])),
        None => rt.block_on(run_client(&[])),
        Some(other) if other.starts_with("--") => rt.block_on(run_client(&args)),
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

/// The value after `--name` in `args`, if any.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

// ---------------------------------------------------------------- server ----

/// A body that writes a space every second from its own timer: the baseline
/// a hyper user would write by hand.
struct BeatBody {
    sleep: Pin<Box<Sleep>>,
}

impl http_body::Body for BeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        ready!(self.sleep.as_mut().poll(cx));
        let next = self.sleep.deadline() + BEAT;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

/// The same body as [`BeatBody`], woken by a tick shared by all bodies
/// (the coalesced design) instead of a timer of its own.
struct TickBody {
    tick: Arc<Notify>,
    notified: Pin<Box<OwnedNotified>>,
}

impl http_body::Body for TickBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        ready!(self.notified.as_mut().poll(cx));
        // A `Notified` hears every `notify_waiters` from its creation on, so
        // no tick is lost between this one and the next poll.
        let next = self.tick.clone().notified_owned();
        self.notified.set(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

/// The floor: no hyper, just tokio. Reads a request head, writes a chunked
/// 200 head, then the same 6 bytes a heartbeat puts on the wire
/// (`1\r\n \r\n`) every second from a timer per connection.
async fn serve_raw(
    listener: TcpListener,
    received: Arc<AtomicUsize>,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) {
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            () = &mut stop => return,
        };
        let _ = tcp.set_nodelay(true);
        let received = received.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            let mut head = Vec::with_capacity(128);
            let mut buf = [0u8; 128];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) if head.len() + n > 8192 => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            drop(head);
            received.fetch_add(1, Ordering::Relaxed);
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if tcp.write_all(head).await.is_err() {
                return;
            }
            let mut next = tokio::time::Instant::now() + BEAT;
            loop {
                tokio::time::sleep_until(next).await;
                next += BEAT;
                if tcp.write_all(b"1\r\n \r\n").await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn run_server(args: &[String]) -> Result<()> {
    let mode = flag(args, "--mode").unwrap_or("held").to_owned();
    let addr = flag(args, "--addr").unwrap_or("127.0.0.1:0");
    let max_secs: u64 = flag(args, "--max-secs").unwrap_or("120").parse()?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err("this load test serves on loopback only".into());
    }
    let received = Arc::new(AtomicUsize::new(0));

    // The harness writes `go` on our stdin once it has read the idle RSS
    // (the timer modes start their tasks then), and closes it to stop us.
    let (go_tx, go) = oneshot::channel::<()>();
    let (eof_tx, eof) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut go_tx = Some(go_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "go" {
                if let Some(tx) = go_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        let _ = eof_tx.send(());
    });
    let stop = async move {
        tokio::select! {
            _ = eof => {}
            () = sleep(Duration::from_secs(max_secs)) => {}
        }
    };

    // Tell the harness how many requests arrived, when that changes.
    let counter = received.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            sleep(Duration::from_millis(50)).await;
            let now = counter.load(Ordering::Relaxed);
            if now != last {
                println!("received {now}");
                last = now;
            }
        }
    });

    println!("listening {addr}");
    match mode.as_str() {
        "bare" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            server::serve(listener, svc, stop).await?;
        }
        "held" => {
            let svc = service_fn(move |req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                let res = DelayedResponse::for_request(&req)
                    .heartbeat(Heartbeat::every(BEAT))
                    .start(std::future::pending::<()>());
                async { Ok::<_, Infallible>(res.await) }
            });
            server::serve(listener, svc, stop).await?;
        }
        "held-shared" => {
            // A builder made once and cloned per request: no configuration
            // of its own per response.
            let base = Arc::new(DelayedResponse::new().heartbeat(Heartbeat::every(BEAT)));
            let svc = service_fn(move |req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                let res = DelayedResponse::clone(&base)
                    .with_request(&req)
                    .start(std::future::pending::<()>());
                async { Ok::<_, Infallible>(res.await) }
            });
            server::serve(listener, svc, stop).await?;
        }
        "axum" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                let events =
                    futures_util::stream::pending::<std::result::Result<Event, Infallible>>();
                let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(BEAT));
                async { Ok::<_, Infallible>(sse.into_response()) }
            });
            server::serve(listener, svc, stop).await?;
        }
        "hyper" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            let mut stop = std::pin::pin!(stop);
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                    () = &mut stop => break,
                };
                let _ = tcp.set_nodelay(true);
                let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc.clone());
                tokio::spawn(conn);
            }
        }
        "beat" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                let body = BeatBody {
                    sleep: Box::pin(sleep(BEAT)),
                };
                async { Ok::<_, Infallible>(Response::new(body)) }
            });
            server::serve(listener, svc, stop).await?;
        }
        "beat-tick" => {
            let tick = Arc::new(Notify::new());
            let driver = tick.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(BEAT);
                loop {
                    interval.tick().await;
                    driver.notify_waiters();
                }
            });
            let svc = service_fn(move |_req: Request<Incoming>| {
                received.fetch_add(1, Ordering::Relaxed);
                let body = TickBody {
                    notified: Box::pin(tick.clone().notified_owned()),
                    tick: tick.clone(),
                };
                async { Ok::<_, Infallible>(Response::new(body)) }
            });
            server::serve(listener, svc, stop).await?;
        }
        "raw" => {
            let stop = std::pin::pin!(stop);
            serve_raw(listener, received, stop).await;
        }
        "timers" | "tick" => {
            let tasks: usize = flag(args, "--tasks").unwrap_or("10000").parse()?;
            let _ = go.await;
            let beats = Arc::new(AtomicU64::new(0));
            if mode == "timers" {
                spawn_timers(tasks, &beats);
            } else {
                spawn_tick(tasks, &beats);
            }
            received.store(tasks, Ordering::Relaxed);
            stop.await;
            drop(listener);
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    Ok(())
}

/// The timer of `held` alone, without sockets: one `Sleep` per task, reset
/// to the next second after each beat, with the phases spread over a second
/// as the connections of the socket test arrive.
fn spawn_timers(tasks: usize, beats: &Arc<AtomicU64>) {
    let start = tokio::time::Instant::now();
    for i in 0..tasks {
        let beats = beats.clone();
        let phase = BEAT * i as u32 / tasks as u32;
        tokio::spawn(async move {
            let mut sleep = Box::pin(tokio::time::sleep_until(start + BEAT + phase));
            loop {
                sleep.as_mut().await;
                beats.fetch_add(1, Ordering::Relaxed);
                let next = sleep.deadline() + BEAT;
                sleep.as_mut().reset(next);
            }
        });
    }
}

/// The coalesced alternative: one interval for everyone, whose tick wakes
/// every task (through a `watch` channel, which wakes its waiters in
/// batches, as a shared registry of wakers would).
fn spawn_tick(tasks: usize, beats: &Arc<AtomicU64>) {
    let (tx, rx) = watch::channel(0u64);
    for _ in 0..tasks {
        let beats = beats.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                beats.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(BEAT);
        interval.tick().await;
        loop {
            interval.tick().await;
            tx.send_modify(|n| *n += 1);
        }
    });
}

// ---------------------------------------------------------------- client ----

/// What one mode measured.
struct Measured {
    mode: String,
    idle_kib: u64,
    held_kib: u64,
    user_percent: f64,
    cpu_percent: f64,
    client_bytes_per_sec: f64,
    conns: usize,
}

impl Measured {
    fn per_conn_kib(&self) -> f64 {
        self.held_kib.saturating_sub(self.idle_kib) as f64 / self.conns as f64
    }
}

/// The median of the values `f` takes on the runs of `mode`.
fn median(results: &[Measured], mode: &str, f: impl Fn(&Measured) -> f64) -> Option<f64> {
    let mut values: Vec<f64> = results.iter().filter(|m| m.mode == mode).map(f).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

async fn run_client(args: &[String]) -> Result<()> {
    let conns: usize = flag(args, "--conns").unwrap_or("10000").parse()?;
    let conns = conns.clamp(1, 20_000);
    let secs: u64 = flag(args, "--secs").unwrap_or("8").parse()?;
    let secs = secs.clamp(1, 30);
    let runs: usize = flag(args, "--runs").unwrap_or("1").parse()?;
    let runs = runs.clamp(1, 9);
    let modes: Vec<&str> = flag(args, "--modes")
        .unwrap_or(ALL_MODES)
        .split(',')
        .collect();
    measure::ensure_open_files(conns as u64 + 64)?;
    println!(
        "{conns} held requests per mode, CPU sampled over {secs} s, heartbeat every {} s, \
         {runs} run(s) of every mode in turn; server = child process, client = this process, \
         {} cores shared",
        BEAT.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut results = Vec::new();
    for run in 1..=runs {
        for mode in &modes {
            let m = measure_mode(mode, conns, secs).await?;
            println!(
                "run {run} {:<9} idle {:>7} KiB  held {:>8} KiB  per response {:>6.2} KiB  \
                 CPU user {:>5.1} % total {:>5.1} % of one core  client read {:>7.0} B/s",
                m.mode,
                m.idle_kib,
                m.held_kib,
                m.per_conn_kib(),
                m.user_percent,
                m.cpu_percent,
                m.client_bytes_per_sec
            );
            results.push(m);
        }
    }

    println!("\nmedian of {runs} run(s):");
    println!("| mode | KiB per response | user CPU % | total CPU % | user µs per heartbeat | total µs per heartbeat |");
    println!("|---|---|---|---|---|---|");
    for mode in &modes {
        let kib = median(&results, mode, Measured::per_conn_kib).unwrap_or(0.0);
        let user = median(&results, mode, |m| m.user_percent).unwrap_or(0.0);
        let total = median(&results, mode, |m| m.cpu_percent).unwrap_or(0.0);
        // One heartbeat per response per second: % of a core / conns =
        // CPU seconds per heartbeat / 100.
        let per_beat = |percent: f64| percent / 100.0 / conns as f64 * 1e6;
        if matches!(*mode, "hyper" | "bare" | "timers" | "tick") {
            // No heartbeats on the wire.
            println!("| {mode} | {kib:.2} | {user:.1} | {total:.1} | - | - |");
        } else {
            println!(
                "| {mode} | {kib:.2} | {user:.1} | {total:.1} | {:.2} | {:.2} |",
                per_beat(user),
                per_beat(total)
            );
        }
    }
    // `None` when a mode is missing or its value is zero (no heartbeats).
    let ratio = |a: &str, b: &str, f: fn(&Measured) -> f64| -> Option<f64> {
        let (a, b) = (median(&results, a, f)?, median(&results, b, f)?);
        (b > 0.0).then(|| a / b)
    };
    let rss: fn(&Measured) -> f64 = Measured::per_conn_kib;
    let user: fn(&Measured) -> f64 = |m| m.user_percent;
    let total: fn(&Measured) -> f64 = |m| m.cpu_percent;
    let show = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    for held in ["held", "held-shared"] {
        // Memory against the floors, which write nothing.
        for floor in ["hyper", "bare"] {
            if let Some(r) = ratio(held, floor, rss) {
                println!("ratio {held}/{floor}: RSS per response {r:.2}");
            }
        }
        // Memory and CPU against what writes the same heartbeats.
        for other in ["axum", "beat"] {
            if let Some(r) = ratio(held, other, rss) {
                println!(
                    "ratio {held}/{other}: RSS per response {r:.2}, user CPU {}, total CPU {}",
                    show(ratio(held, other, user)),
                    show(ratio(held, other, total))
                );
            }
        }
    }
    if let (Some(c), Some(r)) = (ratio("tick", "timers", total), ratio("tick", "timers", rss)) {
        println!("ratio tick/timers: CPU {c:.2}, RSS per task {r:.2}");
    }
    if let Some(c) = ratio("beat-tick", "beat", total) {
        println!("ratio beat-tick/beat: CPU {c:.2}");
    }
    Ok(())
}

/// A child `server --mode MODE` (under callgrind when `callgrind` names an
/// output file), its address, and its count of received requests.
struct Spawned {
    child: Child,
    addr: SocketAddr,
    received: watch::Receiver<usize>,
}

async fn spawn_server(mode: &str, conns: usize, callgrind: Option<&Path>) -> Result<Spawned> {
    let exe = std::env::current_exe()?;
    let count = conns.to_string();
    let args = [
        "server",
        "--mode",
        mode,
        "--addr",
        "127.0.0.1:0",
        "--tasks",
        &count,
        "--max-secs",
        "600",
    ];
    let mut cmd: Command = match callgrind {
        Some(out) => Callgrind::command(out, exe, args).into(),
        None => {
            let mut cmd = Command::new(exe);
            cmd.args(args);
            cmd
        }
    };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(Duration::from_secs(60), lines.next_line())
        .await??
        .ok_or("the server said nothing")?;
    let addr: SocketAddr = first
        .strip_prefix("listening ")
        .ok_or_else(|| format!("unexpected line {first:?}"))?
        .parse()?;

    // The server's count of received requests.
    let (count_tx, received) = watch::channel(0usize);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = line.strip_prefix("received ").and_then(|n| n.parse().ok()) {
                let _ = count_tx.send(n);
            }
        }
    });
    Ok(Spawned {
        child,
        addr,
        received,
    })
}

/// Opens `conns` connections (at most 256 connecting at a time) that each
/// send one GET, then read and count whatever comes back until the server
/// closes.
async fn open_clients(
    addr: SocketAddr,
    conns: usize,
    read_bytes: &Arc<AtomicU64>,
) -> Result<Vec<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let permit = connecting.clone().acquire_owned().await?;
        let read_bytes = read_bytes.clone();
        tasks.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            drop(permit);
            let mut buf = [0u8; 256];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        read_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        }));
    }
    Ok(tasks)
}

async fn measure_mode(mode: &str, conns: usize, secs: u64) -> Result<Measured> {
    let Spawned {
        mut child,
        addr,
        received: mut count_rx,
    } = spawn_server(mode, conns, None).await?;
    let server = Process::pid(child.id().ok_or("the server exited at once")?);

    sleep(Duration::from_millis(300)).await;
    let idle_kib = server.rss_kib()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(b"go\n").await?;

    let read_bytes = Arc::new(AtomicU64::new(0));
    let sockets = if matches!(mode, "timers" | "tick") {
        0
    } else {
        conns
    };
    let tasks = open_clients(addr, sockets, &read_bytes).await?;
    timeout(Duration::from_secs(30), count_rx.wait_for(|&n| n >= conns))
        .await
        .map_err(|_| format!("{mode}: the server did not see {conns} requests within 30 s"))??;

    // Let the held responses send their heads and first heartbeats.
    sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_kib()?;
    let cpu_before = server.cpu_times()?;
    let bytes_before = read_bytes.load(Ordering::Relaxed);
    let started = Instant::now();
    sleep(Duration::from_secs(secs)).await;
    let cpu_after = server.cpu_times()?;
    let elapsed = started.elapsed().as_secs_f64();
    let bytes_after = read_bytes.load(Ordering::Relaxed);
    let rss_after = server.rss_kib()?;

    // Kill the server first, so the TIME_WAIT sockets are its own and the
    // client's ports are free again at once.
    drop(stdin);
    kill(&mut child).await;
    for task in tasks {
        let _ = timeout(Duration::from_secs(10), task).await;
    }

    let percent = |d: Duration| d.as_secs_f64() / elapsed * 100.0;
    Ok(Measured {
        mode: mode.to_owned(),
        idle_kib,
        held_kib: rss_before.max(rss_after),
        user_percent: percent(cpu_after.user.saturating_sub(cpu_before.user)),
        cpu_percent: percent(cpu_after.total().saturating_sub(cpu_before.total())),
        client_bytes_per_sec: (bytes_after - bytes_before) as f64 / elapsed,
        conns,
    })
}

async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = timeout(Duration::from_secs(10), child.wait()).await;
}

// ------------------------------------------------------------- callgrind ----

/// The bytes one heartbeat puts on the wire in `mode` (a chunk of HTTP/1.1
/// chunked encoding: size line, data, CRLF).
fn wire_bytes_per_beat(mode: &str) -> Option<u64> {
    match mode {
        // `1\r\n \r\n`
        "held" | "held-shared" | "beat" | "beat-tick" | "raw" => Some(6),
        // `3\r\n:\n\n\r\n`
        "axum" => Some(8),
        _ => None,
    }
}

async fn run_callgrind(args: &[String]) -> Result<()> {
    let conns: usize = flag(args, "--conns").unwrap_or("500").parse()?;
    let conns = conns.clamp(1, 5_000);
    let secs: u64 = flag(args, "--secs").unwrap_or("10").parse()?;
    let secs = secs.clamp(1, 120);
    let modes = flag(args, "--modes").unwrap_or("held,axum,beat");
    let out = PathBuf::from(flag(args, "--out").unwrap_or("target/callgrind"));
    std::fs::create_dir_all(&out)?;
    measure::ensure_open_files(conns as u64 + 64)?;
    println!(
        "{conns} held requests per mode under callgrind, instructions counted over {secs} s, \
         heartbeat every {} s",
        BEAT.as_secs()
    );
    println!("| mode | heartbeats | instructions | instructions per heartbeat | dump |");
    println!("|---|---|---|---|---|");
    let mut per_beat = Vec::new();
    for mode in modes.split(',') {
        let (beats, dump) = callgrind_mode(mode, conns, secs, &out).await?;
        let each = dump.instructions as f64 / beats.max(1) as f64;
        println!(
            "| {mode} | {beats} | {} | {each:.0} | {} |",
            dump.instructions,
            dump.file.display()
        );
        per_beat.push((mode.to_owned(), each));
    }
    let find = |m: &str| per_beat.iter().find(|(n, _)| n == m).map(|(_, v)| *v);
    for (a, b) in [("held", "axum"), ("held", "beat")] {
        if let (Some(a_), Some(b_)) = (find(a), find(b)) {
            println!("ratio {a}/{b}: instructions per heartbeat {:.2}", a_ / b_);
        }
    }
    Ok(())
}

/// Heartbeats received in the window, and the dump of the window.
async fn callgrind_mode(mode: &str, conns: usize, secs: u64, dir: &Path) -> Result<(u64, Dump)> {
    let wire = wire_bytes_per_beat(mode)
        .ok_or_else(|| format!("{mode}: no heartbeats to count under callgrind"))?;
    let out = dir.join(format!("{mode}.out"));
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(&format!("{mode}.out")) {
            std::fs::remove_file(entry.path())?;
        }
    }
    let Spawned {
        mut child,
        addr,
        received: mut count_rx,
    } = spawn_server(mode, conns, Some(&out)).await?;
    let mut cg = Callgrind::attach(child.id().ok_or("the server exited at once")?, &out);
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(b"go\n").await?;

    let read_bytes = Arc::new(AtomicU64::new(0));
    let tasks = open_clients(addr, conns, &read_bytes).await?;
    timeout(Duration::from_secs(300), count_rx.wait_for(|&n| n >= conns))
        .await
        .map_err(|_| format!("{mode}: the server did not see {conns} requests within 300 s"))??;
    // Heads and the first heartbeats out (slowly, under callgrind).
    sleep(Duration::from_secs(3)).await;

    tokio::task::block_in_place(|| cg.zero())?;
    let bytes_before = read_bytes.load(Ordering::Relaxed);
    sleep(Duration::from_secs(secs)).await;
    let dump = tokio::task::block_in_place(|| cg.dump())?;
    let bytes_after = read_bytes.load(Ordering::Relaxed);

    drop(stdin);
    kill(&mut child).await;
    for task in tasks {
        let _ = timeout(Duration::from_secs(10), task).await;
    }
    Ok(((bytes_after - bytes_before) / wire, dump))
}
