//! Load test of the signal service: one swarm, many joined peers, the
//! initiator broadcasts; reports delivery latency, throughput and the
//! server's memory per idle peer.
//!
//! Run it (release build; each side needs one descriptor per peer):
//!
//! ```text
//! ulimit -n 8192
//! cargo run --release -p load --bin signal_load -- [--peers 1000] [--signals 1000] [--rate 0] \
//!     [--http1-only] [--baseline]
//! ```
//!
//! It starts the server in a child process (itself, with `--serve`), so that
//! the server's resident memory and CPU time (read by `load::measure` from
//! `/proc/PID`) are measured apart from the client's. The client opens the initiator's stream and
//! `--peers` joined streams over raw TCP, waits until the initiator has seen
//! every `join`, measures the server's RSS, then POSTs `--signals` broadcasts
//! with the initiator's token over one keep-alive connection (one request in
//! flight; `--rate N` paces them to N per second, 0 sends back to back). Each
//! signal carries the time it was sent; every peer (the initiator included)
//! notes the delay from that time to the moment it parsed the event.
//!
//! `--http1-only` serves with `Server::http1_only(true)`; `--baseline`
//! replaces the signal service by bare hyper (every GET gets one `connect`
//! event, then a body that stays pending) to measure what a held connection
//! costs without this crate's service.
//!
//! Output: latency p50/p99/max over every delivery, deliveries per second
//! (from the first POST to the last receipt), and server RSS per idle peer.
//! Curl has nothing to exercise here; use `signal_server` for that.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use delayed_response::{server, signal, Body};
use futures_util::StreamExt;
use load::measure::{self, Process};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const USAGE: &str =
    "usage: signal_load [--peers N] [--signals N] [--rate PER_SEC] [--http1-only] [--baseline]

  --peers N       peers that join the one swarm, besides its initiator (1000)
  --signals N     broadcasts the initiator POSTs (1000)
  --rate N        broadcasts per second; 0 sends them back to back (0)
  --http1-only    serve with Server::http1_only(true)
  --baseline      bare hyper instead of the signal service: the memory of a held stream alone";

struct Args {
    peers: usize,
    signals: usize,
    rate: u64,
    serve: bool,
    baseline: bool,
    http1_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        peers: 1000,
        signals: 1000,
        rate: 0,
        serve: false,
        baseline: false,
        http1_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--peers" => args.peers = value("--peers")? as usize,
            "--signals" => args.signals = value("--signals")? as usize,
            "--rate" => args.rate = value("--rate")?,
            "--serve" => args.serve = true,
            "--baseline" => args.baseline = true,
            "--http1-only" => args.http1_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("signal_load: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if args.serve {
        serve(args.baseline, args.http1_only).await;
    } else {
        client(args).await;
    }
}

/// The server side: prints its address, serves until stdin closes. The
/// baseline is bare hyper: every GET gets a stream that sends one
/// `connect` event and then waits forever.
async fn serve(baseline: bool, http1_only: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let stop = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 1];
        let _ = stdin.read(&mut buf).await;
    };
    let server = server::Server::new().http1_only(http1_only);
    if baseline {
        let service = hyper::service::service_fn(|_req| async {
            let connect = format!(
                "event: connect\ndata: {{\"id\":\"{0}\",\"cid\":\"{0}\",\"token\":\"{0}\"}}\n\n",
                "0".repeat(32)
            );
            let body = Body::from_stream(
                futures_util::stream::once(async move { Ok::<_, std::io::Error>(connect) })
                    .chain(futures_util::stream::pending()),
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let _ = server.serve(listener, service, stop).await;
    } else {
        let _ = server.serve(listener, signal::Service::new(), stop).await;
    }
}

async fn start_server(args: &Args) -> (Child, SocketAddr) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve");
    if args.baseline {
        cmd.arg("--baseline");
    }
    if args.http1_only {
        cmd.arg("--http1-only");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the server process");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    (child, line.trim().parse().expect("server address"))
}

/// Opens an event stream and reads up to its `connect` event; returns the
/// socket and the bytes read after the head.
async fn open(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "stream closed before connect");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"event: connect\ndata: ") {
            if let Some(j) = find(&buf[i..], b"\n\n") {
                let data = String::from_utf8_lossy(&buf[i + 21..i + j]).into_owned();
                return (s, data);
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn field(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let start = json.find(&pat).unwrap() + pat.len();
    json[start..start + 32].to_string()
}

/// Reads a peer's stream: counts `join` events (initiator), and for every
/// `signal` notes the latency from the time inside it. Returns after
/// `signals` signals, or when the stream ends.
async fn read_peer(
    mut s: TcpStream,
    base: Instant,
    signals: usize,
    joins: Arc<AtomicUsize>,
) -> (Vec<u32>, Option<Instant>) {
    let mut buf = Vec::with_capacity(8192);
    let mut lat = Vec::with_capacity(signals);
    let mut last = None;
    let mut chunk = vec![0u8; 16384];
    while lat.len() < signals {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let now = Instant::now();
        let mut consumed = 0;
        while let Some(end) = find(&buf[consumed..], b"\n\n") {
            let event = &buf[consumed..consumed + end];
            if let Some(i) = find(event, b"\"t\":") {
                let digits: Vec<u8> = event[i + 4..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .copied()
                    .collect();
                let t: u64 = std::str::from_utf8(&digits).unwrap().parse().unwrap();
                let now_us = now.duration_since(base).as_micros() as u64;
                lat.push(now_us.saturating_sub(t) as u32);
                last = Some(now);
            } else if find(event, b"event: join").is_some() {
                joins.fetch_add(1, Ordering::Relaxed);
            }
            consumed += end + 2;
        }
        buf.drain(..consumed);
    }
    (lat, last)
}

async fn client(args: Args) {
    // One descriptor per peer on each side (the server inherits the limit).
    if let Err(e) = measure::ensure_open_files(args.peers as u64 + 64) {
        eprintln!("signal_load: {e}");
        std::process::exit(1);
    }
    let (mut child, addr) = start_server(&args).await;
    let server_process = Process::pid(child.id());
    let rss_kib = || server_process.rss_kib().expect("server RSS");
    let server_cpu = || server_process.cpu_time().expect("server CPU time");
    let client_cpu = || Process::this().cpu_time().expect("client CPU time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_empty = rss_kib();

    let base = Instant::now();
    let joins = Arc::new(AtomicUsize::new(0));
    let (init, connect) = open(addr, "/").await;
    let (id, token) = (field(&connect, "id"), field(&connect, "token"));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    {
        let (tx, joins) = (done_tx.clone(), joins.clone());
        let n = args.signals;
        tokio::spawn(async move {
            let _ = tx.send(read_peer(init, base, n, joins).await);
        });
    }

    // Join in batches of 100 concurrent connects.
    let opened = Instant::now();
    let path = format!("/{id}");
    let mut left = args.peers;
    while left > 0 {
        let batch = left.min(100);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            let path = path.clone();
            tasks.push(tokio::spawn(async move { open(addr, &path).await.0 }));
        }
        for t in tasks {
            let s = t.await.unwrap();
            let (tx, joins) = (done_tx.clone(), joins.clone());
            let n = args.signals;
            tokio::spawn(async move {
                let _ = tx.send(read_peer(s, base, n, joins).await);
            });
        }
        left -= batch;
    }
    drop(done_tx);
    if args.baseline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_peers = rss_kib();
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "baseline (bare hyper) RSS: {rss_empty} KiB empty, {rss_peers} KiB with {} idle streams ({:.1} KiB per stream)",
            args.peers + 1,
            rss_peers.saturating_sub(rss_empty) as f64 / (args.peers + 1) as f64
        );
        return;
    }
    while joins.load(Ordering::Relaxed) < args.peers {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let join_time = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_peers = rss_kib();

    // Broadcast over one keep-alive connection, one POST in flight.
    let post = TcpStream::connect(addr).await.unwrap();
    post.set_nodelay(true).unwrap();
    let mut post = BufReader::new(post);
    let first_post = Instant::now();
    let (server_cpu0, client_cpu0) = (server_cpu(), client_cpu());
    let pace = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    for seq in 0..args.signals {
        if let Some(pace) = pace {
            let due = first_post + pace * seq as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let t = base.elapsed().as_micros() as u64;
        let body = format!(r#"{{"token":"{token}","data":{{"s":{seq},"t":{t}}}}}"#);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        post.get_mut().write_all(req.as_bytes()).await.unwrap();
        // Head lines, then the 2-byte body "OK".
        let mut line = String::new();
        loop {
            line.clear();
            post.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            assert!(!line.is_empty(), "POST connection closed");
        }
        let mut ok = [0u8; 2];
        post.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"OK");
    }
    let post_time = first_post.elapsed();

    let mut all = Vec::with_capacity((args.peers + 1) * args.signals);
    let mut last_receipt = first_post;
    let mut short = 0;
    while let Some((lat, last)) = done_rx.recv().await {
        if lat.len() < args.signals {
            short += 1;
        }
        all.extend_from_slice(&lat);
        if let Some(last) = last {
            last_receipt = last_receipt.max(last);
        }
    }
    let rss_after = rss_kib();
    let server_cpu = server_cpu().saturating_sub(server_cpu0).as_millis();
    let client_cpu = client_cpu().saturating_sub(client_cpu0).as_millis();
    let _ = child.kill();
    let _ = child.wait();

    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let span = last_receipt.duration_since(first_post).as_secs_f64();
    println!(
        "peers joined:            {} (+ initiator) in {:.2} s",
        args.peers,
        join_time.as_secs_f64()
    );
    println!(
        "signals posted:          {} in {:.3} s",
        args.signals,
        post_time.as_secs_f64()
    );
    println!(
        "deliveries:              {} (expected {}), peers short: {short}",
        all.len(),
        (args.peers + 1) * args.signals
    );
    println!(
        "latency p50 / p99 / max: {:.2} / {:.2} / {:.2} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!("deliveries per second:   {:.0}", all.len() as f64 / span);
    println!(
        "CPU during the broadcast: server {server_cpu} ms, client {client_cpu} ms, over {:.0} ms",
        span * 1000.0
    );
    println!(
        "server RSS: {} KiB empty, {} KiB with {} idle peers ({:.1} KiB per peer), {} KiB after",
        rss_empty,
        rss_peers,
        args.peers + 1,
        (rss_peers.saturating_sub(rss_empty)) as f64 / (args.peers + 1) as f64,
        rss_after
    );
}
