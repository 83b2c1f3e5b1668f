//! The ephemeral pipe over real sockets: senders and receivers as raw
//! HTTP/1.1 (and h2c), plus paused-time tests of the service itself. The
//! tests live in `tests/pipe/`, by concern; the helpers they share are here.
mod support;

#[path = "pipe/failures.rs"]
mod failures;
#[path = "pipe/lifecycle.rs"]
mod lifecycle;
#[path = "pipe/limits.rs"]
mod limits;
#[path = "pipe/paused.rs"]
mod paused;
#[path = "pipe/reserve.rs"]
mod reserve;
#[path = "pipe/transfer.rs"]
mod transfer;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::pipe::{self, Builder};
use delayed_response::Heartbeat;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A short heartbeat so that "within two intervals" is quick.
const BEAT: Duration = Duration::from_millis(50);

fn pipe() -> Builder {
    pipe::Service::builder().heartbeat(Heartbeat::every(BEAT))
}

struct Sender {
    stream: TcpStream,
    buf: Vec<u8>,
    id: String,
    url: String,
}

/// Sends `head` (a request without its body) and reads the response head and
/// the URL line.
async fn open(addr: SocketAddr, head: &str) -> Sender {
    let mut stream = send_raw(addr, head).await;
    let mut buf = Vec::new();
    read_until(&mut stream, &mut buf, b"\n\r\n").await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let start = text.find("http://").expect("a URL line");
    let url = text[start..].split('\n').next().unwrap().to_owned();
    let id = url.rsplit('/').next().unwrap().to_owned();
    Sender {
        stream,
        buf,
        id,
        url,
    }
}

fn post(len: usize, extra: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

const CHUNKED: &str =
    "POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";

impl Sender {
    async fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.unwrap();
    }

    async fn send_chunk(&mut self, data: &[u8]) {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.send(&out).await;
    }

    /// Reads the rest of the response until it ends; returns the whole raw
    /// text and whether it ended with the final chunk.
    async fn finish(mut self) -> (String, bool) {
        within("the sender's response to end", async {
            loop {
                if self.buf.ends_with(b"\r\n0\r\n\r\n") {
                    break;
                }
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

async fn download(addr: SocketAddr, id: &str) -> RawResponse {
    let mut s = get(addr, &format!("/{id}")).await;
    read_response(&mut s).await
}

fn multipart(boundary: &str, filename: &str, data: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot a file\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{filename}\"\r\n\
         Content-Type: image/png\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{data}\r\n--{boundary}--\r\n"
    )
}

async fn reserve(addr: SocketAddr, headers: &str) -> RawResponse {
    let mut s = send_raw(
        addr,
        &format!("GET /reserve HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await;
    read_response(&mut s).await
}

/// A reservation as `GET /reserve` answers it: the download URL, then the
/// upload URL (with its secret).
struct Reserved {
    id: String,
    /// The upload URL's path (`/reserve/{id}/{secret}`).
    upload_path: String,
}

impl Reserved {
    fn of(res: &RawResponse) -> Reserved {
        assert_eq!(res.status, 200, "{res:?}");
        let text = res.text();
        let mut lines = text.lines();
        let download = lines.next().expect("a download URL line");
        let upload = lines.next().expect("an upload URL line");
        let id = download.strip_prefix("http://test/").unwrap().to_owned();
        let upload_path = upload.strip_prefix("http://test").unwrap().to_owned();
        Reserved { id, upload_path }
    }

    /// The head of an upload of `len` bytes to `path`.
    fn upload_head(path: &str, len: usize) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
        )
    }

    fn upload(&self, len: usize) -> String {
        Self::upload_head(&self.upload_path, len)
    }
}

/// Reads a chunked body whose head is in `buf`; true if it ended properly.
async fn read_response_after_head(stream: &mut TcpStream, mut buf: Vec<u8>) -> bool {
    within("the body to end", async {
        loop {
            if buf.ends_with(b"\r\n0\r\n\r\n") {
                return true;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}
