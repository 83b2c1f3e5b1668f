//! Fan-out load test of the hub: many SSE subscribers over a few channels,
//! one publisher; reports delivery latency, deliveries per second and the
//! server's memory per idle subscriber.
//!
//! Run it (release build; each side needs one descriptor per subscriber),
//! on a quiet machine:
//!
//! ```text
//! ulimit -n 8192
//! cargo run --release -p load --bin load_hub -- [--subscribers 1000] \
//!     [--channels 10] [--messages 1000] [--size 100] [--rate 0] [--http1-only]
//! ```
//!
//! The server runs in a child process (this program with `--serve`): a hub
//! with no limits where anyone may publish, served by `server::Server`, so
//! its resident memory (`VmRSS`) is measured apart from the client's. The
//! client opens `--subscribers` streams (`GET /sub/load-{i % channels}`)
//! over raw TCP, waits until `/stats` counts them all, reads the server's
//! RSS, then POSTs `--messages` messages of `--size` bytes round-robin over
//! the channels on one keep-alive connection (`--rate N` paces them to N a
//! second; 0 sends back to back). Each message carries the time it was
//! sent; every subscriber notes the delay to the moment it parsed it.
//!
//! Output: latency p50/p99/max over every delivery, deliveries per second
//! (first POST to last receipt), and server RSS per idle subscriber.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use delayed_response::hub::{Hub, Namespace, Publishers};
use delayed_response::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Clone)]
struct Args {
    subscribers: usize,
    channels: usize,
    messages: usize,
    size: usize,
    rate: u64,
    http1_only: bool,
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        subscribers: 1000,
        channels: 10,
        messages: 1000,
        size: 100,
        rate: 0,
        http1_only: false,
        serve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--subscribers" => args.subscribers = value("--subscribers")? as usize,
            "--channels" => args.channels = (value("--channels")? as usize).max(1),
            "--messages" => args.messages = value("--messages")? as usize,
            "--size" => args.size = value("--size")? as usize,
            "--rate" => args.rate = value("--rate")?,
            "--http1-only" => args.http1_only = true,
            "--serve" => args.serve = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("load_hub: {problem}");
            std::process::exit(2);
        }
    };
    if args.serve {
        serve(args.http1_only).await;
    } else {
        client(args).await;
    }
}

/// The server side: prints its address, serves until stdin closes.
async fn serve(http1_only: bool) {
    let hub = Hub::builder()
        .no_limits()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let stop = async {
        let mut buf = [0u8; 1];
        let _ = tokio::io::stdin().read(&mut buf).await;
    };
    let _ = Server::new()
        .http1_only(http1_only)
        .serve(listener, hub.service(), stop)
        .await;
}

fn rss_kib(pid: u32) -> u64 {
    load::measure::Process::pid(pid).rss_kib().unwrap_or(0)
}

fn start_server(args: &Args) -> (Child, SocketAddr) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve");
    if args.http1_only {
        cmd.arg("--http1-only");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    (child, line.trim().parse().expect("the server's address"))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// One request on a fresh connection; returns the body (Content-Length).
async fn request(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let start = find(&buf, b"\r\n\r\n").map_or(0, |i| i + 4);
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

async fn connections(addr: SocketAddr) -> usize {
    let stats = request(
        addr,
        "GET /stats HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
    v["connections"].as_u64().unwrap_or(0) as usize
}

/// Reads one subscriber's stream; sends the latency of each message (in
/// µs) until `expected` have come.
async fn subscriber(
    addr: SocketAddr,
    channel: usize,
    expected: usize,
    epoch: Instant,
    latencies: mpsc::UnboundedSender<u64>,
    done: Arc<AtomicUsize>,
) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /sub/load-{channel} HTTP/1.1\r\nHost: l\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16384];
    let mut got = 0;
    while got < expected {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            if let Some(t) = line.strip_prefix(b"data: t=") {
                let sent: u64 = std::str::from_utf8(t)
                    .ok()
                    .and_then(|t| t.split(' ').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let now = epoch.elapsed().as_micros() as u64;
                let _ = latencies.send(now.saturating_sub(sent));
                got += 1;
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    done.fetch_add(1, Ordering::Relaxed);
    // Keep the stream open until the run is over (the process exits).
    drop(latencies);
    let _ = s.read(&mut buf).await;
}

async fn client(args: Args) {
    let (mut child, addr) = start_server(&args);
    let epoch = Instant::now();
    let per_channel = |c: usize| {
        (0..args.messages)
            .filter(|m| m % args.channels == c)
            .count()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let done = Arc::new(AtomicUsize::new(0));
    let baseline = rss_kib(child.id());
    for i in 0..args.subscribers {
        let channel = i % args.channels;
        tokio::spawn(subscriber(
            addr,
            channel,
            per_channel(channel),
            epoch,
            tx.clone(),
            done.clone(),
        ));
    }
    drop(tx);
    while connections(addr).await < args.subscribers {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = rss_kib(child.id());
    // One keep-alive connection for every publish.
    let mut publisher = TcpStream::connect(addr).await.unwrap();
    let filler = "x".repeat(args.size.saturating_sub(24));
    let server = load::measure::Process::pid(child.id());
    let cpu0 = server.cpu_time().expect("server CPU time");
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    for m in 0..args.messages {
        if let Some(offset) = (m as u64 * 1_000_000).checked_div(args.rate) {
            let due = started + Duration::from_micros(offset);
            tokio::time::sleep_until(due.into()).await;
        }
        let body = format!("t={} {filler}", epoch.elapsed().as_micros());
        let req = format!(
            "POST /pub/load-{} HTTP/1.1\r\nHost: l\r\nContent-Length: {}\r\n\r\n{body}",
            m % args.channels,
            body.len()
        );
        publisher.write_all(req.as_bytes()).await.unwrap();
        // One response at a time: read until its (small JSON) body ends.
        let mut resp = Vec::new();
        while !resp.ends_with(b"}") {
            let n = publisher.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the publisher");
            resp.extend_from_slice(&buf[..n]);
        }
    }
    let total: usize = (0..args.subscribers)
        .map(|i| per_channel(i % args.channels))
        .sum();
    let mut latencies = Vec::with_capacity(total);
    while latencies.len() < total {
        match rx.recv().await {
            Some(l) => latencies.push(l),
            // Every subscriber ended (some streams were cut short).
            None => break,
        }
    }
    let elapsed = started.elapsed();
    let cpu = server
        .cpu_time()
        .expect("server CPU time")
        .saturating_sub(cpu0);
    if latencies.len() < total {
        eprintln!("only {} of {total} deliveries arrived", latencies.len());
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "subscribers {} channels {} messages {} size {} rate {} http1_only {}",
        args.subscribers, args.channels, args.messages, args.size, args.rate, args.http1_only
    );
    println!(
        "deliveries {} in {:.2?}: {:.0}/s; latency p50 {} µs, p99 {} µs, max {} µs",
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    println!(
        "server CPU {} ms over {:.0} ms: {:.2} µs per delivery",
        cpu.as_millis(),
        elapsed.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64
    );
    println!(
        "server RSS {} KiB idle, {} KiB with {} streams: {:.1} KiB per stream",
        baseline,
        loaded,
        args.subscribers,
        loaded.saturating_sub(baseline) as f64 / args.subscribers.max(1) as f64
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
