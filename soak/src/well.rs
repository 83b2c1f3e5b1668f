//! Well-behaved clients: each runs the normal use of every service in
//! turn, at a fixed pace, checks every answer, and records the latency of
//! the requests that answer at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, LOCATION};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::servers::Addrs;
use crate::stats::Histogram;

/// Well-behaved clients at once.
pub const CLIENTS: usize = 4;
/// How long one scenario may take before it counts as a failure.
const PATIENCE: Duration = Duration::from_secs(10);
/// The pause between two scenarios of one client (a fixed offered load).
const PACE: Duration = Duration::from_millis(10);
/// The pipe scenario's upload.
const UPLOAD: usize = 64 * 1024;

/// The timed kinds of request.
pub const KINDS: [&str; 5] = [
    "long_poll /wait",
    "jobs 200",
    "pipe 64 KiB",
    "signal",
    "hub publish",
];

/// Latencies per phase (0: warm-up, discarded; 1: unloaded; 2: loaded)
/// and kind, allocated before the baseline.
pub struct Latencies {
    pub phase: AtomicUsize,
    pub by_phase: [[Histogram; KINDS.len()]; 3],
}

impl Latencies {
    pub fn new() -> Self {
        let kinds = || std::array::from_fn(|_| Histogram::new());
        Latencies {
            phase: AtomicUsize::new(0),
            by_phase: std::array::from_fn(|_| kinds()),
        }
    }

    fn record(&self, kind: usize, d: Duration) {
        self.by_phase[self.phase.load(Relaxed).min(2)][kind].record(d);
    }

    /// All kinds of `phase` in one histogram.
    pub fn merged(&self, phase: usize) -> Histogram {
        let all = Histogram::new();
        for h in &self.by_phase[phase] {
            all.merge(h);
        }
        all
    }
}

/// Failed scenarios: a count and the first few messages.
pub struct Failures {
    pub count: AtomicU64,
    pub scenarios: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Failures {
    pub fn new() -> Self {
        Failures {
            count: AtomicU64::new(0),
            scenarios: AtomicU64::new(0),
            first: Mutex::new(Vec::with_capacity(16)),
        }
    }

    pub fn add(&self, what: String) {
        self.count.fetch_add(1, Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 16 {
            first.push(what);
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

type Conn = SendRequest<Full<Bytes>>;

/// One client's keep-alive connections.
#[derive(Default)]
struct Conns {
    long_poll: Option<Conn>,
    jobs: Option<Conn>,
    signal: Option<Conn>,
    hub: Option<Conn>,
}

/// Runs every scenario in turn until `stop`; `me` tells the clients apart.
pub async fn client(
    me: usize,
    addrs: Addrs,
    lat: Arc<Latencies>,
    failures: Arc<Failures>,
    stop: Arc<AtomicBool>,
) {
    let mut conns = Conns::default();
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        for (scenario, name) in NAMES.iter().enumerate() {
            if stop.load(Relaxed) {
                break;
            }
            n += 1;
            failures.scenarios.fetch_add(1, Relaxed);
            let scenario_run = run(scenario, n, me, &addrs, &mut conns, &lat);
            match tokio::time::timeout(PATIENCE, scenario_run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failures.add(format!("{name}: {e}"));
                    conns = Conns::default();
                }
                Err(_) => {
                    failures.add(format!("{name}: no answer within {PATIENCE:?}"));
                    conns = Conns::default();
                }
            }
            tokio::time::sleep(PACE).await;
        }
    }
}

/// Runs every scenario once (the warm-up).
pub async fn once(addrs: Addrs, lat: &Latencies) -> Result<(), String> {
    let mut conns = Conns::default();
    for (scenario, name) in NAMES.iter().enumerate() {
        tokio::time::timeout(
            PATIENCE,
            run(scenario, scenario as u64, CLIENTS, &addrs, &mut conns, lat),
        )
        .await
        .map_err(|_| format!("{name}: timed out"))?
        .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

const SCENARIOS: usize = 7;
const NAMES: [&str; SCENARIOS] = [
    "long_poll /wait",
    "jobs 200",
    "pipe transfer",
    "signal round trip",
    "jobs 202 + long-poll",
    "long_poll /start",
    "hub publish + resume",
];

async fn run(
    scenario: usize,
    n: u64,
    me: usize,
    addrs: &Addrs,
    conns: &mut Conns,
    lat: &Latencies,
) -> Result<(), String> {
    match scenario {
        0 => {
            let conn = keep(&mut conns.long_poll, addrs.long_poll).await?;
            let t = Instant::now();
            let (status, body) = simple(conn, get("/wait?work_ms=0")).await?;
            expect(status, StatusCode::OK, &body)?;
            lat.record(0, t.elapsed());
            contains(&body, br#"{"slept_ms":0}"#)
        }
        1 => {
            let conn = keep(&mut conns.jobs, addrs.jobs).await?;
            let t = Instant::now();
            let (status, body) = simple(conn, post("/jobs?work_ms=0", Bytes::new())).await?;
            expect(status, StatusCode::OK, &body)?;
            lat.record(1, t.elapsed());
            contains(&body, br#"{"slept_ms":0}"#)
        }
        2 => pipe(addrs.pipe, n, lat).await,
        3 => signal(addrs.signal, &mut conns.signal, n, lat).await,
        4 => {
            let conn = keep(&mut conns.jobs, addrs.jobs).await?;
            let (status, head_loc, body) = {
                let res = conn
                    .send_request(post("/jobs?work_ms=40&deadline_ms=5", Bytes::new()))
                    .await
                    .map_err(|e| format!("POST: {e:?}"))?;
                let status = res.status();
                let loc = res
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (status, loc, collect(res.into_body()).await?)
            };
            expect(status, StatusCode::ACCEPTED, &body)?;
            let loc = head_loc.ok_or("a 202 without Location")?;
            let mut req = get(&loc);
            req.headers_mut()
                .insert("prefer", "wait=5".parse().map_err(|_| "prefer")?);
            let (status, body) = simple(conn, req)
                .await
                .map_err(|e| format!("GET {loc}: {e}"))?;
            expect(status, StatusCode::OK, &body)?;
            contains(&body, br#"{"slept_ms":40}"#)
        }
        6 => hub(addrs.hub, &mut conns.hub, n, me, lat).await,
        _ => {
            let conn = keep(&mut conns.long_poll, addrs.long_poll).await?;
            let (status, body) = simple(
                conn,
                get("/start?work_ms=30&interval_ms=10&initial_delay_ms=5"),
            )
            .await?;
            if status != StatusCode::ACCEPTED && status != StatusCode::OK {
                return Err(format!("status {status}"));
            }
            let text = String::from_utf8_lossy(&body);
            if text.trim_start() != r#"{"slept_ms":30}"# {
                return Err(format!("body {text:?}"));
            }
            Ok(())
        }
    }
}

/// A pipe transfer: POST 64 KiB, read the URL, GET it, compare, and read
/// the sender's `done:` line. Timed from the POST to the sender's end.
async fn pipe(addr: SocketAddr, n: u64, lat: &Latencies) -> Result<(), String> {
    let data: Bytes = (0..UPLOAD)
        .map(|i| (i as u64 ^ n) as u8)
        .collect::<Vec<u8>>()
        .into();
    let t = Instant::now();
    let mut sender = connect(addr).await?;
    let res = sender
        .send_request(post("/", data.clone()))
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != StatusCode::OK {
        return Err(format!("sender status {}", res.status()));
    }
    let mut sender_body = res.into_body();
    let mut got = Vec::new();
    read_until(&mut sender_body, &mut got, |b| b.contains(&b'\n')).await?;
    let text = String::from_utf8_lossy(&got).into_owned();
    let id = text
        .lines()
        .next()
        .and_then(|l| l.rsplit('/').next())
        .ok_or("no URL line")?
        .to_string();
    let mut receiver = connect(addr).await?;
    let (status, body) = simple(&mut receiver, get(&format!("/{id}"))).await?;
    expect(status, StatusCode::OK, &body)?;
    if body != data {
        return Err(format!(
            "download of {} bytes differs from the upload",
            body.len()
        ));
    }
    read_until(&mut sender_body, &mut got, |b| {
        b.ends_with(b"\n") && b.windows(5).any(|w| w == b"done:")
    })
    .await?;
    lat.record(2, t.elapsed());
    let text = String::from_utf8_lossy(&got);
    if !text.contains(&format!("done: {UPLOAD} bytes")) {
        return Err(format!("sender got {text:?}"));
    }
    Ok(())
}

/// A swarm of two: the initiator and a joiner connect, the initiator
/// signals, the joiner receives. Timed from the POST to the arrival.
async fn signal(
    addr: SocketAddr,
    keep_conn: &mut Option<Conn>,
    n: u64,
    lat: &Latencies,
) -> Result<(), String> {
    let (mut init_body, id, token) = open_stream(addr, "/").await?;
    let (mut join_body, _, _) = open_stream(addr, &format!("/{id}")).await?;
    let conn = keep(keep_conn, addr).await?;
    let json = format!(r#"{{"token":"{token}","data":{{"n":{n}}}}}"#);
    let mut req = post(&format!("/{id}"), Bytes::from(json));
    req.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().map_err(|_| "ct")?);
    let t = Instant::now();
    let (status, body) = simple(conn, req).await?;
    expect(status, StatusCode::OK, &body)?;
    let needle = format!(r#""data":{{"n":{n}}}"#);
    let mut got = Vec::new();
    read_until(&mut join_body, &mut got, |b| {
        b.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
    .await?;
    lat.record(3, t.elapsed());
    // The initiator sees the joiner and its own signal (echo).
    let mut seen = Vec::new();
    read_until(&mut init_body, &mut seen, |b| {
        b.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
    .await?;
    Ok(())
}

/// The hub: a subscriber opens an SSE stream of its client's channel, a
/// publish reaches it (timed from the POST to the arrival), then a second
/// publish is fetched by a long-poll that resumes from the stream's last
/// `id:` (no gap, exactly that message). One channel per client, so that
/// its long-poll session is renewed rather than one more opened each time
/// (every well-behaved client is one identity to the hub: 127.0.0.1).
async fn hub(
    addr: SocketAddr,
    keep_conn: &mut Option<Conn>,
    n: u64,
    me: usize,
    lat: &Latencies,
) -> Result<(), String> {
    let channel = format!("soak.c{me}");
    let mut sub = connect(addr).await?;
    let mut req = get(&format!("/sub/{channel}"));
    req.headers_mut()
        .insert(ACCEPT, "text/event-stream".parse().map_err(|_| "accept")?);
    let res = sub.send_request(req).await.map_err(|e| e.to_string())?;
    if res.status() != StatusCode::OK {
        return Err(format!("subscribe status {}", res.status()));
    }
    drop(sub);
    let mut stream = res.into_body();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, |b| {
        b.windows(2).any(|w| w == b"\n\n")
    })
    .await?;
    let conn = keep(keep_conn, addr).await?;
    let first = format!("m{n}");
    let t = Instant::now();
    let (status, body) =
        simple(conn, post(&format!("/pub/{channel}"), first.clone().into())).await?;
    expect(status, StatusCode::CREATED, &body)?;
    let needle = format!("data: {first}\n");
    read_until(&mut stream, &mut got, |b| {
        event_with(b, needle.as_bytes()).is_some()
    })
    .await?;
    lat.record(4, t.elapsed());
    let event = event_with(&got, needle.as_bytes()).ok_or("no event")?;
    let id = event
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .ok_or_else(|| format!("an event without id: {event:?}"))?
        .to_string();
    drop(stream);
    let second = format!("p{n}");
    let (status, body) = simple(
        conn,
        post(&format!("/pub/{channel}"), second.clone().into()),
    )
    .await?;
    if status != StatusCode::CREATED && status != StatusCode::ACCEPTED {
        return Err(format!("second publish: status {status}"));
    }
    let _ = body;
    let (status, body) = simple(conn, get(&format!("/poll/{channel}?cursor={id}"))).await?;
    expect(status, StatusCode::OK, &body)?;
    let v: serde_json::Value =
        serde_json::from_slice(body.trim_ascii_start()).map_err(|e| format!("poll: {e}"))?;
    let data: Vec<&str> = v["messages"]
        .as_array()
        .ok_or("poll without messages")?
        .iter()
        .filter_map(|m| m["data"].as_str())
        .collect();
    if v["gap"] != serde_json::Value::Bool(false) || data != [second.as_str()] {
        return Err(format!("the resumed poll got {v}"));
    }
    Ok(())
}

/// The text of the first whole SSE event in `b` that contains `needle`.
fn event_with(b: &[u8], needle: &[u8]) -> Option<String> {
    let at = b.windows(needle.len()).position(|w| w == needle)?;
    let start = b[..at]
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(0, |i| i + 2);
    let end = at + b[at..].windows(2).position(|w| w == b"\n\n")?;
    Some(String::from_utf8_lossy(&b[start..end]).into_owned())
}

/// `GET path` on the signal server; the body, the swarm id and the token
/// from the `connect` event.
async fn open_stream(addr: SocketAddr, path: &str) -> Result<(Incoming, String, String), String> {
    let mut conn = connect(addr).await?;
    let mut req = get(path);
    req.headers_mut()
        .insert(ACCEPT, "text/event-stream".parse().map_err(|_| "accept")?);
    let res = conn.send_request(req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("stream status {}", res.status()));
    }
    // The connection task lives as long as the body is read.
    drop(conn);
    let mut body = res.into_body();
    let mut got = Vec::new();
    read_until(&mut body, &mut got, |b| b.windows(2).any(|w| w == b"\n\n")).await?;
    let text = String::from_utf8_lossy(&got);
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .ok_or("no connect event")?;
    let v: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or(format!("no {k}"))
    };
    Ok((body, field("id")?, field("token")?))
}

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (tx, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// A keep-alive connection, opened again when the last one closed.
async fn keep(slot: &mut Option<Conn>, addr: SocketAddr) -> Result<&mut Conn, String> {
    let usable = match slot {
        Some(c) => c.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *slot = Some(connect(addr).await?);
    }
    slot.as_mut().ok_or_else(|| "no connection".to_string())
}

async fn simple(conn: &mut Conn, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
    // A keep-alive connection takes the next request only once it is ready
    // again (hyper answers "connection was not ready" otherwise).
    conn.ready().await.map_err(|e| format!("{e:?}"))?;
    let res = conn.send_request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = res.status();
    Ok((status, collect(res.into_body()).await?))
}

async fn collect(body: Incoming) -> Result<Bytes, String> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("body cut: {e}"))
}

async fn read_until(
    body: &mut Incoming,
    got: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> Result<(), String> {
    while !done(got) {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(format!("stream cut: {e}")),
            None => {
                return Err(format!(
                    "stream ended early: {:?}",
                    String::from_utf8_lossy(got)
                ))
            }
        }
    }
    Ok(())
}

fn get(path: &str) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = path.parse().unwrap_or_default();
    req.headers_mut()
        .insert(HOST, http::HeaderValue::from_static("soak"));
    req
}

fn post(path: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = get(path);
    *req.method_mut() = http::Method::POST;
    *req.body_mut() = Full::new(body);
    req
}

fn expect(status: StatusCode, want: StatusCode, body: &[u8]) -> Result<(), String> {
    if status == want {
        Ok(())
    } else {
        Err(format!(
            "status {status}, wanted {want}: {:?}",
            String::from_utf8_lossy(body)
        ))
    }
}

fn contains(body: &[u8], needle: &[u8]) -> Result<(), String> {
    if body.windows(needle.len()).any(|w| w == needle) {
        Ok(())
    } else {
        Err(format!("body {:?}", String::from_utf8_lossy(body)))
    }
}
