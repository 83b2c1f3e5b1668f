//! Reservations: `GET /reserve` answers a download URL to share and an
//! upload URL with a secret; only that secret opens the reservation.

use super::*;

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
    let r = Reserved::of(&reserve(server.addr, "Referer: http://app.example/upload\r\n").await);
    assert_eq!(r.id.len(), 12);

    // Regression (original): a GET before the upload hung and burnt the
    // reservation.
    let early = download(server.addr, &r.id).await;
    assert_eq!(early.status, 409);
    assert_eq!(
        early.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let mut sender = open(server.addr, &r.upload(3)).await;
    assert_eq!(sender.id, r.id);
    sender.send(b"abc").await;
    let res = download(server.addr, &r.id).await;
    assert_eq!(res.text(), "abc");
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 3 bytes"), "{text}");

    let mut again = send_raw(server.addr, &r.upload(3)).await;
    assert_eq!(read_response(&mut again).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn get_reserve_answers_the_download_url_then_the_upload_url_with_its_secret() {
    let server = serve(pipe().reservations(true).build()).await;
    let res = reserve(server.addr, "").await;
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let r = Reserved::of(&res);
    let secret = r
        .upload_path
        .strip_prefix(&format!("/reserve/{}/", r.id))
        .unwrap();
    // 128 bits as base64url, and no relation to the id.
    assert_eq!(secret.len(), 22, "{secret}");
    assert!(!secret.contains(&r.id));

    let res = reserve(server.addr, "Accept: text/html, application/json;q=0.9\r\n").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let id = json["id"].as_str().unwrap();
    assert_eq!(json["download"], format!("http://test/{id}"));
    let upload = json["upload"].as_str().unwrap();
    assert!(
        upload.starts_with(&format!("http://test/reserve/{id}/")),
        "{upload}"
    );
    server.stop().await;
}

// Regression (issue 9.2): the download id was also the upload key, so
// anyone who saw the download link could upload first: the receiver got the
// attacker's bytes and the real sender a 404.
#[tokio::test]
async fn the_download_link_alone_cannot_open_a_reservation() {
    let server = serve(pipe().reservations(true).build()).await;
    let r = Reserved::of(&reserve(server.addr, "").await);
    let forged = [
        format!("/reserve/{}", r.id),
        format!("/reserve/{}/{}", r.id, "A".repeat(22)),
        format!("/reserve/{}/", r.id),
        format!("/reserve/{}/short", r.id),
    ];
    for path in &forged {
        let mut attacker = send_raw(server.addr, &Reserved::upload_head(path, 4)).await;
        attacker.write_all(b"evil").await.unwrap();
        let res = read_response(&mut attacker).await;
        assert_eq!(res.status, 404, "{path}: {res:?}");
    }
    let mut sender = open(server.addr, &r.upload(4)).await;
    sender.send(b"real").await;
    assert_eq!(download(server.addr, &r.id).await.text(), "real");
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 4 bytes"), "{text}");
    server.stop().await;
}

// Regression (issue 9.2): a reservation whose first upload dropped could not
// be retried.
#[tokio::test]
async fn a_reservation_whose_sender_vanished_can_be_uploaded_again() {
    let server = serve(pipe().reservations(true).build()).await;
    let r = Reserved::of(&reserve(server.addr, "").await);
    let sender = open(server.addr, &r.upload(4)).await;
    sender.stream.set_zero_linger().unwrap();
    drop(sender);
    // Once the pipe has noticed, the upload URL opens the reservation again.
    let mut retry = within("the reservation to be rearmed", async {
        loop {
            let mut s = send_raw(server.addr, &r.upload(4)).await;
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while find(&head, b"\n\r\n").is_none() {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            if head.starts_with(b"HTTP/1.1 200 OK") {
                return s;
            }
            assert!(head.starts_with(b"HTTP/1.1 404"), "{head:?}");
        }
    })
    .await;
    retry.write_all(b"good").await.unwrap();
    assert_eq!(download(server.addr, &r.id).await.text(), "good");
    server.stop().await;
}

// Regression (issue 9.2): an upload that failed before its first byte used
// up the reservation.
#[tokio::test]
async fn a_reservation_whose_upload_failed_before_its_first_byte_stays_usable() {
    let server = serve(
        pipe()
            .reservations(true)
            .heartbeat(Heartbeat::every(Duration::from_secs(60)))
            .build(),
    )
    .await;
    let r = Reserved::of(&reserve(server.addr, "").await);
    let chunked = format!(
        "POST {} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        r.upload_path
    );
    let mut bad = open(server.addr, &chunked).await;
    bad.send(b"zz\r\n").await;
    assert_eq!(download(server.addr, &r.id).await.status, 502);
    let (text, _) = bad.finish().await;
    assert!(
        text.contains("cut: the upload failed after 0 bytes"),
        "{text}"
    );
    // Reserved again: a GET waits for an upload, which the secret opens.
    assert_eq!(download(server.addr, &r.id).await.status, 409);
    let mut good = open(server.addr, &r.upload(2)).await;
    good.send(b"ok").await;
    assert_eq!(download(server.addr, &r.id).await.text(), "ok");
    server.stop().await;
}

// The ephemeral mode needs no upload secret: the sender's open request is
// the upload, and the download id grants one GET, nothing else.
#[tokio::test]
async fn an_ephemeral_download_id_opens_nothing_but_its_download() {
    let pipe = pipe().reservations(true).build();
    let server = serve(pipe.clone()).await;
    let mut sender = open(server.addr, &post(4, "")).await;
    for path in [
        format!("/reserve/{}", sender.id),
        format!("/reserve/{}/{}", sender.id, "A".repeat(22)),
    ] {
        let mut s = send_raw(server.addr, &Reserved::upload_head(&path, 0)).await;
        assert_eq!(read_response(&mut s).await.status, 404, "{path}");
    }
    // `PUT /{id}` is an upload of a file named like the id: a socket of its
    // own, which leaves this one alone.
    let other = open(
        server.addr,
        &format!(
            "PUT /{} HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\n",
            sender.id
        ),
    )
    .await;
    assert_ne!(other.id, sender.id);
    assert_eq!(pipe.waiting(), 2);
    sender.send(b"mine").await;
    assert_eq!(download(server.addr, &sender.id).await.text(), "mine");
    server.stop().await;
}

#[tokio::test]
async fn reserve_routes_are_off_by_default() {
    let server = serve(pipe().build()).await;
    assert_eq!(reserve(server.addr, "").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn opening_a_reservation_does_not_renew_its_ttl() {
    let pipe = pipe()
        .reservations(true)
        .ttl(Duration::from_millis(300))
        .build();
    let server = serve(pipe.clone()).await;
    let r = Reserved::of(&reserve(server.addr, "").await);
    let sender = open(server.addr, &r.upload(3)).await;
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
