//! Limits, bad input, and either side going away mid-transfer.

use super::*;

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
async fn past_max_waiting_new_sockets_get_503() {
    let server = serve(pipe().max_waiting(1).build()).await;
    let _first = open(server.addr, &post(1, "")).await;
    let mut s = send_raw(server.addr, &post(1, "")).await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("5"));
    server.stop().await;
}

/// A pipe whose heartbeats never come within a test: only the upload itself
/// can reveal a sender that went away.
fn slow_heartbeat_pipe() -> Builder {
    pipe::Service::builder().heartbeat(Heartbeat::every(Duration::from_secs(60)))
}

// Regression (issue 9.6): a raw upload that failed before its first byte
// left the receiver without a status line (curl exit 52).
#[tokio::test]
async fn a_raw_upload_that_fails_before_its_first_byte_gets_the_receiver_a_502() {
    let server = serve(slow_heartbeat_pipe().build()).await;
    let mut sender = open(server.addr, CHUNKED).await;
    // Not a chunk size: the upload fails at its first bytes.
    sender.send(b"zz\r\n").await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.status, 502, "{res:?}");
    assert_eq!(res.text(), "the upload failed before any data\n");
    let (text, _) = sender.finish().await;
    assert!(
        text.contains("cut: the upload failed after 0 bytes"),
        "{text}"
    );
    server.stop().await;
}

// Regression (issue 9.6): a raw upload whose sender closed its connection
// before sending a byte left the receiver without a status line.
#[tokio::test]
async fn a_raw_upload_whose_sender_vanished_before_its_first_byte_is_502_or_404() {
    let server = serve(slow_heartbeat_pipe().build()).await;
    let sender = open(server.addr, &post(100, "")).await;
    let id = sender.id.clone();
    sender.stream.set_zero_linger().unwrap();
    drop(sender);
    let res = download(server.addr, &id).await;
    // 404 if the pipe noticed first, 502 if the receiver did: never no answer.
    assert!(res.status == 502 || res.status == 404, "{res:?}");
    server.stop().await;
}

// Regression (issue 9.6): a sender that half-closed after a complete body
// (`nc -N`) lost its upload: the receiver got 404.
#[tokio::test]
async fn a_complete_upload_whose_sender_half_closed_is_still_delivered() {
    let server = serve(slow_heartbeat_pipe().build()).await;
    let mut sender = open(server.addr, &post(11, "")).await;
    sender.send(b"hello world").await;
    sender.stream.shutdown().await.unwrap();
    // Give the server every chance to see the FIN first.
    let mut rest = Vec::new();
    let _ = within(
        "the sender's response to end",
        sender.stream.read_to_end(&mut rest),
    )
    .await;
    let res = download(server.addr, &sender.id).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert!(res.complete);
    assert_eq!(res.text(), "hello world");
    server.stop().await;
}
