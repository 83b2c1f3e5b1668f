//! Load harness for the pipe: one big stream (against a raw TCP relay, same
//! run) and thousands of idle waiting senders.
//!
//! ```text
//! cargo run --release -p load --bin pipe_load -- [stream|idle|all] [--bytes N] [--waiters N] [--no-curl] [--protocol ephemeral|piping|both]
//! cargo run --release -p load --bin pipe_load -- callgrind [--bytes N] [--protocol ephemeral|piping] [--out DIR]
//! ```
//!
//! `callgrind` counts the server's instructions per GB of a curl transfer
//! instead of timing it ([`callgrind`]): a measure that holds on a busy
//! machine.
//!
//! `stream` measures the ephemeral mode and the Piping mode
//! (`pipe::Protocol::Piping`) in the same run by default, and prints the
//! Piping mode's speed as a ratio of the ephemeral mode's.
//!
//! The server under test runs as a child process (this same binary with
//! `serve-pipe` or `serve-relay`), so its CPU time, RSS and open fds (read by
//! `load::measure` from `/proc/PID`) are its own. Clients run in this
//! process, or as `curl` children. Needs `ulimit -n` above the number of
//! waiters, with some room (it is checked): each waiter holds a socket in
//! this process and one in the server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delayed_response::pipe;
use delayed_response::{server, Heartbeat};
use load::measure::{self, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod callgrind;

const BLOCK: usize = 256 << 10;

const USAGE: &str =
    "usage: pipe_load [stream|idle|all] [--bytes N] [--waiters N] [--no-curl] [--protocol P]

  stream        one upload of --bytes (2 GiB) through the pipe, against a raw TCP relay
  idle          --waiters (5000) senders waiting for their receivers: RSS, fds, and how soon
                the fds are back after the clients close (vs bare hyper and the core alone)
  all           both (the default)
  callgrind     one curl upload of --bytes (512 MiB) with the server under callgrind: its
                user-space instructions per GB and per upload frame (needs valgrind; dumps in
                --out DIR, target/callgrind)
  --no-curl     skip the curl → pipe → curl runs of `stream`
  --protocol P  which modes `stream` measures: ephemeral, piping, or both (the default: the
                same transfer in each, and the Piping mode's speed as a ratio of the ephemeral's)

Environment: PIPE_LOAD_HTTP1_ONLY=1 (servers without h2c), PIPE_LOAD_ONLY_PIPE=1 (idle: skip
the baselines), PIPE_LOAD_ROUNDS=N (idle rounds, 2).";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    let mode = args.first().map(String::as_str).unwrap_or("all");
    if mode == "callgrind" {
        callgrind::run(&args[1..]);
        return;
    }
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match mode {
        "serve-pipe" => rt.block_on(serve_pipe(opt("--heartbeat-ms", 1000), false)),
        "serve-piping" => rt.block_on(serve_pipe(opt("--heartbeat-ms", 1000), true)),
        "serve-relay" => rt.block_on(serve_relay()),
        "serve-hold" => rt.block_on(serve_hold()),
        "serve-core" => rt.block_on(serve_core(opt("--heartbeat-ms", 1000))),
        "stream" | "idle" | "all" => {
            let bytes = opt("--bytes", 2 << 30);
            let waiters = opt("--waiters", 5000) as usize;
            let curl = !args.iter().any(|a| a == "--no-curl")
                && Command::new("curl").arg("--version").output().is_ok();
            let protocol = args
                .iter()
                .position(|a| a == "--protocol")
                .and_then(|i| args.get(i + 1))
                .map_or("both", String::as_str);
            let modes = match protocol {
                "ephemeral" => Modes {
                    ephemeral: true,
                    piping: false,
                },
                "piping" => Modes {
                    ephemeral: false,
                    piping: true,
                },
                "both" => Modes {
                    ephemeral: true,
                    piping: true,
                },
                other => {
                    eprintln!("--protocol: ephemeral, piping or both, not {other:?}\n{USAGE}");
                    std::process::exit(2);
                }
            };
            if mode != "idle" {
                rt.block_on(stream_bench(bytes, curl, modes));
            }
            if mode != "stream" {
                rt.block_on(idle_bench(waiters));
            }
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- servers

/// `server::serve` until stdin closes; `PIPE_LOAD_HTTP1_ONLY=1` serves
/// HTTP/1.1 only (`Server::http1_only`), which saves hyper's h2c detection
/// state per connection.
async fn serve<S, B>(listener: TcpListener, service: S)
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<delayed_response::BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<delayed_response::BoxError>,
{
    let http1_only = std::env::var_os("PIPE_LOAD_HTTP1_ONLY").is_some_and(|v| v == "1");
    let _ = server::Server::new()
        .http1_only(http1_only)
        .serve(listener, service, stdin_closed())
        .await;
}

/// The pipe under test; `piping`: in the Piping mode.
async fn serve_pipe(heartbeat_ms: u64, piping: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let protocol = if piping {
        pipe::Protocol::Piping
    } else {
        pipe::Protocol::Ephemeral
    };
    let pipe = pipe::Service::builder()
        .protocol(protocol)
        .hooks(FrameCount::default())
        .heartbeat(Heartbeat::every(Duration::from_millis(heartbeat_ms)))
        .max_upload_bytes(0)
        .max_waiting(1_000_000)
        // Every idle waiter comes from this one machine.
        .max_waiting_per_client(usize::MAX)
        .build();
    serve(listener, pipe).await;
}

/// The floor for idle waiters: bare hyper (through the same `server::serve`)
/// holding a response open after its first line, with no pipe at all.
async fn serve_hold() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let service = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        let first = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"http://h/AAAAAAAAAAAA\n"))
        });
        let body = delayed_response::Body::from_stream(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        ));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    serve(listener, service).await;
}

/// The core alone: a handle-mode delayed response with heartbeats that
/// writes one line and keeps the request body until the response is over, as
/// the pipe does, without the pipe's registry or upload bookkeeping.
async fn serve_core(heartbeat_ms: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        async move {
            let (response, completion) = delayed_response::DelayedResponse::for_request(&req)
                .pending_status(http::StatusCode::OK)
                .heartbeat(Heartbeat::every(Duration::from_millis(heartbeat_ms)))
                .handle();
            let _ = completion.write("http://h/AAAAAAAAAAAA\n");
            // Keep the upload until the response is over (as the pipe's
            // registry does), then free both.
            let body = req.into_body();
            tokio::spawn(async move {
                completion.closed().await;
                drop((body, completion));
            });
            Ok::<_, std::convert::Infallible>(response.await)
        }
    });
    serve(listener, service).await;
}

/// Counts the frames of each transfer and prints their mean size to stderr
/// (coalescing shows up here).
#[derive(Default)]
struct FrameCount {
    frames: std::sync::atomic::AtomicU64,
}

impl delayed_response::pipe::Hooks for FrameCount {
    fn progress(&self, _: &delayed_response::pipe::Socket, _: &delayed_response::pipe::Stats) {
        self.frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn end(
        &self,
        socket: &delayed_response::pipe::Socket,
        stats: &delayed_response::pipe::Stats,
    ) -> bytes::Bytes {
        let frames = self
            .frames
            .swap(0, std::sync::atomic::Ordering::Relaxed)
            .max(1);
        eprintln!(
            "pipe_load: {} bytes in {frames} frames, {} bytes per frame",
            stats.bytes,
            stats.bytes / frames
        );
        delayed_response::pipe::DefaultHooks.end(socket, stats)
    }
}

/// The baseline: accept a sender, then a receiver, copy one into the other.
async fn serve_relay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let relay = async {
        loop {
            let Ok((mut tx, _)) = listener.accept().await else {
                continue;
            };
            let Ok((mut rx, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; BLOCK];
                loop {
                    match tx.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if rx.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    };
    tokio::select! {
        () = relay => {}
        () = stdin_closed() => {}
    }
}

/// The child stops when the parent closes its stdin.
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

struct Server {
    child: Child,
    addr: SocketAddr,
    process: Process,
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server address");
        Server {
            process: Process::pid(child.id()),
            child,
            addr: line.trim().parse().expect("address"),
        }
    }

    /// utime + stime of the server process, in seconds.
    fn cpu(&self) -> f64 {
        self.process
            .cpu_time()
            .expect("server CPU time")
            .as_secs_f64()
    }

    fn rss_kib(&self) -> u64 {
        self.process.rss_kib().expect("server RSS")
    }

    fn fds(&self) -> usize {
        self.process.open_fds().expect("server fds")
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- stream

struct Run {
    secs: f64,
    server_cpu: f64,
    peak_rss_kib: u64,
}

impl Run {
    fn print(&self, name: &str, bytes: u64, baseline: Option<&Run>) {
        let gib = bytes as f64 / (1u64 << 30) as f64;
        let gbps = bytes as f64 / self.secs / 1e9;
        let ratio = baseline.map_or(String::new(), |b| format!("{:.2}x", b.secs / self.secs));
        println!(
            "| {name} | {gib:.2} GiB | {:.2} s | {gbps:.2} GB/s | {ratio} | {:.2} s | {:.3} s/GB | {} KiB |",
            self.secs,
            self.server_cpu,
            self.server_cpu / (bytes as f64 / 1e9),
            self.peak_rss_kib
        );
    }
}

/// Samples the server's RSS while `fut` runs.
async fn measured<F: std::future::Future<Output = ()>>(server: &Server, fut: F) -> Run {
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let mut peak = server.rss_kib();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = &mut fut => break,
            _ = tick.tick() => peak = peak.max(server.rss_kib()),
        }
    }
    Run {
        secs: t0.elapsed().as_secs_f64(),
        server_cpu: server.cpu() - cpu0,
        peak_rss_kib: peak.max(server.rss_kib()),
    }
}

async fn write_zeros(stream: &mut TcpStream, bytes: u64) {
    let block = vec![0u8; BLOCK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        stream.write_all(&block[..n]).await.expect("send");
        left -= n as u64;
    }
}

async fn read_all(stream: &mut TcpStream) -> u64 {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n as u64,
        }
    }
}

async fn relay_run(bytes: u64) -> Run {
    let server = Server::spawn(&["serve-relay"]);
    let addr = server.addr;
    let run = measured(&server, async move {
        let mut tx = TcpStream::connect(addr).await.expect("connect");
        tx.set_nodelay(true).ok();
        // The relay takes the first connection as the sender.
        tx.write_all(&[]).await.ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut rx = TcpStream::connect(addr).await.expect("connect");
        let send = tokio::spawn(async move {
            write_zeros(&mut tx, bytes).await;
        });
        let got = read_all_n(&mut rx, bytes).await;
        assert_eq!(got, bytes, "relay lost data");
        let _ = send.await;
    })
    .await;
    server.stop();
    run
}

async fn read_all_n(stream: &mut TcpStream, bytes: u64) -> u64 {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0;
    while total < bytes {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    total
}

/// Rust clients: `PUT` with Content-Length, `GET` reading the body.
async fn pipe_run_rust(bytes: u64) -> Run {
    let server = Server::spawn(&["serve-pipe"]);
    let addr = server.addr;
    let run = measured(&server, async move {
        let mut tx = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "PUT /zeros HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        );
        tx.write_all(head.as_bytes()).await.expect("head");
        let url = read_url(&mut tx).await;
        let path = url.split_once(&addr.to_string()).map_or("/", |(_, p)| p).to_owned();
        let send = tokio::spawn(async move {
            write_zeros(&mut tx, bytes).await;
            let mut tail = Vec::new();
            let _ = tx.read_to_end(&mut tail).await;
            String::from_utf8_lossy(&tail).into_owned()
        });
        let mut rx = TcpStream::connect(addr).await.expect("connect");
        let get = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        rx.write_all(get.as_bytes()).await.expect("get");
        let got = read_all(&mut rx).await;
        assert!(got >= bytes, "pipe lost data: {got} < {bytes}");
        let tail = send.await.unwrap_or_default();
        assert!(tail.contains("done:"), "sender: {tail:?}");
    })
    .await;
    server.stop();
    run
}

/// The Piping mode with Rust clients: `PUT /zeros` with Content-Length,
/// then `GET /zeros` once the sender waits.
async fn piping_run_rust(bytes: u64) -> Run {
    let server = Server::spawn(&["serve-piping"]);
    let addr = server.addr;
    let run = measured(&server, async move {
        let mut tx = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "PUT /zeros HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        );
        tx.write_all(head.as_bytes()).await.expect("head");
        read_line_with(&mut tx, "[INFO] Waiting for").await;
        let send = tokio::spawn(async move {
            write_zeros(&mut tx, bytes).await;
            let mut tail = Vec::new();
            let _ = tx.read_to_end(&mut tail).await;
            String::from_utf8_lossy(&tail).into_owned()
        });
        let mut rx = TcpStream::connect(addr).await.expect("connect");
        let get = format!("GET /zeros HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        rx.write_all(get.as_bytes()).await.expect("get");
        let got = read_all(&mut rx).await;
        assert!(got >= bytes, "pipe lost data: {got} < {bytes}");
        let tail = send.await.unwrap_or_default();
        assert!(tail.contains("received successfully"), "sender: {tail:?}");
    })
    .await;
    server.stop();
    run
}

/// Reads until a line containing `needle` has arrived.
async fn read_line_with(stream: &mut TcpStream, needle: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before {needle:?}");
        buf.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&buf).contains(needle) {
            return;
        }
    }
}

/// curl → pipe → curl: `curl -T -` (chunked, fed zeros by this process)
/// and `curl -o /dev/null`, the receiver once the sender waits; in the
/// Piping mode (`piping`) both on `/zeros`, else the receiver on the URL
/// the sender got.
async fn curl_run(bytes: u64, piping: bool) -> Run {
    let server = Server::spawn(&[if piping { "serve-piping" } else { "serve-pipe" }]);
    let addr = server.addr.to_string();
    let run = measured(&server, async move {
        let tail = tokio::task::spawn_blocking(move || {
            callgrind::transfer(&addr, piping.then_some("/zeros"), bytes, || {})
        })
        .await
        .expect("the curl transfer");
        let done = if piping {
            "received successfully"
        } else {
            "done:"
        };
        assert!(tail.contains(done), "sender: {tail:?}");
    })
    .await;
    server.stop();
    run
}

async fn read_url(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before the URL line");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(start) = text.find("http://") {
            if let Some(len) = text[start..].find('\n') {
                return text[start..start + len].to_owned();
            }
        }
    }
}

/// Which modes of the pipe `stream` measures.
#[derive(Clone, Copy)]
struct Modes {
    ephemeral: bool,
    piping: bool,
}

async fn stream_bench(bytes: u64, curl: bool, modes: Modes) {
    println!("## one stream of {bytes} bytes over loopback\n");
    println!("| path | size | wall | throughput | vs raw TCP | server CPU | server CPU per GB | server peak RSS |");
    println!("|---|---|---|---|---|---|---|---|");
    let raw = relay_run(bytes).await;
    raw.print("raw TCP relay (Rust clients)", bytes, None);
    let mut ephemeral = (None, None);
    if modes.ephemeral {
        let rust = pipe_run_rust(bytes).await;
        rust.print("pipe (Rust clients, Content-Length)", bytes, Some(&raw));
        ephemeral.0 = Some(rust);
        if curl {
            let c = curl_run(bytes, false).await;
            c.print("pipe (curl -T - → curl -o, chunked)", bytes, Some(&raw));
            ephemeral.1 = Some(c);
        }
    }
    let mut piping = (None, None);
    if modes.piping {
        let rust = piping_run_rust(bytes).await;
        rust.print(
            "pipe, Piping mode (Rust clients, Content-Length)",
            bytes,
            Some(&raw),
        );
        piping.0 = Some(rust);
        if curl {
            let c = curl_run(bytes, true).await;
            c.print(
                "pipe, Piping mode (curl -T - → curl -o, chunked)",
                bytes,
                Some(&raw),
            );
            piping.1 = Some(c);
        }
    }
    println!();
    // The Piping mode's speed as a ratio of the ephemeral mode's, same run
    // (wall time; ≥ 0.95 is the bar).
    for (name, e, p) in [
        ("Rust clients", &ephemeral.0, &piping.0),
        ("curl", &ephemeral.1, &piping.1),
    ] {
        if let (Some(e), Some(p)) = (e, p) {
            println!(
                "Piping mode vs ephemeral mode ({name}): {:.2}x (wall {:.2} s vs {:.2} s)",
                e.secs / p.secs,
                p.secs,
                e.secs
            );
        }
    }
    println!();
}

// ---------------------------------------------------------------- idle

async fn idle_bench(waiters: usize) {
    // Each waiter holds a socket here and one in the server (which inherits
    // this limit).
    if let Err(e) = measure::ensure_open_files(waiters as u64 + 64) {
        eprintln!("pipe_load: {e}");
        std::process::exit(1);
    }
    if std::env::var_os("PIPE_LOAD_ONLY_PIPE").is_none() {
        idle_run(waiters, "serve-hold").await;
        idle_run(waiters, "serve-core").await;
    }
    idle_run(waiters, "serve-pipe").await;
}

async fn idle_run(waiters: usize, kind: &str) {
    let heartbeat_ms = 1000u64;
    let server = Server::spawn(&[kind, "--heartbeat-ms", &heartbeat_ms.to_string()]);
    let addr = server.addr;
    // Warm up: one complete transfer, so lazily allocated runtime state is in
    // the baseline.
    if kind == "serve-pipe" {
        let mut tx = TcpStream::connect(addr).await.expect("connect");
        tx.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
            .await
            .expect("warm");
        let url = read_url(&mut tx).await;
        let id = url.rsplit('/').next().unwrap_or("").to_owned();
        let mut rx = TcpStream::connect(addr).await.expect("connect");
        rx.write_all(
            format!("GET /{id} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("get");
        read_all(&mut rx).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = server.rss_kib();
    let fds0 = server.fds();

    let what = match kind {
        "serve-pipe" => "pipe",
        "serve-core" => "core handle mode only (no pipe)",
        _ => "bare hyper holding a response (floor)",
    };
    println!("## {waiters} idle waiting senders: {what} (heartbeat {heartbeat_ms} ms)\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| server RSS / fds before | {rss0} KiB / {fds0} |");
    // Two rounds: RSS that does not grow in round 2 is memory the allocator
    // kept for reuse, not a leak.
    let rounds: u32 = std::env::var("PIPE_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for round in 1..=rounds {
        let t0 = Instant::now();
        let mut clients = Vec::with_capacity(waiters);
        for batch in 0..waiters.div_ceil(250) {
            let n = (waiters - batch * 250).min(250);
            let opened = futures_util::future::join_all((0..n).map(|_| async move {
                let mut tx = TcpStream::connect(addr).await.expect("connect");
                tx.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n")
                    .await
                    .expect("head");
                read_url(&mut tx).await;
                tx
            }))
            .await;
            clients.extend(opened);
        }
        let open_secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss1 = server.rss_kib();
        let fds1 = server.fds();
        let per_waiter = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / waiters as f64;
        println!("| round {round}: opened {waiters} in | {open_secs:.2} s |");
        println!("| round {round}: server RSS / fds with them waiting | {rss1} KiB / {fds1} |");
        println!(
            "| round {round}: RSS per waiter (vs before) | {per_waiter:.0} B ({:.2} KiB) |",
            per_waiter / 1024.0
        );

        let closed = Instant::now();
        drop(clients);
        let mut freed_at = None;
        let mut fds2 = fds1;
        let limit = Duration::from_millis(heartbeat_ms * 2 + 500);
        while closed.elapsed() < Duration::from_millis(heartbeat_ms * 4) {
            fds2 = server.fds();
            if fds2 <= fds0 + 2 && freed_at.is_none() {
                freed_at = Some(closed.elapsed());
            }
            if freed_at.is_some() && closed.elapsed() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rss2 = server.rss_kib();
        match freed_at {
            Some(t) => println!(
                "| round {round}: fds back to baseline after the clients closed | {:.2} s ({fds2} fds) |",
                t.as_secs_f64()
            ),
            None => {
                println!(
                    "| round {round}: fds back to baseline after the clients closed | NOT within {:.1} s ({fds2} fds) |",
                    closed.elapsed().as_secs_f64()
                );
                break;
            }
        }
        println!(
            "| round {round}: server RSS {:.1} s after close | {rss2} KiB ({:+} KiB vs before) |",
            closed.elapsed().as_secs_f64(),
            rss2 as i64 - rss0 as i64
        );
    }
    println!();
    server.stop();
}
