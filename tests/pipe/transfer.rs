//! Uploads of every kind stream into their single download.

use super::*;

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
async fn a_slow_receiver_slows_the_sender() {
    let server = serve(pipe().build()).await;
    const TOTAL: usize = 256 << 20;
    let mut sender = open(server.addr, &post(TOTAL, "")).await;
    let mut rx = get(server.addr, &format!("/{}", sender.id)).await;
    let block = vec![7u8; 1 << 16];
    // The receiver's head goes out with the first bytes of the upload.
    sender.stream.write_all(&block).await.unwrap();
    let mut written = block.len();
    let mut head = Vec::new();
    read_until(&mut rx, &mut head, b"\r\n\r\n").await;
    // The receiver reads nothing more: the sender must stall long before
    // TOTAL (kernel socket buffers and hyper's bounded buffers only).
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
