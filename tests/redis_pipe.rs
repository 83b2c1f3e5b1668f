//! The pipe across instances: two pipes (instances) on their own ports,
//! one real `redis-server`; the upload waits on A, the download streams
//! through B.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::RedisBackplane;
use delayed_response::pipe::{self, Builder};
use delayed_response::server::Server;
use delayed_response::Heartbeat;
use support::redis::RedisServer;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A short heartbeat, so that a sender that left is seen quickly.
const BEAT: Duration = Duration::from_millis(50);
/// The lease of the holds: long enough for a loaded machine (a debug
/// build generating 100 MB); the renewal test uses [`SHORT_LEASE`].
const LEASE: Duration = Duration::from_secs(5);
/// Holds renewed every 200 ms: a renewal may be late by two of them.
const SHORT_LEASE: Duration = Duration::from_millis(600);

fn pipe() -> Builder {
    pipe::Service::builder().heartbeat(Heartbeat::every(BEAT))
}

/// An instance: a pipe with its own Redis connection, on its own port,
/// advertising that port.
struct Instance {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Instance {
    async fn start(redis: &RedisServer, builder: Builder, lease: Duration) -> Instance {
        let backplane = RedisBackplane::builder(redis.url())
            .timeout(Duration::from_millis(500))
            .lease(lease)
            .connect()
            .await
            .expect("connect to redis");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pipe = builder
            .backplane(Arc::new(backplane))
            .advertise(format!("http://{addr}"))
            .build();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::new().grace_period(Duration::from_secs(1));
        let task = tokio::spawn(server.serve(listener, pipe, async {
            let _ = stopped.await;
        }));
        Instance { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = within("the instance to stop", self.task).await;
    }
}

/// Two instances on one Redis, or `None` without `redis-server`.
async fn two(builder: impl Fn() -> Builder) -> Option<(RedisServer, Instance, Instance)> {
    two_with(builder, LEASE).await
}

async fn two_with(
    builder: impl Fn() -> Builder,
    lease: Duration,
) -> Option<(RedisServer, Instance, Instance)> {
    let redis = RedisServer::start().await?;
    let a = Instance::start(&redis, builder(), lease).await;
    let b = Instance::start(&redis, builder(), lease).await;
    Some((redis, a, b))
}

/// A sender whose response head and URL line were read.
struct Sender {
    stream: TcpStream,
    buf: Vec<u8>,
    id: String,
}

impl Sender {
    /// Sends `head` (a request without its body) and reads up to the URL
    /// line.
    async fn open(addr: SocketAddr, head: &str) -> Sender {
        let mut stream = send_raw(addr, head).await;
        let mut buf = Vec::new();
        read_until(&mut stream, &mut buf, b"\n\r\n").await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        let start = text.find("http://test/").expect("a URL line");
        let url = text[start..].split('\n').next().unwrap();
        let id = url.rsplit('/').next().unwrap().to_owned();
        Sender { stream, buf, id }
    }

    /// Reads the rest of the response; its text, and whether it ended with
    /// the final chunk.
    async fn finish(mut self) -> (String, bool) {
        within("the sender's response to end", async {
            while !self.buf.ends_with(b"\r\n0\r\n\r\n") {
                let mut chunk = [0u8; 8192];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let complete = self.buf.ends_with(b"\r\n0\r\n\r\n");
        (String::from_utf8_lossy(&self.buf).into_owned(), complete)
    }
}

fn post(len: u64) -> String {
    format!("POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n")
}

async fn download(addr: SocketAddr, id: &str) -> RawResponse {
    let mut s = get(addr, &format!("/{id}")).await;
    read_response(&mut s).await
}

/// Byte `i` of the generated upload: depends on its position, so a lost,
/// repeated or reordered byte shows.
fn byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (i >> 16) as u8
}

/// Reads a response head; the head's text, and the body bytes read past it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    read_until(stream, &mut buf, b"\r\n\r\n").await;
    let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
    let rest = buf.split_off(end);
    (String::from_utf8_lossy(&buf).into_owned(), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_streams_through_a_get_on_b_byte_identical_over_100_mb() {
    const LEN: u64 = 100 * 1024 * 1024;
    let Some((_redis, a, b)) = two(pipe).await else {
        return;
    };
    let mut sender = Sender::open(a.addr, &post(LEN)).await;
    let mut rx = get(b.addr, &format!("/{}", sender.id)).await;
    let mut upload = sender.stream;
    let writer = tokio::spawn(async move {
        let mut block = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        while at < LEN {
            let n = block.len().min((LEN - at) as usize);
            for (k, b) in block[..n].iter_mut().enumerate() {
                *b = byte(at + k as u64);
            }
            upload.write_all(&block[..n]).await.unwrap();
            at += n as u64;
        }
        upload
    });
    let check = async {
        let (head, first) = read_head(&mut rx).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {LEN}\r\n")),
            "{head}"
        );
        let mut at = 0u64;
        let mut chunk = first;
        loop {
            for &got in &chunk {
                assert_eq!(got, byte(at), "byte {at}");
                at += 1;
            }
            if at >= LEN {
                break;
            }
            chunk.resize(256 * 1024, 0);
            let n = rx.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the download ended after {at} bytes");
            chunk.truncate(n);
        }
        assert_eq!(at, LEN);
    };
    tokio::time::timeout(Duration::from_secs(120), check)
        .await
        .expect("100 MB within 120 s");
    sender.stream = within("the upload to be written", writer).await.unwrap();
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(text.contains(&format!("done: {LEN} bytes")), "{text}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_receiver_leaving_b_mid_transfer_cuts_the_senders_transfer_on_a() {
    let Some((_redis, a, b)) = two(pipe).await else {
        return;
    };
    let mut sender = Sender::open(a.addr, &post(1_000_000)).await;
    let mut rx = get(b.addr, &format!("/{}", sender.id)).await;
    sender.stream.write_all(b"partial").await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"partial").await;
    drop(rx);
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(text.contains("cut: the receiver went away"), "{text}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_sender_leaving_a_mid_transfer_ends_the_receivers_body_on_b_abnormally() {
    let Some((_redis, a, b)) = two(pipe).await else {
        return;
    };
    let mut sender = Sender::open(a.addr, &post(100)).await;
    let mut rx = get(b.addr, &format!("/{}", sender.id)).await;
    sender.stream.write_all(b"first").await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"first").await;
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-length: 100\r\n"), "{head}");
    sender.stream.set_zero_linger().unwrap();
    drop(sender);
    // The connection closes without the other 95 bytes.
    within("the receiver's connection to close", async {
        let _ = rx.read_to_end(&mut buf).await;
    })
    .await;
    let body_at = find(&buf, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&buf[body_at..], b"first");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_malformed_and_taken_ids_on_b_answer_as_on_one_instance() {
    let Some((redis, a, b)) = two(pipe).await else {
        return;
    };
    let local = download(a.addr, "AAAAAAAAAAAA").await;
    let remote = download(b.addr, "AAAAAAAAAAAA").await;
    assert_eq!(local.status, 404);
    assert_eq!((remote.status, remote.body), (local.status, local.body));
    assert_eq!(download(b.addr, "short").await.status, 404);
    let mut sender = Sender::open(a.addr, &post(5)).await;
    sender.stream.write_all(b"hello").await.unwrap();
    let got = download(b.addr, &sender.id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    // Taken: on either instance, as on one.
    assert_eq!(download(b.addr, &sender.id).await.status, 404);
    assert_eq!(download(a.addr, &sender.id).await.status, 404);
    // The owner released its hold (no event says when: look).
    let key = format!("EXISTS dr:pipe:{}", sender.id);
    within("the hold to be released", async {
        while !redis.command(&key).await.starts_with(":0") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 5 bytes"), "{text}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_socket_waiting_over_several_leases_is_still_reached_from_b() {
    let Some((_redis, a, b)) = two_with(pipe, SHORT_LEASE).await else {
        return;
    };
    let mut sender = Sender::open(a.addr, &post(2)).await;
    sender.stream.write_all(b"ok").await.unwrap();
    // Time itself is the point here: the hold must outlive its lease.
    tokio::time::sleep(SHORT_LEASE * 3).await;
    let got = download(b.addr, &sender.id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_forged_forward_header_is_refused_and_takes_nothing() {
    let Some((redis, a, b)) = two(pipe).await else {
        return;
    };
    let mut sender = Sender::open(a.addr, &post(2)).await;
    sender.stream.write_all(b"ok").await.unwrap();
    let forged = format!(
        "GET /{} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Pipe-Forward: guess\r\n\r\n",
        sender.id
    );
    for addr in [a.addr, b.addr] {
        let res = read_response(&mut send_raw(addr, &forged).await).await;
        assert_eq!(res.status, 403, "{}", res.text());
    }
    // A wrong secret makes the instance read the secret again at most once
    // a second, not once per request (lease renewals may add a few calls).
    let before = redis.script_calls().await;
    for _ in 0..50 {
        let res = read_response(&mut send_raw(b.addr, &forged).await).await;
        assert_eq!(res.status, 403, "{}", res.text());
    }
    let calls = redis.script_calls().await - before;
    assert!(
        calls < 10,
        "50 forged forwards cost {calls} Redis script calls"
    );
    let got = download(b.addr, &sender.id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_reservation_made_on_a_is_409_on_b_until_its_upload_through_b() {
    let Some((_redis, a, b)) = two(|| pipe().reservations(true)).await else {
        return;
    };
    let mut s = get(a.addr, "/reserve").await;
    let reserved = read_response(&mut s).await;
    assert_eq!(reserved.status, 200, "{}", reserved.text());
    let text = reserved.text();
    let mut lines = text.lines();
    let id = lines.next().unwrap().strip_prefix("http://test/").unwrap();
    let upload = lines.next().unwrap().strip_prefix("http://test").unwrap();
    assert_eq!(download(b.addr, id).await.status, 409);
    let head = format!(
        "POST {upload} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 5\r\n\r\n"
    );
    let mut sender = Sender::open(b.addr, &head).await;
    assert_eq!(
        sender.id, id,
        "the URL line names the reservation, at the client's host"
    );
    sender.stream.write_all(b"hello").await.unwrap();
    let got = download(b.addr, id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    let (text, complete) = sender.finish().await;
    assert!(complete && text.contains("done: 5 bytes"), "{text}");
    a.stop().await;
    b.stop().await;
}

/// A port nothing listens on now (as `RedisServer` picks its own): the
/// example must know its address before it binds, to advertise it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn two_pipe_server_processes_share_one_pipe_through_redis() {
    use support::example::{example, listen};
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut servers = Vec::new();
    for _ in 0..2 {
        let addr = format!("127.0.0.1:{}", free_port());
        let advertise = format!("http://{addr}");
        let mut cmd = example("pipe_server");
        cmd.args(["--addr", &addr, "--redis", &redis.url()])
            .args(["--advertise", &advertise]);
        servers.push(listen(&mut cmd, "http").await);
    }
    let (a, b) = (servers[0].addr, servers[1].addr);
    let mut sender = Sender::open(a, &post(5)).await;
    sender.stream.write_all(b"hello").await.unwrap();
    let got = download(b, &sender.id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    let (text, complete) = sender.finish().await;
    assert!(complete && text.contains("done: 5 bytes"), "{text}");
}

#[tokio::test]
async fn without_redis_new_sockets_and_lookups_answer_503_and_local_sockets_go_on() {
    let Some((mut redis, a, b)) = two(pipe).await else {
        return;
    };
    let mut waiting = Sender::open(a.addr, &post(2)).await;
    waiting.stream.write_all(b"ok").await.unwrap();
    redis.stop();
    // Nothing is accepted that the other instances could not find.
    let mut refused = send_raw(a.addr, &post(2)).await;
    let refused = read_response(&mut refused).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    let lookup = download(b.addr, "AAAAAAAAAAAA").await;
    assert_eq!(lookup.status, 503, "{}", lookup.text());
    // A socket is still taken where it waits.
    let got = download(a.addr, &waiting.id).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"));
    a.stop().await;
    b.stop().await;
}
