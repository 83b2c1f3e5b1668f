//! Misbehaving clients, on raw sockets: aborts at every stage (FIN or
//! RST), slow readers, half-sent bodies, pipelined requests, slow headers,
//! idle connections, cut HTTP/2 prefaces, and the hub's streams and polls
//! cut or left. Each one ends by itself within a few seconds; at most
//! [`MAX_AT_ONCE`] run at once.
//!
//! They all connect from 127.0.0.2 ([`CLIENT_IP`]), the well-behaved
//! clients from 127.0.0.1: to the services' per-client caps they are two
//! clients, and the misbehaving one may be answered `429` (counted in
//! [`RudeStats::limited`]) while the well-behaved one never is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::servers::{Addrs, HEADER_READ_TIMEOUT};

/// The address the misbehaving clients connect from.
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The hub channels the misbehaving clients use (`r0`…): few, as in a
/// real application, so that what their history holds is bounded (see
/// `shim::hub`).
const HUB_CHANNELS: u64 = 8;

/// Connections that could not bind [`CLIENT_IP`] and came from the default
/// address instead (then they share the well-behaved clients' caps).
pub static UNBOUND: AtomicU64 = AtomicU64::new(0);

/// Misbehaving clients at once, at most.
pub const MAX_AT_ONCE: usize = 48;
/// A new misbehaving client every this long (while below the cap).
const SPAWN_EVERY: Duration = Duration::from_millis(4);
/// The longest a misbehaving client may live before it counts as stuck.
pub const LIFETIME: Duration = Duration::from_secs(10);

/// The kinds of misbehaviour, with their names in the report.
pub const KINDS: [&str; N] = [
    "abort at a stage",
    "slow long-poll reader",
    "slow pipe receiver",
    "slow signal peer",
    "half-sent pipe upload",
    "half-sent signal POST",
    "half-sent jobs POST",
    "pipelined requests",
    "slow headers",
    "idle connection",
    "cut h2c preface",
    "hub stream cut",
    "slow hub reader",
    "hub long-poll left",
    "half-sent hub publish",
];
const N: usize = 15;

/// Counters per kind, and the outcomes that are failures.
pub struct RudeStats {
    pub started: [AtomicU64; N],
    /// Per kind: clients still running at [`LIFETIME`].
    pub stuck: [AtomicU64; N],
    /// Pipelined requests that did not get all their answers.
    pub pipeline_short: AtomicU64,
    /// Slow-header requests answered / cut by the server.
    pub slow_served: AtomicU64,
    pub slow_cut: AtomicU64,
    /// Slow-header requests answered though their head took well over the
    /// header read timeout, or cut though it took well under it.
    pub slow_wrong: AtomicU64,
    /// Answers `429 Too Many Requests` (per-client caps) seen.
    pub limited: AtomicU64,
}

impl RudeStats {
    pub fn new() -> Self {
        RudeStats {
            started: std::array::from_fn(|_| AtomicU64::new(0)),
            stuck: std::array::from_fn(|_| AtomicU64::new(0)),
            pipeline_short: AtomicU64::new(0),
            slow_served: AtomicU64::new(0),
            slow_cut: AtomicU64::new(0),
            slow_wrong: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }
}

/// A small deterministic generator (xorshift64*), so a run can be repeated
/// with `--seed`.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Spawns misbehaving clients until `stop`, then waits for them.
pub async fn spawner(addrs: Addrs, stats: Arc<RudeStats>, stop: Arc<AtomicBool>, seed: u64) {
    let permits = Arc::new(Semaphore::new(MAX_AT_ONCE));
    let mut set = JoinSet::new();
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let kind = rng.below(KINDS.len() as u64) as usize;
        stats.started[kind].fetch_add(1, Relaxed);
        let stats2 = stats.clone();
        let rng2 = Rng::new(rng.next());
        set.spawn(async move {
            let _permit = permit;
            if tokio::time::timeout(LIFETIME, one(kind, addrs, rng2, &stats2))
                .await
                .is_err()
            {
                stats2.stuck[kind].fetch_add(1, Relaxed);
            }
        });
        while set.try_join_next().is_some() {}
        tokio::time::sleep(SPAWN_EVERY).await;
    }
    while set.join_next().await.is_some() {}
}

/// Runs each kind once (the warm-up).
pub async fn each_once(addrs: Addrs, stats: &RudeStats, seed: u64) {
    let mut rng = Rng::new(seed);
    for kind in 0..KINDS.len() {
        let _ = tokio::time::timeout(LIFETIME, one(kind, addrs, Rng::new(rng.next()), stats)).await;
    }
}

async fn one(kind: usize, a: Addrs, mut rng: Rng, stats: &RudeStats) {
    match kind {
        0 => abort(a, &mut rng).await,
        1..=3 => slow_reader(a, kind - 1, &mut rng).await,
        4..=6 => half_sent(a, kind - 4, &mut rng).await,
        7 => {
            if !pipelined(a, &mut rng).await {
                stats.pipeline_short.fetch_add(1, Relaxed);
            }
        }
        8 => {
            if let Some((served, took)) = slow_headers(a, &mut rng).await {
                let counter = if served {
                    &stats.slow_served
                } else {
                    &stats.slow_cut
                };
                counter.fetch_add(1, Relaxed);
                // The server's clock starts at its accept, a little after
                // the client's connect: margins on both sides.
                let too_slow = took > HEADER_READ_TIMEOUT + Duration::from_secs(1);
                let quick = took + Duration::from_millis(500) < HEADER_READ_TIMEOUT;
                if (served && too_slow) || (!served && quick) {
                    eprintln!(
                        "soak: a slow head sent in {took:?} was {}",
                        if served { "answered" } else { "cut" }
                    );
                    stats.slow_wrong.fetch_add(1, Relaxed);
                }
            }
        }
        9 => idle(a, &mut rng).await,
        10 => h2c_cut(a, &mut rng).await,
        _ => hub(a, kind - 11, &mut rng, stats).await,
    }
}

/// A request of some route, as raw bytes, and where it goes.
fn some_request(a: Addrs, rng: &mut Rng) -> (SocketAddr, Vec<u8>, usize) {
    let k = rng.below(HUB_CHANNELS);
    let (addr, head, body): (SocketAddr, String, Vec<u8>) = match rng.below(10) {
        7 => (a.hub, get(&format!("/sub/r{k}")), vec![]),
        8 => (a.hub, get(&format!("/poll/r{k}")), vec![]),
        9 => (a.hub, post(&format!("/pub/r{k}"), 2000), vec![b'h'; 2000]),
        0 => (
            a.long_poll,
            get("/start?work_ms=2000&interval_ms=20&initial_delay_ms=0"),
            vec![],
        ),
        1 => (a.long_poll, get("/wait?work_ms=300"), vec![]),
        2 => (
            a.jobs,
            post("/jobs?work_ms=300&deadline_ms=1000", 0),
            vec![],
        ),
        3 => (a.jobs, post("/jobs?work_ms=2000&deadline_ms=20", 0), vec![]),
        4 => (a.pipe, post("/", 20_000), vec![b'p'; 20_000]),
        5 => (a.signal, get("/"), vec![]),
        _ => (
            a.jobs,
            get_with("/jobs/AAAAAAAAAAAAAAAAAAAAAA", "Prefer: wait=2\r\n"),
            vec![],
        ),
    };
    let head_len = head.len();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    (addr, bytes, head_len)
}

/// Sends part of a request (or all of it, and reads a little) and goes
/// away, with a FIN or a RST.
async fn abort(a: Addrs, rng: &mut Rng) {
    let (addr, req, head_len) = some_request(a, rng);
    let Some(mut s) = connect(addr).await else {
        return;
    };
    let stage = rng.below(7);
    let upto = match stage {
        0 => 0,
        1 => rng.below(16) as usize + 1,
        2 => head_len - 2,
        3 => head_len + (req.len() - head_len) / 2,
        _ => req.len(),
    };
    let _ = s.write_all(&req[..upto]).await;
    match stage {
        5 => {
            let _ = read_some(&mut s, Duration::from_secs(3)).await;
        }
        6 => {
            let until = tokio::time::Instant::now() + rng.ms(50, 800);
            while tokio::time::Instant::now() < until {
                if read_some(&mut s, until - tokio::time::Instant::now()).await == 0 {
                    break;
                }
            }
        }
        _ => {}
    }
    close(s, rng.below(2) == 0);
}

/// A client that does not read: a long-poll with fast heartbeats, a pipe
/// receiver that reads a little now and then and leaves, or a signal peer
/// that never reads while its swarm is flooded.
async fn slow_reader(a: Addrs, which: usize, rng: &mut Rng) {
    match which {
        0 => {
            let Some(s) = small_buffer_connect(a.long_poll).await else {
                return;
            };
            let mut s = s;
            let _ = s
                .write_all(get("/start?work_ms=3000&interval_ms=1&initial_delay_ms=0").as_bytes())
                .await;
            tokio::time::sleep(rng.ms(500, 3000)).await;
            close(s, rng.below(2) == 0);
        }
        1 => {
            const LEN: usize = 512 * 1024;
            let Some(mut sender) = connect(a.pipe).await else {
                return;
            };
            let _ = sender.write_all(post("/", LEN).as_bytes()).await;
            let head = read_for(&mut sender, b"\n\r\n", Duration::from_secs(3)).await;
            let Some(id) = url_id(&head) else { return };
            let (mut rd, mut wr) = sender.into_split();
            let writer = tokio::spawn(async move {
                let chunk = vec![b'q'; 16 * 1024];
                for _ in 0..LEN / chunk.len() {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                wr
            });
            let Some(mut receiver) = small_buffer_connect(a.pipe).await else {
                return;
            };
            let _ = receiver.write_all(get(&format!("/{id}")).as_bytes()).await;
            let until = tokio::time::Instant::now() + rng.ms(200, 1500);
            let mut buf = [0u8; 4096];
            while tokio::time::Instant::now() < until {
                match tokio::time::timeout(Duration::from_millis(50), receiver.read(&mut buf)).await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            close(receiver, rng.below(2) == 0);
            // The sender is told the receiver went away; then it leaves.
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut sink)).await;
            writer.abort();
        }
        _ => {
            let Some((init, id, token)) = swarm(a.signal).await else {
                return;
            };
            let Some(mut lazy) = small_buffer_connect(a.signal).await else {
                return;
            };
            let _ = lazy.write_all(get(&format!("/{id}")).as_bytes()).await;
            let Some(mut poster) = connect(a.signal).await else {
                return;
            };
            let data = "x".repeat(4000);
            let json = format!(r#"{{"token":"{token}","data":"{data}"}}"#);
            for _ in 0..40 {
                let req = format!(
                    "POST /{id} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                );
                if poster.write_all(req.as_bytes()).await.is_err() {
                    break;
                }
                // `200` and its body `OK`; anything else (the swarm closed
                // because the initiator, which does not read either, was cut
                // as too slow) ends the flood.
                let got = read_for(&mut poster, b"\r\n\r\nOK", Duration::from_secs(2)).await;
                if !got.starts_with(b"HTTP/1.1 200") || !got.ends_with(b"\r\n\r\nOK") {
                    break;
                }
            }
            close(lazy, false);
            close(poster, false);
            close(init, rng.below(2) == 0);
        }
    }
}

/// Declares a body, sends part of it, waits, and leaves; for the pipe, a
/// receiver watches the cut.
async fn half_sent(a: Addrs, which: usize, rng: &mut Rng) {
    match which {
        0 => {
            let Some(mut s) = connect(a.pipe).await else {
                return;
            };
            let _ = s.write_all(post("/", 10_000).as_bytes()).await;
            let _ = s.write_all(&[b'h'; 100]).await;
            let head = read_for(&mut s, b"\n\r\n", Duration::from_secs(3)).await;
            let receiver = match url_id(&head) {
                Some(id) if rng.below(2) == 0 => {
                    let r = connect(a.pipe).await;
                    if let Some(mut r) = r {
                        let _ = r.write_all(get(&format!("/{id}")).as_bytes()).await;
                        let _ = read_for(&mut r, b"hhhh", Duration::from_secs(2)).await;
                        Some(r)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            tokio::time::sleep(rng.ms(100, 1500)).await;
            close(s, rng.below(2) == 0);
            if let Some(mut r) = receiver {
                let mut sink = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(3), r.read_to_end(&mut sink)).await;
            }
        }
        1 => {
            let Some((init, id, token)) = swarm(a.signal).await else {
                return;
            };
            let Some(mut s) = connect(a.signal).await else {
                return;
            };
            let head = format!(
                "POST /{id} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"token\":\"{token}\",\"da"
            );
            let _ = s.write_all(head.as_bytes()).await;
            tokio::time::sleep(rng.ms(100, 1500)).await;
            close(s, rng.below(2) == 0);
            close(init, false);
        }
        _ => {
            let Some(mut s) = connect(a.jobs).await else {
                return;
            };
            let _ = s
                .write_all(post("/jobs?work_ms=100", 1000).as_bytes())
                .await;
            let _ = s.write_all(&[b'j'; 10]).await;
            tokio::time::sleep(rng.ms(100, 1500)).await;
            close(s, rng.below(2) == 0);
        }
    }
}

/// Several requests in one write; every one must be answered, in order.
async fn pipelined(a: Addrs, rng: &mut Rng) -> bool {
    let (addr, reqs): (SocketAddr, Vec<String>) = match rng.below(3) {
        0 => (
            a.long_poll,
            vec![
                get("/wait?work_ms=0"),
                get("/wait?work_ms=5"),
                get("/nowhere"),
                get("/wait?work_ms=0"),
            ],
        ),
        1 => (
            a.jobs,
            vec![
                post("/jobs?work_ms=0", 0),
                get("/jobs/AAAAAAAAAAAAAAAAAAAAAA"),
                post("/jobs?work_ms=1", 0),
            ],
        ),
        _ => (
            a.pipe,
            vec![get("/reserve"), get("/AAAAAAAAAAAA"), get("/reserve")],
        ),
    };
    let Some(mut s) = connect(addr).await else {
        return true;
    };
    let n = reqs.len();
    let mut all = String::new();
    for (i, r) in reqs.into_iter().enumerate() {
        if i + 1 == n {
            all.push_str(&r.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1));
        } else {
            all.push_str(&r);
        }
    }
    let _ = s.write_all(all.as_bytes()).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let answers = got.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    answers == n
}

/// Sends a request a byte at a time (a head of 63 bytes, one every 10–60
/// ms: 0.6–3.8 s in all, around the servers' 2 s header read timeout);
/// sometimes gives up half-way. `Some((answered?, how long the head took
/// to send))` when it sent everything.
async fn slow_headers(a: Addrs, rng: &mut Rng) -> Option<(bool, Duration)> {
    let req = get("/wait?work_ms=0").replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
    let mut s = connect(a.long_poll).await?;
    let started = Instant::now();
    let give_up = (rng.below(2) == 0).then(|| rng.below(req.len() as u64) as usize);
    let pause = rng.ms(10, 60);
    for (i, b) in req.bytes().enumerate() {
        if give_up == Some(i) {
            close(s, rng.below(2) == 0);
            return None;
        }
        if s.write_all(&[b]).await.is_err() {
            return Some((false, started.elapsed()));
        }
        if i + 1 < req.len() {
            tokio::time::sleep(pause).await;
        }
    }
    let took = started.elapsed();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    Some((got.starts_with(b"HTTP/1.1 200"), took))
}

/// The hub's misbehaving clients: a stream cut at some point (FIN or RST),
/// a stream that never reads while its channel is flooded, a long-poll
/// left while it waits, a publish whose body stops half-way.
async fn hub(a: Addrs, which: usize, rng: &mut Rng, stats: &RudeStats) {
    let channel = format!("r{}", rng.below(HUB_CHANNELS));
    match which {
        0 => {
            let Some(mut s) = connect(a.hub).await else {
                return;
            };
            let _ = s
                .write_all(get(&format!("/sub/{channel}")).as_bytes())
                .await;
            let head = read_for(&mut s, b"\n\n", Duration::from_secs(2)).await;
            note_limited(&head, stats);
            if rng.below(2) == 0 {
                if let Some(mut p) = connect(a.hub).await {
                    let _ = p
                        .write_all(post(&format!("/pub/{channel}"), 5).as_bytes())
                        .await;
                    let _ = p.write_all(b"hello").await;
                    let answer = read_for(&mut p, b"}", Duration::from_secs(2)).await;
                    note_limited(&answer, stats);
                    close(p, false);
                }
                let _ = read_for(&mut s, b"hello", Duration::from_millis(500)).await;
            }
            tokio::time::sleep(rng.ms(0, 1000)).await;
            close(s, rng.below(2) == 0);
        }
        1 => {
            let Some(mut lazy) = small_buffer_connect(a.hub).await else {
                return;
            };
            let _ = lazy
                .write_all(get(&format!("/sub/{channel}")).as_bytes())
                .await;
            let Some(mut poster) = connect(a.hub).await else {
                return;
            };
            let data = "y".repeat(4000);
            for _ in 0..40 {
                let req = format!(
                    "POST /pub/{channel} HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n\r\n{data}",
                    data.len()
                );
                if poster.write_all(req.as_bytes()).await.is_err() {
                    break;
                }
                let got = read_for(&mut poster, b"}", Duration::from_secs(2)).await;
                note_limited(&got, stats);
                if !got.starts_with(b"HTTP/1.1 20") {
                    break;
                }
            }
            close(poster, false);
            close(lazy, rng.below(2) == 0);
        }
        2 => {
            let Some(mut s) = connect(a.hub).await else {
                return;
            };
            let _ = s
                .write_all(get_with(&format!("/poll/{channel}"), "Prefer: wait=3\r\n").as_bytes())
                .await;
            let early = read_some(&mut s, rng.ms(100, 1500)).await;
            let _ = early;
            close(s, rng.below(2) == 0);
        }
        _ => {
            let Some(mut s) = connect(a.hub).await else {
                return;
            };
            let _ = s
                .write_all(post(&format!("/pub/{channel}"), 5000).as_bytes())
                .await;
            let _ = s.write_all(&[b'z'; 10]).await;
            tokio::time::sleep(rng.ms(100, 1500)).await;
            close(s, rng.below(2) == 0);
        }
    }
}

/// Counts an answer `429` (a per-client cap of the misbehaving client).
fn note_limited(answer: &[u8], stats: &RudeStats) {
    if answer.starts_with(b"HTTP/1.1 429") {
        stats.limited.fetch_add(1, Relaxed);
    }
}

/// Connects and says nothing (or one byte, or one whole request first),
/// then leaves.
async fn idle(a: Addrs, rng: &mut Rng) {
    let addr = [a.pipe, a.signal, a.jobs, a.long_poll, a.hub][rng.below(5) as usize];
    let Some(mut s) = connect(addr).await else {
        return;
    };
    match rng.below(3) {
        0 => {}
        1 => {
            let _ = s.write_all(b"G").await;
        }
        _ => {
            let _ = s.write_all(get("/nowhere").as_bytes()).await;
            let _ = read_for(&mut s, b"\r\n\r\n", Duration::from_secs(2)).await;
        }
    }
    tokio::time::sleep(rng.ms(200, 3000)).await;
    close(s, rng.below(2) == 0);
}

/// An HTTP/2 prior-knowledge preface cut somewhere, or a preface and a
/// SETTINGS frame and then silence.
async fn h2c_cut(a: Addrs, rng: &mut Rng) {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let addr = [a.pipe, a.signal, a.jobs, a.long_poll, a.hub][rng.below(5) as usize];
    let Some(mut s) = connect(addr).await else {
        return;
    };
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(SETTINGS);
    let upto = rng.below(bytes.len() as u64 + 1) as usize;
    let _ = s.write_all(&bytes[..upto]).await;
    let _ = read_some(&mut s, rng.ms(10, 500)).await;
    close(s, rng.below(2) == 0);
}

/// Opens a swarm on a raw socket: `(stream, id, token)`.
async fn swarm(addr: SocketAddr) -> Option<(TcpStream, String, String)> {
    let mut s = connect(addr).await?;
    s.write_all(get("/").as_bytes()).await.ok()?;
    let got = read_for(&mut s, b"}\n\n", Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    let field = |k: &str| {
        let at = text.find(&format!("\"{k}\":\""))? + k.len() + 4;
        Some(text[at..at + 32].to_string())
    };
    Some((s, field("id")?, field("token")?))
}

/// A connection from [`CLIENT_IP`] (from the default address if that
/// cannot be bound).
async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = bound_socket()?.connect(addr).await.ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

/// A connection with a small receive buffer, so that not reading pushes
/// back on the server soon.
async fn small_buffer_connect(addr: SocketAddr) -> Option<TcpStream> {
    let socket = bound_socket()?;
    let _ = socket.set_recv_buffer_size(4096);
    socket.connect(addr).await.ok()
}

fn bound_socket() -> Option<TcpSocket> {
    let socket = TcpSocket::new_v4().ok()?;
    if socket.bind(SocketAddr::new(CLIENT_IP, 0)).is_err() {
        UNBOUND.fetch_add(1, Relaxed);
    }
    Some(socket)
}

/// Closes with a FIN, or with a RST when `rst`.
fn close(s: TcpStream, rst: bool) {
    if rst {
        let _ = s.set_zero_linger();
    }
    drop(s);
}

/// Reads once (up to 8 KiB) within `within`; the bytes read.
async fn read_some(s: &mut TcpStream, within: Duration) -> usize {
    let mut buf = [0u8; 8192];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    }
}

/// Reads until `needle` was seen, the stream ends, or `within` passed.
async fn read_for(s: &mut TcpStream, needle: &[u8], within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        while !got.windows(needle.len()).any(|w| w == needle) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// The id of the download URL in a pipe sender's first bytes.
fn url_id(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let at = text.find("http://")?;
    let line = text[at..].lines().next()?;
    Some(line.rsplit('/').next()?.to_string())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n")
}

fn get_with(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\n{extra}\r\n")
}

fn post(path: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len}\r\n\r\n")
}
