//! A waiting side that leaves frees the path; a transfer cut on one side is
//! cut on all, visibly; the TTL and shutdown.

use super::*;

#[tokio::test]
async fn a_waiting_receiver_that_leaves_frees_the_path_at_once() {
    let (pipe, server) = start(piping()).await;
    let r = receiver(server.addr, "/p").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    drop(r);
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    // Another pair uses the path.
    let mut r = receiver(server.addr, "/p").await;
    let mut s = sender(server.addr, "/p", b"fresh", "").await;
    assert_eq!(read_response(&mut r).await.text(), "fresh");
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_sender_that_leaves_frees_the_path_at_once_for_a_new_sender() {
    // Piping Server's Rust port keeps such a sender for good: the next
    // sender is refused and the path is dead.
    let (pipe, server) = start(piping().heartbeat(Heartbeat::every(Duration::from_secs(60)))).await;
    let mut s = sender(server.addr, "/p", b"dummy content", "").await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for 1").await;
    drop(s);
    // Long before any heartbeat.
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    let mut s = sender(server.addr, "/p", b"this is a content", "").await;
    let mut r = receiver(server.addr, "/p").await;
    let got = read_response(&mut r).await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (200, "this is a content")
    );
    assert_eq!(read_response(&mut s).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_sender_of_a_large_upload_that_leaves_frees_the_path_within_two_heartbeats() {
    let (pipe, server) = start(piping()).await;
    let mut s = send_raw(server.addr, &upload_head("POST", "/big", 10 << 20, "")).await;
    s.write_all(&data(1 << 20)).await.unwrap();
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for 1").await;
    drop(s);
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn one_of_several_waiting_receivers_leaving_leaves_room_for_another() {
    let (pipe, server) = start(piping()).await;
    let mut a = receiver(server.addr, "/p?n=2").await;
    let b = receiver(server.addr, "/p?n=2").await;
    eventually("both to wait", || pipe.waiting() == 2).await;
    drop(b);
    eventually("one to wait", || pipe.waiting() == 1).await;
    let mut c = receiver(server.addr, "/p?n=2").await;
    eventually("two to wait again", || pipe.waiting() == 2).await;
    let mut s = sender(server.addr, "/p?n=2", b"to both", "").await;
    assert_eq!(read_response(&mut a).await.text(), "to both");
    assert_eq!(read_response(&mut c).await.text(), "to both");
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}

/// A sender that has sent `sent` of `total` bytes, and its receivers with
/// their first bytes read.
async fn mid_transfer(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> (TcpStream, Vec<u8>, Vec<(TcpStream, Vec<u8>)>) {
    let mut s = send_raw(addr, &upload_head("POST", path, 1 << 20, "")).await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for").await;
    let mut rs = Vec::new();
    for _ in 0..n {
        rs.push(receiver(addr, path).await);
    }
    s.write_all(b"first bytes").await.unwrap();
    let mut out = Vec::new();
    for mut r in rs {
        let mut rbuf = Vec::new();
        read_until(&mut r, &mut rbuf, b"first bytes").await;
        out.push((r, rbuf));
    }
    read_to(&mut s, &mut buf, "Start sending").await;
    (s, buf, out)
}

/// Reads a receiver's response to its end: true if it ended properly (it
/// has a Content-Length, so a proper end is all of it).
async fn ends_properly(r: &mut TcpStream, mut buf: Vec<u8>) -> bool {
    within("the receiver's response to end", async {
        loop {
            let mut chunk = [0u8; 65536];
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let head_end = find(&buf, b"\r\n\r\n").unwrap() + 4;
    buf.len() - head_end == 1 << 20
}

#[tokio::test]
async fn a_sender_leaving_mid_transfer_cuts_its_receiver_visibly() {
    let (pipe, server) = start(piping()).await;
    let (s, _buf, mut rs) = mid_transfer(server.addr, "/cut", 1).await;
    drop(s);
    let (mut r, rbuf) = rs.pop().unwrap();
    assert!(!ends_properly(&mut r, rbuf).await);
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_sender_leaving_mid_transfer_cuts_every_receiver_visibly() {
    let (pipe, server) = start(piping()).await;
    let (s, _buf, rs) = mid_transfer(server.addr, "/cut?n=3", 3).await;
    drop(s);
    for (mut r, rbuf) in rs {
        assert!(!ends_properly(&mut r, rbuf).await);
    }
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_leaving_mid_transfer_cuts_the_sender_visibly() {
    let (pipe, server) = start(piping()).await;
    let (mut s, buf, mut rs) = mid_transfer(server.addr, "/cut", 1).await;
    drop(rs.pop());
    let (text, complete) = finish(&mut s, buf).await;
    assert!(!complete, "{text}");
    assert!(text.contains("[INFO] A receiver aborted.\n"), "{text}");
    assert!(text.contains("[ERROR] The transfer was cut"), "{text}");
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn one_receiver_leaving_mid_transfer_cuts_the_others_and_the_sender() {
    let (pipe, server) = start(piping()).await;
    let (mut s, buf, mut rs) = mid_transfer(server.addr, "/cut?n=3", 3).await;
    drop(rs.remove(1));
    for (mut r, rbuf) in rs {
        assert!(!ends_properly(&mut r, rbuf).await);
    }
    let (text, complete) = finish(&mut s, buf).await;
    assert!(!complete, "{text}");
    assert!(text.contains("[INFO] A receiver aborted.\n"), "{text}");
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

/// Reads a response to its end: true if it was cut (no head at all, as
/// when the body fails before its first byte, or an unfinished body).
async fn cut_short(r: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    within("the response to end", async {
        loop {
            let mut chunk = [0u8; 65536];
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    !buf.ends_with(b"\r\n0\r\n\r\n")
}

#[tokio::test]
async fn a_chunked_upload_past_the_limit_is_cut_on_every_side() {
    let (_pipe, server) = start(piping().max_upload_bytes(1000)).await;
    let mut r = receiver(server.addr, "/big?n=2").await;
    let mut r2 = receiver(server.addr, "/big?n=2").await;
    let mut s = send_raw(
        server.addr,
        "POST /big?n=2 HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    s.write_all(chunk.as_bytes()).await.unwrap();
    for r in [&mut r, &mut r2] {
        assert!(cut_short(r).await);
    }
    let res = read_response(&mut s).await;
    assert!(!res.complete);
    assert!(
        res.text().contains("larger than 1000 bytes"),
        "{}",
        res.text()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_sender_times_out_with_a_line_and_an_abnormal_end() {
    let (pipe, server) = start(piping().ttl(Duration::from_millis(200))).await;
    let mut s = sender(server.addr, "/late", b"x", "").await;
    let res = read_response(&mut s).await;
    assert!(!res.complete);
    assert!(
        res.text().contains("[ERROR] No receiver came within"),
        "{}",
        res.text()
    );
    assert_eq!(pipe.paths_in_use(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_receiver_times_out_with_504() {
    let (pipe, server) = start(piping().ttl(Duration::from_millis(200))).await;
    let mut r = receiver(server.addr, "/late").await;
    let res = read_response(&mut r).await;
    assert_eq!(res.status, 504);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_waiting_receivers_and_ends_waiting_senders() {
    let (pipe, server) = start(piping()).await;
    let mut r = receiver(server.addr, "/r").await;
    let mut s = sender(server.addr, "/s", b"x", "").await;
    eventually("both to wait", || pipe.waiting() == 2).await;
    server.shutdown.trigger();
    assert_eq!(read_response(&mut r).await.status, 503);
    assert!(!read_response(&mut s).await.complete);
    eventually("the paths to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

mod ephemeral {
    use super::*;

    #[tokio::test]
    async fn a_waiting_ephemeral_sender_that_leaves_frees_its_socket() {
        let pipe = pipe::Service::builder()
            .heartbeat(Heartbeat::every(BEAT))
            .build();
        let server = serve(pipe.clone()).await;
        let mut s = send_raw(server.addr, &upload_head("POST", "/", 100, "")).await;
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"http://test/").await;
        assert_eq!(pipe.waiting(), 1);
        drop(s);
        eventually("the socket to be freed", || pipe.waiting() == 0).await;
        server.stop().await;
    }
}
