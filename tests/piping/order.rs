//! Sender and receiver in either order, over HTTP/1.1 and h2c.

use super::*;

#[tokio::test]
async fn a_sender_first_then_its_receiver_gets_every_byte() {
    let (pipe, server) = start(piping()).await;
    let body = data(100_000);
    let mut s = sender(server.addr, "/mydataid", &body, "").await;
    let mut buf = Vec::new();
    let text = read_to(&mut s, &mut buf, "[INFO] Waiting for 1 receiver(s)...\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(pipe.waiting(), 1);

    let mut r = receiver(server.addr, "/mydataid").await;
    let got = read_response(&mut r).await;
    assert_eq!(got.status, 200);
    assert!(got.complete);
    assert_eq!(got.body, body);
    assert_eq!(got.header("content-length"), Some("100000"));

    let (text, complete) = finish(&mut s, buf).await;
    assert!(complete, "{text}");
    assert!(
        text.contains("[INFO] A receiver was connected.\n"),
        "{text}"
    );
    for line in lines_of_a_whole_transfer(1) {
        assert!(text.contains(&line), "{line:?} in {text}");
    }
    eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_first_then_its_sender_delivers_every_byte() {
    let (pipe, server) = start(piping()).await;
    let mut r = receiver(server.addr, "/mydataid").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    let body = data(70_000);
    let mut s = sender(server.addr, "/mydataid", &body, "").await;
    let got = read_response(&mut r).await;
    assert_eq!((got.status, got.complete), (200, true));
    assert_eq!(got.body, body);

    let res = read_response(&mut s).await;
    assert!(res.complete);
    let text = res.text();
    assert!(
        text.starts_with(
            "[INFO] Waiting for 1 receiver(s)...\n[INFO] 1 receiver(s) has/have been connected.\n"
        ),
        "{text}"
    );
    for line in lines_of_a_whole_transfer(1) {
        assert!(text.contains(&line), "{line:?} in {text}");
    }
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}

#[tokio::test]
async fn put_sends_as_post_does() {
    let (pipe, server) = start(piping()).await;
    let mut r = receiver(server.addr, "/file.txt").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    let mut s = send_raw(server.addr, &upload_head("PUT", "/file.txt", 5, "")).await;
    s.write_all(b"hello").await.unwrap();
    assert_eq!(read_response(&mut r).await.text(), "hello");
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_upload_streams_as_it_comes() {
    let (pipe, server) = start(piping()).await;
    let mut r = receiver(server.addr, "/chunks").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    let mut s = send_raw(
        server.addr,
        "POST /chunks HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    s.write_all(b"7\r\nthis is\r\n").await.unwrap();
    // The first chunk arrives before the upload ends.
    let mut buf = Vec::new();
    read_until(&mut r, &mut buf, b"this is").await;
    s.write_all(b"a\r\n a content\r\n0\r\n\r\n").await.unwrap();
    let (text, complete) = finish(&mut r, buf).await;
    assert!(complete, "{text}");
    assert!(text.contains(" a content\r\n0\r\n\r\n"), "{text}");
    assert!(read_response(&mut s).await.complete);
    server.stop().await;
}

#[tokio::test]
async fn an_empty_upload_reaches_its_receiver_as_an_empty_body() {
    let (_pipe, server) = start(piping()).await;
    let mut s = sender(server.addr, "/empty", b"", "").await;
    let mut r = receiver(server.addr, "/empty").await;
    let got = read_response(&mut r).await;
    assert_eq!((got.status, got.complete), (200, true));
    assert!(got.body.is_empty());
    assert!(read_response(&mut s)
        .await
        .text()
        .contains("received successfully"));
    server.stop().await;
}

#[tokio::test]
async fn a_path_is_free_again_after_its_transfer() {
    let (pipe, server) = start(piping()).await;
    for round in 0..3 {
        let body = format!("round {round}");
        let mut s = sender(server.addr, "/again", body.as_bytes(), "").await;
        let mut r = receiver(server.addr, "/again").await;
        assert_eq!(read_response(&mut r).await.text(), body);
        assert!(read_response(&mut s).await.complete);
        eventually("the path to be free", || pipe.paths_in_use() == 0).await;
    }
    server.stop().await;
}

mod h2c {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn request(method: &str, path: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(format!("http://test{path}"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    }

    #[tokio::test]
    async fn a_transfer_works_over_h2c_in_both_orders() {
        let (pipe, server) = start(piping()).await;
        // Receiver first.
        let mut rc = h2_connect::<Full<Bytes>>(server.addr).await;
        let receiving =
            tokio::spawn(async move { rc.send_request(request("GET", "/h2", b"")).await });
        eventually("the receiver to wait", || pipe.waiting() == 1).await;
        let mut sc = h2_connect::<Full<Bytes>>(server.addr).await;
        let sent = sc
            .send_request(request("POST", "/h2", b"over h2"))
            .await
            .unwrap();
        let res = receiving.await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"over h2");
        let lines = sent.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&lines).contains("received successfully"));

        // Sender first.
        let sent =
            tokio::spawn(async move { sc.send_request(request("PUT", "/h2b", b"again")).await });
        eventually("the sender to wait", || pipe.waiting() == 1).await;
        let mut rc = h2_connect::<Full<Bytes>>(server.addr).await;
        let res = rc.send_request(request("GET", "/h2b", b"")).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"again");
        let lines = sent
            .await
            .unwrap()
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&lines.to_bytes()).contains("Sent successfully"));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_waiting_h2_receiver_that_resets_its_stream_frees_the_path_at_once() {
        let (pipe, server) = start(piping()).await;
        let mut rc = h2_connect::<Full<Bytes>>(server.addr).await;
        let receiving =
            tokio::spawn(async move { rc.send_request(request("GET", "/gone", b"")).await });
        eventually("the receiver to wait", || pipe.waiting() == 1).await;
        // Dropping the request future resets the stream.
        receiving.abort();
        eventually("the path to be free", || pipe.waiting() == 0).await;
        server.stop().await;
    }
}
