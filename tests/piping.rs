//! The pipe's Piping mode over real sockets: Piping Server's behaviour,
//! with tests written anew, by concern in `tests/piping/`; the helpers they
//! share are here. Senders and receivers are raw HTTP/1.1 clients (so every
//! header and every cut is seen as it went over the wire), and h2c.
mod support;

#[path = "piping/cancel.rs"]
mod cancel;
#[path = "piping/fanout.rs"]
mod fanout;
#[path = "piping/headers.rs"]
mod headers;
#[path = "piping/order.rs"]
mod order;
#[path = "piping/refusals.rs"]
mod refusals;
#[path = "piping/reserved.rs"]
mod reserved;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::pipe::{self, Builder, Protocol};
use delayed_response::Heartbeat;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A short heartbeat so that "within two intervals" is quick.
const BEAT: Duration = Duration::from_millis(50);

fn piping() -> Builder {
    pipe::Service::builder()
        .protocol(Protocol::Piping)
        .heartbeat(Heartbeat::every(BEAT))
}

/// Serves a Piping-mode pipe; returns it (to look at its paths) and the
/// server.
async fn start(builder: Builder) -> (pipe::Service, TestServer) {
    let pipe = builder.build();
    let server = serve(pipe.clone()).await;
    (pipe, server)
}

/// A `GET` of `path` (with its query), not read yet.
async fn receiver(addr: SocketAddr, path: &str) -> TcpStream {
    get(addr, path).await
}

/// A `GET` with extra header lines.
async fn receiver_with(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
    send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await
}

/// The head of an upload of `len` bytes (`POST`), with extra header lines.
fn upload_head(method: &str, path: &str, len: usize, headers: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len}\r\n{headers}\r\n"
    )
}

/// A whole `POST` of `body` to `path`; its response is not read yet.
async fn sender(addr: SocketAddr, path: &str, body: &[u8], headers: &str) -> TcpStream {
    let mut s = send_raw(addr, &upload_head("POST", path, body.len(), headers)).await;
    s.write_all(body).await.unwrap();
    s
}

/// Reads a sender's response until `line` is in it; returns what was read.
async fn read_to(stream: &mut TcpStream, buf: &mut Vec<u8>, line: &str) -> String {
    read_until(stream, buf, line.as_bytes()).await;
    String::from_utf8_lossy(buf).into_owned()
}

/// Reads the rest of a chunked response whose start is in `buf`: the whole
/// text, and whether it ended with the final chunk.
async fn finish(stream: &mut TcpStream, mut buf: Vec<u8>) -> (String, bool) {
    within("the response to end", async {
        loop {
            if buf.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let complete = buf.ends_with(b"\r\n0\r\n\r\n");
    (String::from_utf8_lossy(&buf).into_owned(), complete)
}

/// Deterministic bytes that are not all alike.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The sender's lines of a whole transfer to `n` receivers.
fn lines_of_a_whole_transfer(n: usize) -> [String; 3] {
    [
        format!("[INFO] Start sending to {n} receiver(s)!\n"),
        "[INFO] Sent successfully!\n".to_owned(),
        "[INFO] All receiver(s) was/were received successfully.\n".to_owned(),
    ]
}
