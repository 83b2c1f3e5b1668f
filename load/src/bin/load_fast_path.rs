//! Load test of the fast path: requests/s of a handler that answers with
//! `DelayedResponse::new().wait(ready work)` against a bare hyper handler that
//! returns `Response::new(Full::new(bytes))`, same client, same run.
//!
//! ```text
//! cargo run --release -p load --bin load_fast_path              # built-in client, ~55 s
//! cargo run --release -p load --bin load_fast_path -- --wrk     # the same rounds driven by wrk
//! cargo run --release -p load --bin load_fast_path -- --serve-only 60
//! curl -s http://127.0.0.1:PORT/                               # a port printed by --serve-only
//! ```
//!
//! Three servers (`bare`, `wait`, and `start` with the same ready work) run in
//! this process on 127.0.0.1:0 under `delayed_response::server::serve`, on a
//! tokio runtime of their own with one worker thread; the client runs on a
//! second runtime (two worker threads). The built-in client opens `--conns`
//! keep-alive HTTP/1.1 connections (hyper's `client::conn::http1`) per server
//! and has each send GETs one after the other for `--secs` seconds; the
//! servers take turns, the order rotating, for `--rounds` rounds, after a 1 s
//! warm-up each. For each slice it records the req/s and the server thread's
//! CPU time per request (`/proc/self/task/*/schedstat`), and prints the
//! means, the least CPU per request of each server (its least disturbed
//! slice), and the median (with the quartiles) of the per-round ratios, which
//! is robust against the load of a shared machine drifting during the run.
//! Client and servers share the machine's cores, so the absolute numbers are
//! low; the ratios are what count.
//!
//! Options: `--conns N` (32), `--secs S` (1), `--rounds R` (16), `--wrk`
//! (drive with `wrk -t1 -cN -dSs` instead, if it is installed),
//! `--serve-only S` (print the addresses and serve for S seconds, at most 600).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use delayed_response::{server, DelayedResponse};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use load::measure;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const HELLO: &[u8] = b"hello world";

const USAGE: &str =
    "usage: load_fast_path [--conns N] [--secs S] [--rounds R] [--wrk] [--serve-only S]

  --conns N         keep-alive connections per server (32)
  --secs S          seconds per slice (1)
  --rounds R        rounds of one slice per server, the order rotating (16)
  --wrk             drive the slices with `wrk -t1 -cN -dSs` instead of the built-in client
  --serve-only S    print the three servers' addresses and serve for S seconds (at most 600)";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which handler a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `Response::new(Full::new(bytes))`.
    Bare,
    /// `DelayedResponse::new().wait(async { bytes })`.
    Wait,
    /// `DelayedResponse::new().start(async { bytes })`.
    Start,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Bare, Kind::Wait, Kind::Start];

    fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Wait => "wait",
            Kind::Start => "start",
        }
    }
}

struct Options {
    conns: usize,
    secs: u64,
    rounds: usize,
    wrk: bool,
    serve_only: Option<u64>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        conns: 32,
        secs: 1,
        rounds: 16,
        wrk: false,
        serve_only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<u64> {
            let v = args.next().ok_or(format!("{arg} needs a value"))?;
            Ok(v.parse()?)
        };
        match arg.as_str() {
            "--conns" => o.conns = value()?.clamp(1, 1024) as usize,
            "--secs" => o.secs = value()?.clamp(1, 30),
            "--rounds" => o.rounds = value()?.clamp(1, 40) as usize,
            "--wrk" => o.wrk = true,
            "--serve-only" => o.serve_only = Some(value()?.clamp(1, 600)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(o)
}

/// Starts a server running `kind`'s handler; it stops when `stop` fires.
async fn start_server(kind: Kind, stop: oneshot::Receiver<()>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let signal = async {
        let _ = stop.await;
    };
    match kind {
        Kind::Bare => {
            let svc = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(HELLO))))
            });
            tokio::spawn(server::serve(listener, svc, signal));
        }
        Kind::Wait => {
            let svc = service_fn(|_req: Request<Incoming>| async {
                let res = DelayedResponse::new()
                    .wait(async { Bytes::from_static(HELLO) })
                    .await;
                Ok::<_, Infallible>(res)
            });
            tokio::spawn(server::serve(listener, svc, signal));
        }
        Kind::Start => {
            let svc = service_fn(|_req: Request<Incoming>| async {
                let res = DelayedResponse::new()
                    .start(async { Bytes::from_static(HELLO) })
                    .await;
                Ok::<_, Infallible>(res)
            });
            tokio::spawn(server::serve(listener, svc, signal));
        }
    }
    Ok(addr)
}

/// One keep-alive connection sending GETs one after the other until `stop`.
async fn client_conn(addr: SocketAddr, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let req = Request::get("/")
            .header(http::header::HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let res = sender.send_request(req).await?;
        let body = res.into_body().collect().await?.to_bytes();
        if body.as_ref() != HELLO {
            return Err(format!("unexpected body {body:?}").into());
        }
        n += 1;
    }
    done.fetch_add(n, Ordering::Relaxed);
    drop(sender);
    let _ = conn.await;
    Ok(())
}

/// What one slice of load measured.
#[derive(Clone, Copy, Default)]
struct Slice {
    /// Requests per second the client completed.
    rps: f64,
    /// Server CPU time per request, in microseconds.
    cpu_us: f64,
}

/// Drives `addr` with the built-in client; returns requests and seconds.
async fn drive(addr: SocketAddr, conns: usize, secs: u64) -> Result<(u64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client_conn(addr, stop.clone(), done.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok((
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

/// Drives `addr` with `wrk`; returns requests and seconds as wrk reports them.
async fn drive_wrk(addr: SocketAddr, conns: usize, secs: u64) -> Result<(u64, f64)> {
    let out = tokio::process::Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://{addr}/"))
        .kill_on_drop(true)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{text}").into());
    }
    // "  123456 requests in 2.00s, 11.07MB read"
    let parsed = text.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(" requests in ")?;
        let secs = rest.split_once('s')?.0;
        Some((n.parse().ok()?, secs.parse().ok()?))
    });
    parsed.ok_or_else(|| format!("no request count in wrk output:\n{text}").into())
}

/// The name of the server runtime's threads.
const SERVER_THREADS: &str = "fp-server";

/// One slice of load on `addr`, with the server's CPU time per request.
async fn slice(o: &Options, addr: SocketAddr, secs: u64) -> Result<Slice> {
    let cpu = measure::threads_cpu_time(SERVER_THREADS)?;
    let (requests, elapsed) = if o.wrk {
        drive_wrk(addr, o.conns, secs).await?
    } else {
        drive(addr, o.conns, secs).await?
    };
    let cpu = measure::threads_cpu_time(SERVER_THREADS)?.saturating_sub(cpu);
    Ok(Slice {
        rps: requests as f64 / elapsed,
        cpu_us: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
    })
}

/// The median and the quartiles of `v`, as "median (q1-q3)".
fn median(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let x = q * (v.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
    };
    format!("{:.3} ({:.3}-{:.3})", at(0.5), at(0.25), at(0.75))
}

fn main() -> Result<()> {
    let o = options()?;
    // The servers get a runtime of their own, one worker thread, so that
    // their CPU time can be told from the client's.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for kind in Kind::ALL {
        let (stop, stopped) = oneshot::channel();
        addrs.push((kind, server_rt.block_on(start_server(kind, stopped))?));
        stops.push(stop);
    }
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fp-client")
        .enable_all()
        .build()?;
    client_rt.block_on(run(&o, &addrs))?;
    for stop in stops {
        let _ = stop.send(());
    }
    Ok(())
}

async fn run(o: &Options, addrs: &[(Kind, SocketAddr)]) -> Result<()> {
    if let Some(secs) = o.serve_only {
        for (kind, addr) in addrs {
            println!("{:<6} http://{addr}/", kind.name());
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        return Ok(());
    }

    let client = if o.wrk { "wrk -t1" } else { "hyper http1" };
    println!(
        "client: {client}, {} keep-alive connections, {} s per server, {} rounds; \
         servers on 1 worker thread, client on {} ({} cores shared)",
        o.conns,
        o.secs,
        o.rounds,
        if o.wrk {
            "wrk's thread"
        } else {
            "2 worker threads"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // A short warm-up of each server (connections, allocator, caches).
    for (_, addr) in addrs {
        slice(o, *addr, 1).await?;
    }
    // Per round, each server's req/s; the order rotates so that every server
    // runs in every position (the machine's load drifts during a run).
    let mut rounds: Vec<[Slice; 3]> = Vec::with_capacity(o.rounds);
    for round in 0..o.rounds {
        let mut r = [Slice::default(); 3];
        let mut line = format!("round {:>2}:", round + 1);
        for k in 0..addrs.len() {
            let i = (round + k) % addrs.len();
            let (kind, addr) = addrs[i];
            r[i] = slice(o, addr, o.secs).await?;
            line.push_str(&format!(
                "  {} {:>6.0} req/s {:>5.1} us",
                kind.name(),
                r[i].rps,
                r[i].cpu_us
            ));
        }
        println!(
            "{line}  wait/bare {:.3}  start/bare {:.3}",
            r[1].rps / r[0].rps,
            r[2].rps / r[0].rps
        );
        rounds.push(r);
    }
    let mean = |i: usize, f: fn(&Slice) -> f64| {
        rounds.iter().map(|r| f(&r[i])).sum::<f64>() / rounds.len() as f64
    };
    let rps = |s: &Slice| s.rps;
    let cpu = |s: &Slice| s.cpu_us;
    println!(
        "mean req/s:             bare {:>7.0}  wait {:>7.0}  start {:>7.0}",
        mean(0, rps),
        mean(1, rps),
        mean(2, rps)
    );
    println!(
        "mean server CPU/req:    bare {:>5.2} us  wait {:>5.2} us  start {:>5.2} us",
        mean(0, cpu),
        mean(1, cpu),
        mean(2, cpu)
    );
    // The least CPU per request a server needed in any slice: the slice
    // least disturbed by the rest of the machine.
    let min_cpu = |i: usize| {
        rounds
            .iter()
            .map(|r| r[i].cpu_us)
            .fold(f64::INFINITY, f64::min)
    };
    println!(
        "min server CPU/req:     bare {:>5.2} us  wait {:>5.2} us  start {:>5.2} us   \
         bare/wait {:.3}  bare/start {:.3}",
        min_cpu(0),
        min_cpu(1),
        min_cpu(2),
        min_cpu(0) / min_cpu(1),
        min_cpu(0) / min_cpu(2)
    );
    let ratio = |i: usize, f: fn(&Slice, &Slice) -> f64| {
        median(rounds.iter().map(|r| f(&r[i], &r[0])).collect())
    };
    let rps_ratio = |x: &Slice, bare: &Slice| x.rps / bare.rps;
    let cpu_ratio = |x: &Slice, bare: &Slice| bare.cpu_us / x.cpu_us;
    println!(
        "median (q1-q3) per-round ratio, req/s:                wait/bare {}  start/bare {}",
        ratio(1, rps_ratio),
        ratio(2, rps_ratio)
    );
    println!(
        "median (q1-q3) per-round ratio, bare CPU / this CPU:  wait/bare {}  start/bare {}",
        ratio(1, cpu_ratio),
        ratio(2, cpu_ratio)
    );
    Ok(())
}
