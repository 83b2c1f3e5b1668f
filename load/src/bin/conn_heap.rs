//! What one held connection costs the server in live heap bytes, counted by
//! a global allocator: exact and repeatable, whatever else the machine runs
//! (RSS is printed beside it, but moves with the allocator's arenas).
//!
//! ```text
//! ulimit -n 8192
//! cargo run --release -p load --bin conn_heap                        # every mode, 2,000 connections
//! cargo run --release -p load --bin conn_heap -- --modes bare,held --conns 4000
//! heaptrack target/release/conn_heap one --mode held --conns 2000    # by allocation site
//! ```
//!
//! Each mode runs in a child process of its own (`conn_heap one --mode
//! MODE`), whose server serves on 127.0.0.1 through
//! `delayed_response::server::serve` (the default server: HTTP/1.1 and h2c)
//! unless said otherwise. Its clients are blocking `std` sockets in the
//! same process, which allocate nothing: every byte counted is the server's.
//! The child opens 64 connections to warm up (runtime slabs, lazily
//! allocated state), waits 1.5 s, reads the live heap and RSS, opens
//! `--conns` more, waits until the server has seen them all and 1.5 s more
//! (every held response has sent its head and its first 1 s heartbeat), and
//! reads them again. Per connection = the difference / `--conns`. The
//! clients never read, so nothing the server writes is freed by a read.
//!
//! The modes:
//!
//! | mode | the server |
//! |---|---|
//! | `hyper` | plain `hyper::server::conn::http1`, no `server::serve`; the handler awaits `pending()` |
//! | `bare` | `server::serve`, the handler awaits `pending()`: the floor every other mode is compared with |
//! | `beat` | `server::serve`, a hand-written body writing a space every second from its own `Sleep` |
//! | `held` | `DelayedResponse::for_request(&req).heartbeat(Heartbeat::every(1 s)).start(pending())` |
//! | `held-shared` | `held` with the builder made once and cloned per request (`.with_request(&req)`) |
//! | `axum` | axum's `Sse` over a stream that never yields, with a 1 s `KeepAlive` |
//! | `hub` | `hub::Hub` with no limits: every connection subscribes to one channel over SSE (`GET /sub/load-0`) |
//! | `signal` | `signal::Service` with its defaults (per-client caps lifted): the connections join one swarm, whose initiator is opened (and read by a thread) before counting |
//! | `pipe` | `pipe::Service` with its defaults (per-client caps lifted): each connection is a sender waiting for its receiver (`POST /`, `Content-Length: 1000`, no body sent) |
//!
//! When the child exits it does not close its connections, so a heap
//! profiler's "leaked" report (`heaptrack_print --print-leaks`) lists what
//! the held connections keep, by allocation site.

use std::alloc::System;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use bytes::Bytes;
use cap::Cap;
use delayed_response::{pipe, server, signal, DelayedResponse, Heartbeat};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::{service_fn, Service as _};
use load::measure::{self, Process};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BEAT: Duration = Duration::from_secs(1);
/// Connections opened before counting.
const WARM_UP: usize = 64;
/// Long enough for a held response to send its head and first heartbeat.
const SETTLE: Duration = Duration::from_millis(1500);

const USAGE: &str = "usage: conn_heap [--conns N] [--modes M,M,...]
       conn_heap one --mode MODE [--conns N]

  --conns N   connections counted per mode (2000, at most 20000)
  --modes     any of hyper,bare,beat,held,held-shared,axum,signal,hub,pipe (all)";

const ALL_MODES: &str = "hyper,bare,beat,held,held-shared,axum,signal,hub,pipe";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let conns: usize = flag(&args, "--conns").unwrap_or("2000").parse()?;
    let conns = conns.clamp(1, 20_000);
    measure::ensure_open_files(conns as u64 + WARM_UP as u64 + 64)?;
    match args.first().map(String::as_str) {
        Some("one") => {
            let mode = flag(&args, "--mode").ok_or("one needs --mode")?;
            let line = one(mode, conns)?;
            println!("{line}");
            // Exit with every connection open: a heap profiler's leak
            // report is then the connections' live memory.
            std::process::exit(0);
        }
        None => all(ALL_MODES, conns),
        Some(a) if a.starts_with("--") => all(flag(&args, "--modes").unwrap_or(ALL_MODES), conns),
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

/// Runs each mode in a child and prints a table with ratios to `bare`.
fn all(modes: &str, conns: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "{conns} connections per mode, live heap bytes (counting allocator) and RSS per connection\n"
    );
    println!("| mode | heap B per conn | vs bare | heap over bare | RSS KiB per conn |");
    println!("|---|---|---|---|---|");
    let mut bare: Option<f64> = None;
    for mode in modes.split(',') {
        let out = std::process::Command::new(&exe)
            .args(["one", "--mode", mode, "--conns", &conns.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (heap, rss) = parse_line(&text).ok_or_else(|| format!("{mode}: {text:?}"))?;
        if mode == "bare" {
            bare = Some(heap);
        }
        let (ratio, over) = match bare {
            Some(b) => (format!("{:.3}", heap / b), format!("{:+.0}", heap - b)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {mode} | {heap:.0} | {ratio} | {over} | {:.2} |",
            rss / 1024.0
        );
    }
    Ok(())
}

/// `heap=B rss=B` → (B, B).
fn parse_line(text: &str) -> Option<(f64, f64)> {
    let mut heap = None;
    let mut rss = None;
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("heap=") {
            heap = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("rss=") {
            rss = v.parse().ok();
        }
    }
    Some((heap?, rss?))
}

/// One mode, in this process: `heap=B rss=B` per connection.
fn one(mode: &str, conns: usize) -> Result<String> {
    let rt = tokio::runtime::Runtime::new()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(AtomicUsize::new(0));
    rt.spawn(serve(mode.to_owned(), listener, seen.clone()));

    let request = match mode {
        "pipe" => "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n".to_owned(),
        "signal" => {
            let id = open_swarm(addr)?;
            format!("GET /{id} HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n")
        }
        "hub" => {
            "GET /sub/load-0 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n".to_owned()
        }
        _ => "GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
    };
    let open = |n: usize, keep: &mut Vec<TcpStream>| -> Result<()> {
        let target = seen.load(Ordering::Acquire) + n;
        for _ in 0..n {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(request.as_bytes())?;
            keep.push(s);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.load(Ordering::Acquire) < target {
            if std::time::Instant::now() > deadline {
                return Err(format!("{mode}: the server did not see {n} requests").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(SETTLE);
        Ok(())
    };
    let mut keep = Vec::with_capacity(WARM_UP + conns);
    open(WARM_UP, &mut keep)?;
    let me = Process::this();
    let (heap0, rss0) = (ALLOCATOR.allocated(), me.rss_kib()?);
    open(conns, &mut keep)?;
    let (heap1, rss1) = (ALLOCATOR.allocated(), me.rss_kib()?);
    let heap = (heap1 as f64 - heap0 as f64) / conns as f64;
    let rss = (rss1 as f64 - rss0 as f64) * 1024.0 / conns as f64;
    // Keep the server and the connections to the end of the process: a
    // heap profiler then reports what they hold as leaked.
    std::mem::forget(keep);
    std::mem::forget(rt);
    Ok(format!("mode={mode} heap={heap:.1} rss={rss:.1}"))
}

/// Opens the initiator of a swarm, returns the swarm's id, and reads its
/// stream (the joins) from a thread of its own until it closes.
fn open_swarm(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let id = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err("the initiator's stream closed".into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(at) = text.find("\"id\":\"") {
            let rest = &text[at + 6..];
            if let Some(end) = rest.find('"') {
                break rest[..end].to_owned();
            }
        }
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    Ok(id)
}

async fn serve(mode: String, listener: tokio::net::TcpListener, seen: Arc<AtomicUsize>) {
    let stop = std::future::pending::<()>();
    // Counted when the service is called; `one` then waits for the rest.
    let count = move || {
        seen.fetch_add(1, Ordering::AcqRel);
    };
    let result = match mode.as_str() {
        "hyper" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                count();
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let io = hyper_util::rt::TokioIo::new(tcp);
                let conn =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, svc.clone());
                tokio::spawn(conn);
            }
        }
        "bare" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                count();
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            server::serve(listener, svc, stop).await
        }
        "beat" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                count();
                let body = beat::Body::new(BEAT);
                async { Ok::<_, Infallible>(Response::new(body)) }
            });
            server::serve(listener, svc, stop).await
        }
        "held" => {
            let svc = service_fn(move |req: Request<Incoming>| {
                count();
                let res = DelayedResponse::for_request(&req)
                    .heartbeat(Heartbeat::every(BEAT))
                    .start(std::future::pending::<()>());
                async { Ok::<_, Infallible>(res.await) }
            });
            server::serve(listener, svc, stop).await
        }
        "held-shared" => {
            let base = Arc::new(DelayedResponse::new().heartbeat(Heartbeat::every(BEAT)));
            let svc = service_fn(move |req: Request<Incoming>| {
                count();
                let res = DelayedResponse::clone(&base)
                    .with_request(&req)
                    .start(std::future::pending::<()>());
                async { Ok::<_, Infallible>(res.await) }
            });
            server::serve(listener, svc, stop).await
        }
        "axum" => {
            let svc = service_fn(move |_req: Request<Incoming>| {
                count();
                let events =
                    futures_util::stream::pending::<std::result::Result<Event, Infallible>>();
                let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(BEAT));
                async { Ok::<_, Infallible>(sse.into_response()) }
            });
            server::serve(listener, svc, stop).await
        }
        "hub" => {
            let hub = delayed_response::hub::Hub::builder().no_limits().build();
            let service = hub.service();
            let svc = service_fn(move |req: Request<Incoming>| {
                count();
                service.call(req)
            });
            server::serve(listener, svc, stop).await
        }
        "signal" => {
            let signal = signal::Service::builder()
                .max_peers_per_client(usize::MAX)
                .build();
            let svc = service_fn(move |req: Request<Incoming>| {
                count();
                signal.call(req)
            });
            server::serve(listener, svc, stop).await
        }
        "pipe" => {
            let pipe = pipe::Service::builder()
                .max_waiting(1_000_000)
                .max_waiting_per_client(usize::MAX)
                .build();
            let svc = service_fn(move |req: Request<Incoming>| {
                count();
                pipe.call(req)
            });
            server::serve(listener, svc, stop).await
        }
        other => {
            eprintln!("unknown mode {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("serve: {e}");
    }
}

/// The hand-written heartbeat body of `beat`.
mod beat {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::Frame;
    use tokio::time::Sleep;

    /// A space every `interval`, from its own timer.
    pub(super) struct Body {
        sleep: Pin<Box<Sleep>>,
        interval: Duration,
    }

    impl Body {
        pub(super) fn new(interval: Duration) -> Self {
            Body {
                sleep: Box::pin(tokio::time::sleep(interval)),
                interval,
            }
        }
    }

    impl http_body::Body for Body {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            ready!(self.sleep.as_mut().poll(cx));
            let next = self.sleep.deadline() + self.interval;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
        }
    }
}
