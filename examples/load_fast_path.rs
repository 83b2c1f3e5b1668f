//! Load test of the fast path: requests/s of a handler that answers with
//! `DelayedResponse::new().wait(ready work)` against a bare hyper handler that
//! returns `Response::new(Full::new(bytes))`, same client, same run.
//!
//! ```text
//! cargo run --release --example load_fast_path              # built-in client, ~50 s
//! cargo run --release --example load_fast_path -- --wrk     # the same rounds driven by wrk
//! cargo run --release --example load_fast_path -- --serve-only 60
//! curl -s http://127.0.0.1:PORT/                           # a port printed by --serve-only
//! ```
//!
//! Both servers (three: `start` is measured too) run in this process on
//! 127.0.0.1:0 under `delayed_response::server::serve`, on one multi-thread
//! tokio runtime. The built-in client opens `--conns` keep-alive HTTP/1.1
//! connections (hyper's `client::conn::http1`) per server and has each send
//! GETs one after the other for `--secs` seconds; the servers take turns, the
//! order alternating, for `--rounds` rounds. Client and servers share the
//! machine's cores, so the absolute numbers are low; the ratio is what counts.
//!
//! Options: `--conns N` (32), `--secs S` (5), `--rounds R` (3), `--wrk` (drive
//! with `wrk -t1 -cN -dS` instead, if it is installed), `--serve-only S` (print
//! the addresses and serve for S seconds, at most 600).

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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const HELLO: &[u8] = b"hello world";

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
        secs: 5,
        rounds: 3,
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
            "--rounds" => o.rounds = value()?.clamp(1, 10) as usize,
            "--wrk" => o.wrk = true,
            "--serve-only" => o.serve_only = Some(value()?.clamp(1, 600)),
            other => return Err(format!("unknown argument {other:?}").into()),
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

/// Drives `addr` with the built-in client; returns requests/s.
async fn drive(addr: SocketAddr, conns: usize, secs: u64) -> Result<f64> {
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
    let elapsed = started.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Drives `addr` with `wrk`; returns requests/s as wrk reports it.
async fn drive_wrk(addr: SocketAddr, conns: usize, secs: u64) -> Result<f64> {
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
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}").into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for kind in Kind::ALL {
        let (stop, stopped) = oneshot::channel();
        addrs.push((kind, start_server(kind, stopped).await?));
        stops.push(stop);
    }

    if let Some(secs) = o.serve_only {
        for (kind, addr) in &addrs {
            println!("{:<6} http://{addr}/", kind.name());
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        return Ok(());
    }

    let client = if o.wrk { "wrk -t1" } else { "hyper http1" };
    println!(
        "client: {client}, {} keep-alive connections, {} s per server, {} rounds; \
         client and servers share {} cores",
        o.conns,
        o.secs,
        o.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // A short warm-up of each server (connections, allocator, caches).
    for (_, addr) in &addrs {
        drive(*addr, o.conns, 1).await?;
    }
    let mut totals = [0.0f64; 3];
    for round in 0..o.rounds {
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut line = format!("round {}:", round + 1);
        for i in order {
            let (kind, addr) = addrs[i];
            let rps = if o.wrk {
                drive_wrk(addr, o.conns, o.secs).await?
            } else {
                drive(addr, o.conns, o.secs).await?
            };
            totals[i] += rps;
            line.push_str(&format!("  {} {:>8.0} req/s", kind.name(), rps));
        }
        println!("{line}");
    }
    let mean = |i: usize| totals[i] / o.rounds as f64;
    println!(
        "mean:     bare {:>8.0} req/s  wait {:>8.0} req/s  start {:>8.0} req/s",
        mean(0),
        mean(1),
        mean(2)
    );
    println!(
        "ratio:    wait/bare {:.3}  start/bare {:.3}",
        mean(1) / mean(0),
        mean(2) / mean(0)
    );
    for stop in stops {
        let _ = stop.send(());
    }
    Ok(())
}
