//! The pipe returns sockets, file descriptors and tasks to their baseline
//! after every way a transfer can end (one test: fd counts are per process).
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::pipe;
use delayed_response::Heartbeat;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn open(addr: SocketAddr, head: &str) -> (TcpStream, String) {
    let mut s = send_raw(addr, head).await;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"\n\r\n").await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let url = &text[text.find("http://").unwrap()..];
    let url = url.split('\n').next().unwrap();
    (s, url.rsplit('/').next().unwrap().to_owned())
}

async fn drain(mut s: TcpStream) {
    let mut sink = Vec::new();
    let _ = within("the connection to close", s.read_to_end(&mut sink)).await;
}

fn post(len: usize) -> String {
    format!("POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ending_returns_fds_tasks_and_sockets_to_baseline() {
    let pipe = pipe::Service::builder()
        .heartbeat(Heartbeat::every(Duration::from_millis(40)))
        .ttl(Duration::from_millis(300))
        .max_upload_bytes(1000)
        .reservations(true)
        .build();
    let server = serve(pipe.clone()).await;
    let addr = server.addr;
    // The baseline: the server before any connection, plus the registry's
    // sweeper (one task per pipe, started with its first socket, for good).
    let fds = open_fds();
    let tasks = alive_tasks() + 1;

    let settled = |what: &'static str| {
        let pipe = pipe.clone();
        async move {
            within(what, async {
                while pipe.waiting() != 0 || open_fds() != fds || alive_tasks() != tasks {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
        }
    };

    // 0. A 404, then the first socket, which starts the sweeper.
    drain(get(addr, "/AAAAAAAAAAAA").await).await;
    let (mut tx, id) = open(addr, &post(2)).await;
    tx.write_all(b"hi").await.unwrap();
    drain(get(addr, &format!("/{id}")).await).await;
    drain(tx).await;
    settled("after the first transfer").await;

    // 1. A complete transfer.
    let (mut tx, id) = open(addr, &post(5)).await;
    tx.write_all(b"hello").await.unwrap();
    let mut rx = get(addr, &format!("/{id}")).await;
    assert_eq!(read_response(&mut rx).await.text(), "hello");
    drain(rx).await;
    drain(tx).await;
    settled("after a complete transfer").await;

    // 2. The sender aborts mid-transfer.
    let (mut tx, id) = open(addr, &post(500)).await;
    let rx = get(addr, &format!("/{id}")).await;
    tx.write_all(b"part").await.unwrap();
    tx.set_zero_linger().unwrap();
    drop(tx);
    drain(rx).await;
    settled("after a sender abort").await;

    // 3. The receiver aborts mid-transfer.
    let (mut tx, id) = open(addr, &post(500)).await;
    let mut rx = get(addr, &format!("/{id}")).await;
    tx.write_all(b"part").await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"part").await;
    drop(rx);
    drain(tx).await;
    settled("after a receiver abort").await;

    // 4. A waiting sender leaves.
    let (tx, _id) = open(addr, &post(500)).await;
    drop(tx);
    settled("after a waiting sender left").await;

    // 5. TTL expiry.
    let (tx, _id) = open(addr, &post(500)).await;
    drain(tx).await;
    settled("after a TTL expiry").await;

    // 6. A chunked upload over the limit.
    let (mut tx, id) = open(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let rx = get(addr, &format!("/{id}")).await;
    let big = vec![b'x'; 1500];
    tx.write_all(format!("{:x}\r\n", big.len()).as_bytes())
        .await
        .unwrap();
    tx.write_all(&big).await.unwrap();
    tx.write_all(b"\r\n").await.unwrap();
    drain(rx).await;
    drain(tx).await;
    settled("after a cut at the limit").await;

    // 7. 413 before reading, and an unopened reservation that expires.
    drain(send_raw(addr, &post(5000)).await).await;
    drain(
        send_raw(
            addr,
            "GET /reserve HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await,
    )
    .await;
    settled("after a 413 and an expired reservation").await;

    // 8. A sender half-closes after its whole body; the upload is kept for
    // its receiver.
    let (mut tx, id) = open(addr, &post(3)).await;
    tx.write_all(b"end").await.unwrap();
    tx.shutdown().await.unwrap();
    drain(tx).await;
    let mut rx = get(addr, &format!("/{id}")).await;
    assert_eq!(read_response(&mut rx).await.text(), "end");
    drain(rx).await;
    settled("after a half-closed sender's upload was delivered").await;

    // 9. A reservation's sender vanishes; the reservation is rearmed, then
    // expires.
    let mut s = send_raw(
        addr,
        "GET /reserve HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = read_response(&mut s).await.text();
    drain(s).await;
    let upload_url = text.lines().nth(1).unwrap();
    let path = &upload_url[upload_url.find("/reserve/").unwrap()..];
    let (tx, _id) = open(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n"),
    )
    .await;
    tx.set_zero_linger().unwrap();
    drop(tx);
    settled("after a rearmed reservation expired").await;

    // 10. Uploads refused at a client's cap hold nothing.
    let capped = pipe::Service::builder()
        .max_waiting_per_client(0)
        .reservations(true)
        .max_reservations_per_client(0)
        .build();
    let capped_server = serve(capped.clone()).await;
    let mut s = send_raw(capped_server.addr, &post(3)).await;
    assert_eq!(read_response(&mut s).await.status, 429);
    drain(s).await;
    capped_server.stop().await;
    settled("after a 429").await;

    server.stop().await;
}
