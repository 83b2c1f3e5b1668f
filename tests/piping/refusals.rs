//! The `400`s and the `405`, each with `Access-Control-Allow-Origin`.

use super::*;

fn refused(res: &RawResponse, says: &str) {
    assert_eq!(res.status, 400, "{res:?}");
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    assert!(res.text().contains(says), "{says:?} in {:?}", res.text());
}

async fn post_now(addr: SocketAddr, path: &str, headers: &str) -> RawResponse {
    let mut s = sender(addr, path, b"this is a content", headers).await;
    read_response(&mut s).await
}

async fn get_now(addr: SocketAddr, path: &str, headers: &str) -> RawResponse {
    let mut r = receiver_with(addr, path, headers).await;
    read_response(&mut r).await
}

#[tokio::test]
async fn a_sender_whose_n_differs_from_the_waiting_receivers_is_refused() {
    let (pipe, server) = start(piping()).await;
    let _r = receiver(server.addr, "/p?n=2").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    refused(
        &post_now(server.addr, "/p?n=1", "").await,
        "should be 2 but 1",
    );
    refused(
        &post_now(server.addr, "/p?n=3", "").await,
        "should be 2 but 3",
    );
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_whose_n_differs_from_the_waiting_sender_is_refused() {
    let (_pipe, server) = start(piping()).await;
    let mut s = sender(server.addr, "/p?n=2", b"data", "").await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for 2").await;
    refused(
        &get_now(server.addr, "/p?n=1", "").await,
        "should be 2 but 1",
    );
    refused(
        &get_now(server.addr, "/p?n=3", "").await,
        "should be 2 but 3",
    );
    refused(&get_now(server.addr, "/p", "").await, "should be 2 but 1");
    server.stop().await;
}

#[tokio::test]
async fn an_extra_receiver_is_refused_before_and_after_the_sender_came() {
    let (pipe, server) = start(piping()).await;
    let r1 = receiver(server.addr, "/p?n=2").await;
    let r2 = receiver(server.addr, "/p?n=2").await;
    eventually("two receivers to wait", || pipe.waiting() == 2).await;
    refused(&get_now(server.addr, "/p?n=2", "").await, "reached limits");
    drop((r1, r2));

    // Once the transfer runs, the path is established (the upload is not
    // over before the refusals: half of it is held back).
    let body = data(1 << 20);
    let mut s = send_raw(server.addr, &upload_head("POST", "/q?n=2", body.len(), "")).await;
    s.write_all(&body[..1000]).await.unwrap();
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for 2").await;
    let mut a = receiver(server.addr, "/q?n=2").await;
    let mut b = receiver(server.addr, "/q?n=2").await;
    read_to(&mut s, &mut buf, "Start sending to 2").await;
    refused(
        &get_now(server.addr, "/q?n=2", "").await,
        "established already",
    );
    refused(
        &post_now(server.addr, "/q?n=2", "").await,
        "established already",
    );
    s.write_all(&body[1000..]).await.unwrap();
    assert!(read_response(&mut a).await.body == body);
    assert!(read_response(&mut b).await.body == body);
    server.stop().await;
}

#[tokio::test]
async fn another_sender_on_a_waiting_path_is_refused() {
    let (_pipe, server) = start(piping()).await;
    let mut s = sender(server.addr, "/p", b"first", "").await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting for 1").await;
    refused(
        &post_now(server.addr, "/p", "").await,
        "Another sender has been connected on '/p'",
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_n_values_are_refused_on_both_sides() {
    let (pipe, server) = start(piping().max_receivers(5)).await;
    for (query, says) in [
        ("n=hoge", "Invalid \"n\""),
        ("n=0", "n should > 0, but n = 0"),
        ("n=-1", "n should > 0, but n = -1"),
        ("n=6", "at most 5"),
    ] {
        refused(
            &post_now(server.addr, &format!("/p?{query}"), "").await,
            says,
        );
        refused(
            &get_now(server.addr, &format!("/p?{query}"), "").await,
            says,
        );
    }
    assert_eq!(pipe.waiting(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_service_worker_registration_is_refused() {
    let (_pipe, server) = start(piping()).await;
    refused(
        &get_now(server.addr, "/mysw.js", "Service-Worker: script\r\n").await,
        "Service Worker registration is rejected",
    );
    server.stop().await;
}

#[tokio::test]
async fn content_range_is_refused_for_post_and_put() {
    let (_pipe, server) = start(piping()).await;
    let range = "Content-Range: bytes 2-6/100\r\n";
    refused(&post_now(server.addr, "/p", range).await, "Content-Range");
    let mut s = send_raw(server.addr, &upload_head("PUT", "/p", 5, range)).await;
    s.write_all(b"hello").await.unwrap();
    refused(
        &read_response(&mut s).await,
        "Content-Range is not supported for now in PUT",
    );
    server.stop().await;
}

#[tokio::test]
async fn sending_to_a_reserved_path_is_refused() {
    let (_pipe, server) = start(piping()).await;
    for path in [
        "/",
        "/noscript",
        "/version",
        "/help",
        "/favicon.ico",
        "/robots.txt",
    ] {
        refused(
            &post_now(server.addr, path, "").await,
            "Cannot send to the reserved path",
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let (_pipe, server) = start(piping()).await;
    for method in ["DELETE", "PATCH", "HEAD"] {
        let mut s = send_raw(
            server.addr,
            &format!("{method} /mydataid HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let res = read_response(&mut s).await;
        assert_eq!(res.status, 405, "{method}");
        assert_eq!(res.header("allow"), Some("GET, HEAD, POST, PUT, OPTIONS"));
        assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_with_413() {
    let (pipe, server) = start(piping().max_upload_bytes(10)).await;
    let res = post_now(server.addr, "/p", "").await;
    assert_eq!(res.status, 413);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    assert_eq!(pipe.waiting(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_client_at_its_cap_of_waiting_requests_gets_429() {
    let (pipe, server) = start(piping().max_waiting_per_client(2)).await;
    let mut s = sender(server.addr, "/a", b"x", "").await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting").await;
    let _r = receiver(server.addr, "/b").await;
    eventually("both to wait", || pipe.waiting() == 2).await;
    let res = get_now(server.addr, "/c", "").await;
    assert_eq!(res.status, 429);
    assert!(res.header("retry-after").is_some());
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}

#[tokio::test]
async fn past_max_waiting_paths_new_ones_get_503() {
    let (_pipe, server) = start(piping().max_waiting(1)).await;
    let mut s = sender(server.addr, "/a", b"x", "").await;
    let mut buf = Vec::new();
    read_to(&mut s, &mut buf, "Waiting").await;
    let res = get_now(server.addr, "/b", "").await;
    assert_eq!(res.status, 503);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}
