//! Fan-out load test of the hub: many SSE subscribers over a few channels,
//! one publisher; reports delivery latency, deliveries per second and the
//! server's memory per idle subscriber; with `--redis`, several instances
//! on one Redis and the Redis round trips per message.
//!
//! Run it (release build; each side needs one descriptor per subscriber),
//! on a quiet machine:
//!
//! ```text
//! ulimit -n 8192
//! cargo run --release -p load --bin load_hub -- [--subscribers 1000] \
//!     [--channels 10] [--messages 1000] [--size 100] [--rate 0] [--http1-only] \
//!     [--redis [URL]] [--instances N]
//! ```
//!
//! Each server instance runs in a child process (this program with
//! `--serve`): a hub with no limits where anyone may publish, served by
//! `server::Server`, so its resident memory (`VmRSS`) is measured apart
//! from the client's. The client opens `--subscribers` streams (`GET
//! /sub/load-{i % channels}`) over raw TCP, subscriber `i` on instance `i %
//! instances`, waits until each instance's `/stats` counts its share, reads
//! the servers' RSS, then POSTs `--messages` messages of `--size` bytes
//! round-robin over the channels on one keep-alive connection to the first
//! instance (`--rate N` paces them to N a second; 0 sends back to back).
//! Each message carries its number and the time it was sent; every
//! subscriber checks that it gets each message of its channel exactly
//! once, in order, and notes the delay to the moment it parsed it.
//!
//! `--redis [URL]` puts the instances on a `RedisBackplane` at `URL`
//! (without one: a `redis-server` this program starts on a free port, with
//! no persistence); `--instances N` (default 2 with `--redis`, else 1; more
//! than 1 needs Redis) sets how many. The Redis command counts (`INFO
//! commandstats`) are read before the first and after the last publish.
//!
//! Output: latency p50/p99/max over every delivery, deliveries per second
//! (first POST to last receipt), server RSS per idle subscriber, and with
//! Redis the round trips (script calls and pub/sub commands) per published
//! message, beside every command's count. Exits with status 1 when a
//! delivery was missing, repeated or out of order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use delayed_response::backplane::RedisBackplane;
use delayed_response::hub::{Hub, Namespace, Publishers};
use delayed_response::server::Server;
use load::redis::{calls_between, command_calls, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const USAGE: &str = "usage: load_hub [--subscribers N] [--channels N] [--messages N] \
                     [--size BYTES] [--rate PER_SECOND] [--http1-only] [--redis [URL]] \
                     [--instances N] [--nchan]";

#[derive(Clone)]
struct Args {
    subscribers: usize,
    channels: usize,
    messages: usize,
    size: usize,
    rate: u64,
    http1_only: bool,
    serve: bool,
    /// `Some(None)`: Redis, started here.
    redis: Option<Option<String>>,
    instances: Option<usize>,
    /// Run the same load against nginx with nchan (Debian's
    /// `libnginx-mod-nchan`) instead of the hub.
    nchan: bool,
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
        redis: None,
        instances: None,
        nchan: false,
    };
    let mut it = std::env::args().skip(1).peekable();
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
            "--instances" => args.instances = Some((value("--instances")? as usize).max(1)),
            "--http1-only" => args.http1_only = true,
            "--serve" => args.serve = true,
            "--nchan" => args.nchan = true,
            "--redis" => {
                let url = it.next_if(|v| v.starts_with("redis://"));
                args.redis = Some(url);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.instances.unwrap_or(1) > 1 && args.redis.is_none() && !args.serve {
        // Several instances share state through Redis only.
        args.redis = Some(None);
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("load_hub: {problem}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if args.serve {
        serve(args.http1_only, args.redis.flatten()).await;
    } else {
        client(args).await;
    }
}

/// The server side: prints its address, serves until stdin closes.
async fn serve(http1_only: bool, redis: Option<String>) {
    let mut builder = Hub::builder()
        .no_limits()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone));
    if let Some(url) = redis {
        match RedisBackplane::connect(&url).await {
            Ok(backplane) => builder = builder.backplane(Arc::new(backplane)),
            Err(e) => {
                eprintln!("load_hub: redis at {url}: {e}");
                std::process::exit(1);
            }
        }
    }
    let hub = builder.build();
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

/// A process and its children (nginx's workers), for memory and CPU.
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: the fields after the last `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

fn rss_kib(pid: u32) -> u64 {
    family(pid)
        .into_iter()
        .map(|p| load::measure::Process::pid(p).rss_kib().unwrap_or(0))
        .sum()
}

fn cpu_of(pid: u32) -> Duration {
    family(pid)
        .into_iter()
        .map(|p| {
            load::measure::Process::pid(p)
                .cpu_time()
                .unwrap_or_default()
        })
        .sum()
}

/// nginx with nchan on a free port, two workers, `/sub/{channel}` as
/// EventSource, `/pub/{channel}` as publisher, `/nchan_status`.
fn start_nchan() -> (Child, SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let dir = std::env::temp_dir().join(format!("load_hub_nchan_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  server {{
    listen {addr};
    location ~ ^/sub/(.+)$ {{ nchan_subscriber eventsource; nchan_channel_id $1; }}
    location ~ ^/pub/(.+)$ {{ nchan_publisher; nchan_channel_id $1; }}
    location = /nchan_status {{ nchan_stub_status; }}
  }}
}}
",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!(
                "load_hub: cannot start nginx (apt-get install nginx libnginx-mod-nchan): {e}"
            );
            std::process::exit(1);
        });
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("load_hub: nginx did not listen on {addr}");
    std::process::exit(1);
}

fn start_server(args: &Args, redis: Option<&str>) -> (Child, SocketAddr) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve");
    if args.http1_only {
        cmd.arg("--http1-only");
    }
    if let Some(url) = redis {
        cmd.args(["--redis", url]);
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

async fn connections(addr: SocketAddr, nchan: bool) -> usize {
    if nchan {
        let status = request(
            addr,
            "GET /nchan_status HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
        )
        .await;
        return status
            .lines()
            .find_map(|l| l.strip_prefix("subscribers: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
    }
    let stats = request(
        addr,
        "GET /stats HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
    v["connections"].as_u64().unwrap_or(0) as usize
}

/// Reads one response (its body sized by `Content-Length`) off `s`, with
/// what was read past the last one in `pending`.
async fn response(s: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(head) = find(pending, b"\r\n\r\n") {
            let len: usize = String::from_utf8_lossy(&pending[..head])
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if pending.len() >= head + 4 + len {
                return pending.drain(..head + 4 + len).collect();
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed the publisher");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// The messages of channel `c`, in the order they are sent.
fn of_channel(args: &Args, c: usize) -> Vec<usize> {
    (0..args.messages)
        .filter(|m| m % args.channels == c)
        .collect()
}

/// Reads one subscriber's stream; sends the latency of each message (in
/// µs) until the last of `expected` has come; counts each message that is
/// not the next expected one (missing, repeated, out of order) in `wrong`.
async fn subscriber(
    addr: SocketAddr,
    channel: usize,
    expected: Vec<usize>,
    epoch: Instant,
    latencies: mpsc::UnboundedSender<u64>,
    wrong: Arc<AtomicUsize>,
) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET /sub/load-{channel} HTTP/1.1\r\nHost: l\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16384];
    let mut got = 0;
    while got < expected.len() {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            if let Some(rest) = line.strip_prefix(b"data: t=") {
                let mut fields = std::str::from_utf8(rest).unwrap_or("").split(' ');
                let sent: u64 = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                let number: Option<usize> = fields
                    .next()
                    .and_then(|m| m.strip_prefix("m="))
                    .and_then(|m| m.parse().ok());
                if number != expected.get(got).copied() {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                let now = epoch.elapsed().as_micros() as u64;
                let _ = latencies.send(now.saturating_sub(sent));
                got += 1;
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    // Keep the stream open until the run is over (the process exits).
    drop(latencies);
    let _ = s.read(&mut buf).await;
}

async fn client(args: Args) {
    let instances = args
        .instances
        .unwrap_or(if args.redis.is_some() { 2 } else { 1 });
    let own_redis = match &args.redis {
        Some(None) => Some(RedisServer::start().unwrap_or_else(|e| {
            eprintln!("load_hub: cannot start redis-server: {e}");
            std::process::exit(1);
        })),
        _ => None,
    };
    let redis_url = match &args.redis {
        Some(Some(url)) => Some(url.clone()),
        Some(None) => own_redis.as_ref().map(RedisServer::url),
        None => None,
    };
    let mut servers: Vec<(Child, SocketAddr)> = if args.nchan {
        vec![start_nchan()]
    } else {
        (0..instances)
            .map(|_| start_server(&args, redis_url.as_deref()))
            .collect()
    };
    let instances = servers.len();
    let addrs: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();
    let rss = |servers: &[(Child, SocketAddr)]| -> u64 {
        servers.iter().map(|(c, _)| rss_kib(c.id())).sum()
    };
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let wrong = Arc::new(AtomicUsize::new(0));
    let baseline = rss(&servers);
    for i in 0..args.subscribers {
        let channel = i % args.channels;
        tokio::spawn(subscriber(
            addrs[i % instances],
            channel,
            of_channel(&args, channel),
            epoch,
            tx.clone(),
            wrong.clone(),
        ));
    }
    drop(tx);
    for (k, addr) in addrs.iter().enumerate() {
        let share = (k..args.subscribers).step_by(instances).count();
        while connections(*addr, args.nchan).await < share {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let loaded = rss(&servers);
    let calls_before = redis_url.as_deref().map(|url| command_calls(url).unwrap());
    // One keep-alive connection to the first instance for every publish.
    let mut publisher = TcpStream::connect(addrs[0]).await.unwrap();
    let filler = "x".repeat(args.size.saturating_sub(32));
    // The instances' CPU (`utime + stime`), Redis's not included.
    let cpu = |servers: &[(Child, SocketAddr)]| -> Duration {
        servers.iter().map(|(c, _)| cpu_of(c.id())).sum()
    };
    let cpu0 = cpu(&servers);
    let started = Instant::now();
    let mut pending = Vec::new();
    for m in 0..args.messages {
        if let Some(offset) = (m as u64 * 1_000_000).checked_div(args.rate) {
            let due = started + Duration::from_micros(offset);
            tokio::time::sleep_until(due.into()).await;
        }
        let body = format!("t={} m={m} {filler}", epoch.elapsed().as_micros());
        let req = format!(
            "POST /pub/load-{} HTTP/1.1\r\nHost: l\r\nAccept: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            m % args.channels,
            body.len()
        );
        publisher.write_all(req.as_bytes()).await.unwrap();
        // One response at a time.
        let resp = response(&mut publisher, &mut pending).await;
        assert!(
            resp.starts_with(b"HTTP/1.1 20"),
            "a publish failed: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let total: usize = (0..args.subscribers)
        .map(|i| of_channel(&args, i % args.channels).len())
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
    let cpu_used = cpu(&servers).saturating_sub(cpu0);
    let calls = calls_before.map(|before| {
        let after = command_calls(redis_url.as_deref().unwrap()).unwrap();
        calls_between(&before, &after)
    });
    report(&args, instances, &latencies, elapsed, total);
    println!(
        "server CPU {} ms over {:.0} ms ({} instance(s)): {:.2} µs per delivery",
        cpu_used.as_millis(),
        elapsed.as_secs_f64() * 1000.0,
        instances,
        cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64
    );
    println!(
        "server RSS {} KiB idle, {} KiB with {} streams ({} instance(s)): {:.1} KiB per stream",
        baseline,
        loaded,
        args.subscribers,
        instances,
        loaded.saturating_sub(baseline) as f64 / args.subscribers.max(1) as f64
    );
    if let Some(calls) = calls {
        redis_report(&calls, args.messages);
    }
    for (child, _) in &mut servers {
        if args.nchan {
            // nginx stops its workers on SIGTERM.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        drop(child.stdin.take());
        let _ = child.wait();
    }
    drop(own_redis);
    let wrong = wrong.load(Ordering::Relaxed);
    if latencies.len() < total || wrong > 0 {
        eprintln!(
            "FAILED: {} of {total} deliveries arrived; {wrong} missing, repeated or out of order",
            latencies.len()
        );
        std::process::exit(1);
    }
    println!("every delivery checked: {total} arrived, each once and in order");
}

fn report(args: &Args, instances: usize, latencies: &[u64], elapsed: Duration, total: usize) {
    let mut latencies = latencies.to_vec();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "subscribers {} channels {} messages {} size {} rate {} http1_only {} instances {} redis {}",
        args.subscribers,
        args.channels,
        args.messages,
        args.size,
        args.rate,
        args.http1_only,
        instances,
        args.redis.is_some()
    );
    println!(
        "deliveries {} of {total} in {:.2?}: {:.0}/s; latency p50 {} µs, p99 {} µs, max {} µs",
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
}

/// Redis round trips per message: the commands clients sent (scripts,
/// pub/sub, pings, script loads); the commands a script runs count in
/// `commandstats` too, but go over no connection.
fn redis_report(calls: &BTreeMap<String, u64>, messages: usize) {
    let sum = |pick: &dyn Fn(&str) -> bool| -> u64 {
        calls
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(_, n)| n)
            .sum()
    };
    let scripts = sum(&|n| n.starts_with("eval") || n.starts_with("fcall"));
    let other = sum(&|n| n.contains("subscribe") || n == "ping" || n.starts_with("script"));
    let per = |n: u64| n as f64 / messages.max(1) as f64;
    println!(
        "redis round trips {} for {messages} messages: {:.2} per message ({scripts} script \
         calls: {:.2} per message; {other} pings, script loads and (un)subscribes)",
        scripts + other,
        per(scripts + other),
        per(scripts)
    );
    let all: Vec<String> = calls.iter().map(|(n, c)| format!("{n}={c}")).collect();
    println!("redis commands during the publishes: {}", all.join(" "));
}
