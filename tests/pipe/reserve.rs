//! Reservations: `GET /reserve`, then an upload opens the reserved id.

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
