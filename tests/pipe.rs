//! The ephemeral pipe over real sockets: senders and receivers as raw HTTP/1.1.
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use delayed_response::pipe::{Builder, Pipe};
use delayed_response::Heartbeat;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A short heartbeat so that "within two intervals" is quick.
const BEAT: Duration = Duration::from_millis(50);

fn pipe() -> Builder {
    Pipe::builder().heartbeat(Heartbeat::every(BEAT))
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

#[tokio::test]
async fn sender_gets_the_url_line_at_once_then_heartbeats() {
    let server = serve(pipe().build()).await;
    // Only the headers: no receiver exists, nothing of the body is sent.
    let mut sender = open(server.addr, &post(5, "")).await;
    assert!(sender.url.starts_with("http://test/"), "{}", sender.url);
    assert_eq!(sender.id.len(), 12);
    let head = String::from_utf8_lossy(&sender.buf).to_lowercase();
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut buf = std::mem::take(&mut sender.buf);
    read_until(&mut sender.stream, &mut buf, b"1\r\n \r\n").await;
    server.stop().await;
}

#[tokio::test]
async fn raw_upload_with_content_length_streams_with_its_headers() {
    let server = serve(pipe().build()).await;
    let mut sender = open(
        server.addr,
        &post(11, "Content-Type: text/csv; charset=utf-8\r\n"),
    )
    .await;
    sender.send(b"hello world").await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.status, 200);
    assert!(res.complete);
    assert_eq!(res.text(), "hello world");
    assert_eq!(res.header("content-length"), Some("11"));
    assert_eq!(res.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(res.header("content-disposition"), Some("attachment"));
    assert_eq!(res.header("content-encoding"), None);
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(text.contains("done: 11 bytes in "), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn chunked_upload_streams_and_reports_its_byte_count() {
    let server = serve(pipe().build()).await;
    let mut sender = open(server.addr, CHUNKED).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender.send_chunk(b"abc").await;
    sender.send_chunk(b"defg").await;
    sender.send(b"0\r\n\r\n").await;
    let res = read_response(&mut rx).await;
    assert!(res.complete);
    assert_eq!(res.text(), "abcdefg");
    assert_eq!(res.header("content-length"), None);
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    let (text, complete) = sender.finish().await;
    assert!(complete);
    assert!(text.contains("done: 7 bytes"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn put_with_a_path_names_the_file_like_curl_upload_file() {
    let server = serve(pipe().build()).await;
    let mut sender = open(
        server.addr,
        "PUT /r%C3%A9sum%C3%A9.txt HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    sender.send(b"ok").await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.text(), "ok");
    assert_eq!(
        res.header("content-disposition"),
        Some("attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")
    );
    server.stop().await;
}

fn multipart(boundary: &str, filename: &str, data: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot a file\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{filename}\"\r\n\
         Content-Type: image/png\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{data}\r\n--{boundary}--\r\n"
    )
}

#[tokio::test]
async fn multipart_streams_the_first_file_part_with_a_quoted_filename() {
    let server = serve(pipe().build()).await;
    let body = multipart("XyZ", r#"we\"ird.png"#, "PNGDATA");
    let mut sender = open(
        server.addr,
        &post(
            body.len(),
            "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        ),
    )
    .await;
    sender.send(body.as_bytes()).await;
    let res = download(server.addr, &sender.id).await;
    assert!(res.complete);
    assert_eq!(res.text(), "PNGDATA");
    assert_eq!(res.header("content-type"), Some("image/png"));
    // multer unescapes \" to "; the header quotes it again.
    assert_eq!(
        res.header("content-disposition"),
        Some(r#"attachment; filename="we\"ird.png""#)
    );
    // Regression (original): `Content-Encoding: 7bit` was copied from the part.
    assert_eq!(res.header("content-encoding"), None);
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 7 bytes"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn an_id_is_single_use_and_unknown_or_malformed_ids_are_404() {
    let server = serve(pipe().build()).await;
    let mut sender = open(server.addr, &post(1, "")).await;
    sender.send(b"x").await;
    assert_eq!(download(server.addr, &sender.id).await.status, 200);
    assert_eq!(download(server.addr, &sender.id).await.status, 404);
    assert_eq!(download(server.addr, "AAAAAAAAAAAA").await.status, 404);
    for bad in ["short", "abcdefghijk%3D", "abcdefghijk=", "a/b", "x/y/z"] {
        let res = download(server.addr, bad).await;
        assert_eq!(res.status, 404, "{bad}");
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn empty_upload_gives_an_empty_download() {
    let server = serve(pipe().build()).await;
    let sender = open(server.addr, &post(0, "")).await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.status, 200);
    assert!(res.complete);
    assert_eq!(res.header("content-length"), Some("0"));
    let (text, complete) = sender.finish().await;
    assert!(complete);
    assert!(text.contains("done: 0 bytes"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn content_length_over_the_limit_is_413_before_reading() {
    let server = serve(pipe().max_upload_bytes(10).build()).await;
    let mut s = send_raw(server.addr, &post(11, "")).await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 413);
    assert_eq!(res.text(), "upload larger than 10 bytes\n");
    server.stop().await;
}

#[tokio::test]
async fn chunked_upload_passing_the_limit_is_cut_on_both_sides() {
    let server = serve(pipe().max_upload_bytes(10).build()).await;
    let mut sender = open(server.addr, CHUNKED).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender.send_chunk(b"123456").await;
    sender.send_chunk(b"789012").await;
    let res = read_response(&mut rx).await;
    assert_eq!(res.status, 200);
    assert!(!res.complete, "the receiver's body must end abnormally");
    assert!(res.body.len() <= 10);
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(
        text.contains("cut: the upload is larger than 10 bytes"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sender_abort_mid_transfer_cuts_the_receivers_body() {
    // Regression (original): the receiver hung with partial data.
    let server = serve(pipe().build()).await;
    let mut sender = open(server.addr, &post(100, "")).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender.send(b"first").await;
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"first").await;
    sender.stream.set_zero_linger().unwrap();
    drop(sender);
    // The connection closes without the remaining 95 bytes.
    let rest = within("the receiver's connection to close", async {
        let mut rest = Vec::new();
        let _ = rx.read_to_end(&mut rest).await;
        rest
    })
    .await;
    assert!(rest.is_empty(), "{rest:?}");
    server.stop().await;
}

#[tokio::test]
async fn receiver_abort_mid_transfer_ends_the_senders_response() {
    // Regression (original): the uploader's POST never completed.
    let server = serve(pipe().build()).await;
    let mut sender = open(server.addr, &post(1_000_000, "")).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender.send(b"partial").await;
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"partial").await;
    drop(rx);
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(text.contains("cut: the receiver went away"), "{text}");
    server.stop().await;
}

/// Polls `cond` until it holds (at most PATIENCE).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_waiting_sender_that_leaves_frees_its_id_within_two_heartbeats() {
    // hyper does not see the FIN while the upload is unread; the failed
    // heartbeat write does.
    let pipe = pipe().build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(1000, "")).await;
    let id = sender.id.clone();
    assert_eq!(pipe.waiting(), 1);
    let left = std::time::Instant::now();
    drop(sender);
    eventually("the id to be freed", || pipe.waiting() == 0).await;
    // Two intervals, plus generous slack for a loaded machine.
    assert!(left.elapsed() < BEAT * 2 + Duration::from_secs(1));
    assert_eq!(download(server.addr, &id).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn ttl_expiry_ends_the_senders_response_and_frees_the_id() {
    let pipe = pipe().ttl(Duration::from_millis(200)).build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(5, "")).await;
    let id = sender.id.clone();
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(
        text.contains("timeout: nobody fetched http://test/"),
        "{text}"
    );
    assert_eq!(pipe.waiting(), 0);
    assert_eq!(download(server.addr, &id).await.status, 404);
    server.stop().await;
}

async fn reserve(addr: SocketAddr, headers: &str) -> RawResponse {
    let mut s = send_raw(
        addr,
        &format!("GET /reserve HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await;
    read_response(&mut s).await
}

#[tokio::test]
async fn reservations_check_the_referer_and_open_once() {
    let server = serve(
        pipe()
            .reservations(true)
            .required_referer("http://app.example/upload")
            .build(),
    )
    .await;
    assert_eq!(reserve(server.addr, "").await.status, 403);
    assert_eq!(
        reserve(server.addr, "Referer: http://app.example/upload/\r\n")
            .await
            .status,
        403
    );
    assert_eq!(
        reserve(server.addr, "Origin: http://evil.example\r\n")
            .await
            .status,
        403
    );
    assert_eq!(
        reserve(server.addr, "Origin: http://app.example\r\n")
            .await
            .status,
        200
    );
    let res = reserve(server.addr, "Referer: http://app.example/upload\r\n").await;
    assert_eq!(res.status, 200);
    let id = res.text().trim().to_owned();
    assert_eq!(id.len(), 12);

    // Regression (original): a GET before the upload hung and burnt the
    // reservation.
    let early = download(server.addr, &id).await;
    assert_eq!(early.status, 409);
    assert_eq!(
        early.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let open_reserved = format!(
        "POST /reserve/{id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"
    );
    let mut sender = open(server.addr, &open_reserved).await;
    assert_eq!(sender.id, id);
    sender.send(b"abc").await;
    let res = download(server.addr, &id).await;
    assert_eq!(res.text(), "abc");
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 3 bytes"), "{text}");

    let mut again = send_raw(server.addr, &open_reserved).await;
    assert_eq!(read_response(&mut again).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn reserve_routes_are_off_by_default() {
    let server = serve(pipe().build()).await;
    assert_eq!(reserve(server.addr, "").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn past_max_waiting_new_sockets_get_503() {
    let server = serve(pipe().max_waiting(1).build()).await;
    let _first = open(server.addr, &post(1, "")).await;
    let mut s = send_raw(server.addr, &post(1, "")).await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("5"));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_short_4xx_answers() {
    let server = serve(pipe().build()).await;
    let mut s = send_raw(
        server.addr,
        &post(0, "Content-Type: multipart/form-data\r\n"),
    )
    .await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.text(), "bad request: multipart without a boundary\n");

    let mut s = send_raw(
        server.addr,
        "DELETE / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("POST, PUT"));
    server.stop().await;
}

#[tokio::test]
async fn multipart_without_a_file_part_answers_the_receiver_and_the_sender() {
    let server = serve(pipe().build()).await;
    let body = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
    let mut sender = open(
        server.addr,
        &post(
            body.len(),
            "Content-Type: multipart/form-data; boundary=b\r\n",
        ),
    )
    .await;
    sender.send(body.as_bytes()).await;
    assert_eq!(download(server.addr, &sender.id).await.status, 502);
    let (text, complete) = sender.finish().await;
    assert!(complete);
    assert!(text.contains("cut: the upload failed"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_receiver_slows_the_sender() {
    let server = serve(pipe().build()).await;
    const TOTAL: usize = 256 << 20;
    let mut sender = open(server.addr, &post(TOTAL, "")).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    let mut head = Vec::new();
    read_until(&mut rx, &mut head, b"\r\n\r\n").await;
    // The receiver reads nothing more: the sender must stall long before
    // TOTAL (kernel socket buffers and hyper's bounded buffers only).
    let block = vec![7u8; 1 << 16];
    let mut written = 0usize;
    loop {
        let write =
            tokio::time::timeout(Duration::from_millis(300), sender.stream.write_all(&block));
        match write.await {
            Ok(Ok(())) => written += block.len(),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
        assert!(
            written < 64 << 20,
            "no backpressure: {written} bytes accepted"
        );
    }
    assert!(written > 0);
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_multipart_sender_does_not_block_other_requests() {
    // Regression: a widely used Rust pipe server awaits the upload while
    // holding its registry lock, and deadlocks for good when a multipart
    // sender stops after its headers.
    let server = serve(pipe().build()).await;
    let sender = open(
        server.addr,
        &post(10_000, "Content-Type: multipart/form-data; boundary=zz\r\n"),
    )
    .await;
    // The receiver waits for the part headers that never come.
    let _rx = get(server.addr, &format!("/{}", sender.id)).await;
    let addr = server.addr;
    let others = (0..32).map(|i| async move {
        if i % 2 == 0 {
            download(addr, "AAAAAAAAAAAA").await.status
        } else {
            let mut s = open(addr, &post(1, "")).await;
            s.send(b"z").await;
            let id = s.id.clone();
            let res = download(addr, &id).await;
            assert_eq!(res.text(), "z");
            res.status
        }
    });
    let statuses = tokio::time::timeout(
        Duration::from_secs(1),
        futures_util::future::join_all(others),
    )
    .await
    .expect("the server stopped answering while a multipart sender stalled");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 16);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 16);
    drop(sender);
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_ends_waiting_senders_and_frees_ids() {
    let pipe = pipe().build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(3, "")).await;
    server.shutdown.trigger();
    let (_text, complete) = sender.finish().await;
    assert!(!complete, "a held response ends abnormally on shutdown");
    eventually("the id to be freed", || pipe.waiting() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn works_nested_in_an_axum_router_as_a_tower_service() {
    let pipe = pipe().base_url("http://test/pipe/").build();
    let app = axum::Router::new().nest_service("/pipe", pipe);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let head =
        "POST /pipe/ HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 4\r\n\r\n";
    let mut sender = open(addr, head).await;
    assert!(
        sender.url.starts_with("http://test/pipe/"),
        "{}",
        sender.url
    );
    sender.send(b"axum").await;
    let res = download(addr, &format!("pipe/{}", sender.id)).await;
    assert_eq!(res.text(), "axum");
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 4 bytes"), "{text}");
    task.abort();
}

#[tokio::test]
async fn expect_100_continue_gets_its_100_before_the_senders_head() {
    // Without it, curl waits a second before it sends a large upload.
    let server = serve(pipe().build()).await;
    let mut s = send_raw(
        server.addr,
        "PUT /big.bin HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"\n\r\n").await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn chunked_multipart_passing_the_limit_is_cut() {
    let server = serve(pipe().max_upload_bytes(200).build()).await;
    let mut sender = open(
        server.addr,
        "POST / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: multipart/form-data; boundary=B\r\n\r\n",
    )
    .await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender
        .send_chunk(b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n")
        .await;
    let mut head = Vec::new();
    read_until(&mut rx, &mut head, b"\r\n\r\n").await;
    sender.send_chunk(&[b'x'; 300]).await;
    let res = read_response_after_head(&mut rx, head).await;
    assert!(!res, "the receiver's body must end abnormally");
    let (text, _) = sender.finish().await;
    assert!(
        text.contains("cut: the upload is larger than 200 bytes"),
        "{text}"
    );
    server.stop().await;
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

mod custom_hooks {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use delayed_response::pipe::{Hooks, Socket, Stats};

    use super::*;

    #[derive(Default)]
    struct Counting {
        progress: Arc<AtomicU64>,
        connected: Arc<AtomicU64>,
        ended_with: Arc<std::sync::Mutex<Option<String>>>,
    }

    impl Hooks for Counting {
        fn opened(&self, socket: &Socket) -> Bytes {
            format!("ID {} at {}\n", socket.id, socket.url).into()
        }
        fn connected(&self, _socket: &Socket) {
            self.connected.fetch_add(1, Ordering::SeqCst);
        }
        fn progress(&self, _socket: &Socket, stats: &Stats) {
            self.progress.store(stats.bytes, Ordering::SeqCst);
        }
        fn end(&self, socket: &Socket, stats: &Stats) -> Bytes {
            *self.ended_with.lock().unwrap() = socket.filename.clone();
            format!("\nUpload complete ({}). Socket deleted.\n", stats.bytes).into()
        }
        fn not_found(&self) -> http::Response<delayed_response::Body> {
            let mut res = http::Response::new("nope".into());
            *res.status_mut() = http::StatusCode::GONE;
            res
        }
    }

    #[tokio::test]
    async fn overridden_hooks_replace_the_defaults_and_see_every_event() {
        let hooks = Counting::default();
        let (progress, connected) = (hooks.progress.clone(), hooks.connected.clone());
        let server = serve(pipe().hooks(hooks).build()).await;
        let mut sender = open(server.addr, &post(4, "")).await;
        assert!(String::from_utf8_lossy(&sender.buf)
            .contains(&format!("ID {} at http://test/", sender.id)));
        sender.send(b"data").await;
        assert_eq!(download(server.addr, &sender.id).await.text(), "data");
        let (text, _) = sender.finish().await;
        assert!(
            text.contains("Upload complete (4). Socket deleted."),
            "{text}"
        );
        assert_eq!(progress.load(Ordering::SeqCst), 4);
        assert_eq!(connected.load(Ordering::SeqCst), 1);
        assert_eq!(download(server.addr, "AAAAAAAAAAAA").await.status, 410);
        server.stop().await;
    }

    #[tokio::test]
    async fn end_sees_the_multipart_file_name() {
        let hooks = Counting::default();
        let ended_with = hooks.ended_with.clone();
        let server = serve(pipe().hooks(hooks).build()).await;
        let body = multipart("b0", "photo.png", "PNG");
        let mut sender = open(
            server.addr,
            &post(
                body.len(),
                "Content-Type: multipart/form-data; boundary=b0\r\n",
            ),
        )
        .await;
        sender.send(body.as_bytes()).await;
        assert_eq!(download(server.addr, &sender.id).await.text(), "PNG");
        let _ = sender.finish().await;
        assert_eq!(ended_with.lock().unwrap().as_deref(), Some("photo.png"));
        server.stop().await;
    }
}

mod http2 {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use tokio::sync::mpsc;
    use tokio_stream_shim::ReceiverStream;

    use super::*;

    /// A tiny `Stream` over an mpsc receiver (no tokio-stream dependency).
    mod tokio_stream_shim {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub(crate) struct ReceiverStream<T>(pub(crate) tokio::sync::mpsc::Receiver<T>);

        impl<T> futures_util::Stream for ReceiverStream<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }

    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;

    async fn h2(
        addr: SocketAddr,
    ) -> hyper::client::conn::http2::SendRequest<StreamBody<ReceiverStream<Chunk>>> {
        h2_connect(addr).await
    }

    #[tokio::test]
    async fn sender_and_receiver_over_h2c() {
        let server = serve(pipe().build()).await;
        let mut tx_conn = h2(server.addr).await;
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let req = http::Request::post("http://test/")
            .body(StreamBody::new(ReceiverStream(rx)))
            .unwrap();
        let res = tx_conn.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut sender_body = res.into_body();
        let first = within("the URL line", sender_body.frame())
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        let url = String::from_utf8_lossy(&first).trim().to_owned();
        assert!(url.starts_with("http://test/"), "{url}");
        let id = url.rsplit('/').next().unwrap().to_owned();

        let mut rx_conn = h2(server.addr).await;
        let (_unused, empty) = mpsc::channel::<Chunk>(1);
        drop(_unused);
        let get = http::Request::get(format!("http://test/{id}"))
            .body(StreamBody::new(ReceiverStream(empty)))
            .unwrap();
        let download = tokio::spawn(async move {
            let res = rx_conn.send_request(get).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap().to_bytes()
        });
        tx.send(Ok(Frame::data(Bytes::from_static(b"over "))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"h2"))))
            .await
            .unwrap();
        drop(tx);
        let got = within("the download", download).await.unwrap();
        assert_eq!(&got[..], b"over h2");
        let rest = within("the sender's end", sender_body.collect())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&rest).contains("done: 7 bytes"),
            "{rest:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn curls_default_form_type_is_not_forwarded_for_a_raw_upload() {
    // `curl --data-binary @file` says `application/x-www-form-urlencoded`.
    let server = serve(pipe().build()).await;
    let mut sender = open(
        server.addr,
        &post(3, "Content-Type: application/x-www-form-urlencoded\r\n"),
    )
    .await;
    sender.send(b"\x00\x01\x02").await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.body, b"\x00\x01\x02");
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    server.stop().await;
}

#[tokio::test]
async fn multipart_sender_abort_cuts_the_chunked_download() {
    let server = serve(pipe().build()).await;
    let mut sender = open(
        server.addr,
        &post(100_000, "Content-Type: multipart/form-data; boundary=B\r\n"),
    )
    .await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    sender
        .send(b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nsome bytes of the file")
        .await;
    let mut buf = Vec::new();
    read_until(&mut rx, &mut buf, b"some bytes").await;
    drop(sender);
    let complete = read_response_after_head(&mut rx, buf).await;
    assert!(
        !complete,
        "the chunked download must end without its final chunk"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unbounded_ttl_is_accepted() {
    let server = serve(pipe().ttl(Duration::MAX).build()).await;
    let mut sender = open(server.addr, &post(1, "")).await;
    sender.send(b"!").await;
    assert_eq!(download(server.addr, &sender.id).await.text(), "!");
    server.stop().await;
}

#[tokio::test]
async fn opening_a_reservation_does_not_renew_its_ttl() {
    let pipe = pipe()
        .reservations(true)
        .ttl(Duration::from_millis(300))
        .build();
    let server = serve(pipe.clone()).await;
    let id = reserve(server.addr, "").await.text().trim().to_owned();
    let sender = open(
        server.addr,
        &format!(
            "POST /reserve/{id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"
        ),
    )
    .await;
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(text.contains("timeout: nobody fetched"), "{text}");
    assert_eq!(pipe.waiting(), 0);
    // An unopened reservation expires too.
    let _ = reserve(server.addr, "").await;
    assert_eq!(pipe.waiting(), 1);
    eventually("the reservation to expire", || pipe.waiting() == 0).await;
    server.stop().await;
}
