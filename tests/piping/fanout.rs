//! `?n=N`: every receiver gets every byte; the transfer starts when all are
//! there; the slowest sets the pace.

use super::*;

async fn receivers(addr: SocketAddr, path: &str, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(receiver(addr, path).await);
    }
    out
}

async fn all_get(streams: Vec<TcpStream>, body: &[u8]) {
    for mut r in streams {
        let got = read_response(&mut r).await;
        assert_eq!((got.status, got.complete), (200, true));
        assert_eq!(got.body.len(), body.len());
        assert!(got.body == body, "the bytes differ");
        assert_eq!(
            got.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
}

#[tokio::test]
async fn receivers_first_then_the_sender_for_n_2_and_3() {
    let (pipe, server) = start(piping()).await;
    for n in [2usize, 3] {
        let path = format!("/fan{n}?n={n}");
        let rs = receivers(server.addr, &path, n).await;
        eventually("the receivers to wait", || pipe.waiting() == n).await;
        let body = data(300_000);
        let mut s = sender(server.addr, &path, &body, "").await;
        all_get(rs, &body).await;
        let res = read_response(&mut s).await;
        assert!(res.complete);
        let text = res.text();
        assert!(
            text.starts_with(&format!(
                "[INFO] Waiting for {n} receiver(s)...\n[INFO] {n} receiver(s) has/have been connected.\n"
            )),
            "{text}"
        );
        for line in lines_of_a_whole_transfer(n) {
            assert!(text.contains(&line), "{line:?} in {text}");
        }
        eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_sender_first_then_its_receivers_for_n_1_2_and_3() {
    let (_pipe, server) = start(piping()).await;
    for n in [1usize, 2, 3] {
        let path = format!("/s{n}?n={n}");
        let body = data(200_000 + n);
        let mut s = sender(server.addr, &path, &body, "").await;
        let mut buf = Vec::new();
        read_to(
            &mut s,
            &mut buf,
            &format!("[INFO] Waiting for {n} receiver(s)...\n"),
        )
        .await;
        let mut rs = Vec::new();
        for k in 1..=n {
            rs.push(receiver(server.addr, &path).await);
            if k < n {
                // The sender hears of each receiver before the start.
                let count = |b: &[u8]| {
                    String::from_utf8_lossy(b)
                        .matches("[INFO] A receiver was connected.")
                        .count()
                };
                while count(&buf) < k {
                    let mut more = [0u8; 256];
                    let got = within("a line", s.read(&mut more)).await.unwrap();
                    assert!(got > 0, "the sender's response ended");
                    buf.extend_from_slice(&more[..got]);
                }
            }
        }
        all_get(rs, &body).await;
        let (text, complete) = finish(&mut s, buf).await;
        assert!(complete, "{text}");
        assert_eq!(
            text.matches("[INFO] A receiver was connected.\n").count(),
            n,
            "{text}"
        );
        for line in lines_of_a_whole_transfer(n) {
            assert!(text.contains(&line), "{line:?} in {text}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_then_the_sender_then_the_others() {
    let (pipe, server) = start(piping()).await;
    let path = "/mixed?n=3";
    let mut rs = vec![receiver(server.addr, path).await];
    eventually("the first receiver to wait", || pipe.waiting() == 1).await;
    let body = data(50_000);
    let mut s = sender(server.addr, path, &body, "").await;
    let mut buf = Vec::new();
    read_to(
        &mut s,
        &mut buf,
        "[INFO] 1 receiver(s) has/have been connected.\n",
    )
    .await;
    rs.push(receiver(server.addr, path).await);
    rs.push(receiver(server.addr, path).await);
    all_get(rs, &body).await;
    let (text, complete) = finish(&mut s, buf).await;
    assert!(complete, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_upload_reaches_every_receiver_without_a_length() {
    let (pipe, server) = start(piping()).await;
    let path = "/chunked?n=2";
    let mut rs = receivers(server.addr, path, 2).await;
    eventually("the receivers to wait", || pipe.waiting() == 2).await;
    let mut s = send_raw(
        server.addr,
        &format!("POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"),
    )
    .await;
    s.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    for r in &mut rs {
        let got = read_response(r).await;
        assert_eq!((got.text().as_str(), got.complete), ("hello world", true));
        assert_eq!(got.header("content-length"), None);
    }
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}

#[tokio::test]
async fn every_receiver_gets_every_byte_while_one_reads_late() {
    // One receiver reads nothing until the others are well under way: the
    // transfer waits for it (the slowest sets the pace), and everyone gets
    // all 8 MiB.
    let (pipe, server) = start(piping()).await;
    let path = "/slow?n=3";
    let mut rs = receivers(server.addr, path, 3).await;
    eventually("the receivers to wait", || pipe.waiting() == 3).await;
    let body = data(8 << 20);
    let mut s = send_raw(server.addr, &upload_head("POST", path, body.len(), "")).await;
    let writer = {
        let body = body.clone();
        tokio::spawn(async move {
            s.write_all(&body).await.unwrap();
            s
        })
    };
    let slow = rs.remove(0);
    let fast: Vec<_> = rs
        .into_iter()
        .map(|mut r| tokio::spawn(async move { read_response(&mut r).await }))
        .collect();
    let mut slow = slow;
    let got = read_response(&mut slow).await;
    assert!(got.complete && got.body == body);
    for f in fast {
        let got = f.await.unwrap();
        assert!(got.complete && got.body == body);
    }
    let mut s = writer.await.unwrap();
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}
