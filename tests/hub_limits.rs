//! The hub's abuse limits: token buckets (429 + Retry-After), the
//! connection cap, and slow consumers cut off while nobody else waits.
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use delayed_response::hub::{Hub, Namespace, Publishers, Reason};
use delayed_response::limit::{ClientKey, Rate};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use support::sse::SseStream;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn open() -> delayed_response::hub::Builder {
    Hub::builder()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
        .no_limits()
}

async fn publish(addr: SocketAddr) -> RawResponse {
    post(addr, "/pub/a", None, "x").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_the_rate_get_429_with_retry_after() {
    let hub = open()
        .publish_rate(Some(Rate::per_second(0.5).burst(2)))
        .build();
    let server = serve(hub.service()).await;
    assert_eq!(publish(server.addr).await.status, 202);
    assert_eq!(publish(server.addr).await.status, 202);
    let res = publish(server.addr).await;
    assert_eq!(res.status, 429);
    assert_eq!(res.header("retry-after"), Some("2"));
    assert_eq!(hub.stats().messages_in, 2);
    // The application is not limited.
    hub.publish("a", "from rust").await.unwrap();
    server.stop().await;
}

/// A publish as the client that `X-Client` names.
async fn publish_as(addr: SocketAddr, client: &str) -> u16 {
    let mut s = send_raw(
        addr,
        &format!(
            "POST /pub/a HTTP/1.1\r\nHost: hub\r\nX-Client: {client}\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx"
        ),
    )
    .await;
    read_response(&mut s).await.status
}

#[tokio::test]
async fn anonymous_clients_are_limited_by_the_client_key_the_application_supplies() {
    let hub = open()
        .publish_rate(Some(Rate::per_second(0.001).burst(1)))
        .build();
    let service = hub.service();
    // Every request comes from 127.0.0.1: only the key tells clients apart.
    let server = serve_fn(move |mut req: Request<Incoming>| {
        let service = service.clone();
        async move {
            let client = req.headers().get("x-client").cloned();
            if let Some(key) = client.as_ref().and_then(|v| v.to_str().ok()) {
                req.extensions_mut().insert(ClientKey::new(key));
            }
            hyper::service::Service::call(&service, req).await.unwrap()
        }
    })
    .await;
    assert_eq!(publish_as(server.addr, "ann").await, 202);
    assert_eq!(publish_as(server.addr, "ann").await, 429);
    assert_eq!(publish_as(server.addr, "bob").await, 202);
    server.stop().await;
}

#[tokio::test]
async fn connects_over_the_rate_get_429() {
    let hub = open()
        .connect_rate(Some(Rate::per_second(0.1).burst(2)))
        .build();
    let server = serve(hub.service()).await;
    let _a = SseStream::open(server.addr, "/sub/a").await;
    let _b = SseStream::open(server.addr, "/sub/a").await;
    let c = SseStream::open(server.addr, "/sub/a").await;
    assert_eq!(c.status, 429);
    assert_eq!(c.header("retry-after"), Some("10"));
    assert_eq!(hub.stats().connections, 2);
    server.stop().await;
}

#[tokio::test]
async fn open_connections_are_capped_per_identity() {
    let hub = open().max_connections(Some(2)).build();
    let server = serve(hub.service()).await;
    let a = SseStream::open(server.addr, "/sub/a").await;
    let _b = SseStream::open(server.addr, "/sub/b").await;
    let c = SseStream::open(server.addr, "/sub/c").await;
    assert_eq!(c.status, 429);
    drop(a);
    eventually("a slot to free", || hub.stats().connections == 1).await;
    assert_eq!(SseStream::open(server.addr, "/sub/c").await.status, 200);
    server.stop().await;
}

/// Reads an SSE stream's raw bytes and returns the `data:` values in order,
/// until it has `n`; `progress` counts them as they come.
async fn read_data(
    mut stream: TcpStream,
    n: usize,
    progress: Arc<AtomicUsize>,
) -> (Vec<String>, TcpStream) {
    let mut got = Vec::new();
    let mut partial = Vec::new();
    let mut buf = vec![0u8; 65536];
    within("every message", async {
        while got.len() < n {
            let read = stream.read(&mut buf).await.unwrap();
            assert!(read > 0, "the stream ended early");
            partial.extend_from_slice(&buf[..read]);
            let mut start = 0;
            while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
                let line = &partial[start..start + end];
                if let Some(data) = line.strip_prefix(b"data: ") {
                    got.push(String::from_utf8(data.to_vec()).unwrap());
                }
                start += end + 1;
            }
            partial.drain(..start);
            progress.store(got.len(), Ordering::Release);
        }
    })
    .await;
    (got, stream)
}

async fn open_raw(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /sub/fan HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    read_until(&mut stream, &mut head, b"retry: ").await;
    assert!(head.starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscriber_that_never_reads_is_cut_off_while_1000_messages_reach_200_others() {
    const MESSAGES: usize = 1000;
    const BATCH: usize = 25;
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = reasons.clone();
    // A batch (25 messages of 200 bytes) fits a reader's queue; the whole
    // run (200 KB) does not fit the slow one's queue and HTTP/2 window.
    let hub = open()
        .queue_bytes(8 * 1024)
        .on_unsubscribe(move |_, _, reason| r.lock().unwrap().push(reason))
        .build();
    let server = serve(hub.service()).await;
    // An HTTP/2 client with a 16 KiB stream window that it never opens
    // further, since it never reads.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(16 * 1024)
            .adaptive_window(false)
            .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://t/sub/fan")
        .body(Empty::new())
        .unwrap();
    let slow = h2.send_request(req).await.unwrap();
    assert_eq!(slow.status(), 200);
    let mut readers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..200 {
        let stream = open_raw(server.addr).await;
        let count = Arc::new(AtomicUsize::new(0));
        progress.push(count.clone());
        readers.push(tokio::spawn(read_data(stream, MESSAGES, count)));
    }
    eventually("every stream", || hub.stats().connections == 201).await;
    let body = "x".repeat(196);
    let message = |i: usize| format!("{body}{i:04}");
    for batch in 0..MESSAGES / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            hub.publish("fan", message(i)).await.unwrap();
        }
        let done = (batch + 1) * BATCH;
        eventually("the readers to keep up", || {
            progress.iter().all(|p| p.load(Ordering::Acquire) >= done)
        })
        .await;
    }
    let expected: Vec<String> = (0..MESSAGES).map(message).collect();
    let mut open = Vec::new();
    for reader in readers {
        let (got, stream) = reader.await.unwrap();
        assert!(got == expected, "every message, in order, once");
        open.push(stream);
    }
    assert_eq!(*reasons.lock().unwrap(), [Reason::SlowConsumer]);
    assert_eq!(hub.stats().connections, 200);
    assert_eq!(hub.stats().messages_in, MESSAGES as u64);
    // The slow client finds `overflow` at the end of what was queued, and
    // the stream ends there.
    let body = within("the slow stream", slow.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert!(body.ends_with(b"event: overflow\ndata: {\"reason\":\"slow consumer\"}\n\n"));
    server.stop().await;
}
