//! The reserved paths, and CORS with its preflight.

use super::*;

async fn ask(addr: SocketAddr, method: &str, path: &str, headers: &str) -> RawResponse {
    let mut s = send_raw(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await;
    read_response(&mut s).await
}

#[tokio::test]
async fn the_index_is_the_web_page() {
    let (_pipe, server) = start(piping()).await;
    for path in ["/", ""] {
        let path = if path.is_empty() { "/" } else { path };
        let res = ask(server.addr, "GET", path, "").await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(
            res.header("content-length"),
            Some(res.body.len().to_string().as_str())
        );
        let text = res.text();
        assert!(text.contains("data-mode=\"piping\""));
        // Nothing is loaded from elsewhere.
        assert!(!text.contains("src=\"http"), "{text}");
    }
    let head = ask(server.addr, "HEAD", "/", "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn noscript_is_a_form_that_posts_to_the_path() {
    let (_pipe, server) = start(piping()).await;
    let res = ask(server.addr, "GET", "/noscript?path=mypath", "").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    let text = res.text();
    assert!(text.contains("action=\"mypath\""), "{text}");
    assert!(text.contains("enctype=\"multipart/form-data\""));
    assert!(!text.contains("<script"));
    let csp = res.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'nonce-"),
        "{csp}"
    );
    // The path is escaped where it is shown.
    let res = ask(
        server.addr,
        "GET",
        "/noscript?path=%22%3E%3Cx&mode=text&n=2",
        "",
    )
    .await;
    let text = res.text();
    assert!(text.contains("action=\"&quot;&gt;&lt;x?n=2\""), "{text}");
    assert!(text.contains("name=\"input_text\""));
    server.stop().await;
}

#[tokio::test]
async fn version_help_favicon_and_robots() {
    let (_pipe, server) = start(piping()).await;
    let version = ask(server.addr, "GET", "/version", "").await;
    assert_eq!(version.status, 200);
    assert_eq!(
        version.text(),
        format!("{} (delayed-response)\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(version.header("access-control-allow-origin"), Some("*"));

    let help = ask(server.addr, "GET", "/help", "").await;
    assert_eq!(help.status, 200);
    assert_eq!(
        help.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(help.header("access-control-allow-origin"), Some("*"));
    let text = help.text();
    assert!(
        text.contains("curl -T myfile http://example.test:8080/mypath"),
        "{text}"
    );
    assert!(
        text.contains("curl http://example.test:8080/mypath"),
        "{text}"
    );
    let https = ask(server.addr, "GET", "/help", "X-Forwarded-Proto: https\r\n").await;
    assert!(https.text().contains("https://example.test:8080/mypath"));

    assert_eq!(
        ask(server.addr, "GET", "/favicon.ico", "").await.status,
        204
    );
    let robots = ask(server.addr, "GET", "/robots.txt", "").await;
    assert_eq!(robots.status, 404);
    assert_eq!(robots.header("content-length"), Some("0"));
    server.stop().await;
}

#[tokio::test]
async fn a_preflight_is_answered_for_any_origin() {
    let (_pipe, server) = start(piping()).await;
    let res = ask(
        server.addr,
        "OPTIONS",
        "/mydataid",
        "Origin: https://elsewhere.test\r\nAccess-Control-Request-Method: POST\r\n",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        res.header("access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, OPTIONS")
    );
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("Content-Type, Content-Disposition, X-Piping")
    );
    assert_eq!(
        res.header("access-control-expose-headers"),
        Some("Access-Control-Allow-Headers")
    );
    assert_eq!(res.header("access-control-max-age"), Some("86400"));
    assert_eq!(res.header("content-length"), Some("0"));
    assert_eq!(res.header("access-control-allow-private-network"), None);
    server.stop().await;
}

#[tokio::test]
async fn a_private_network_preflight_is_allowed() {
    let (_pipe, server) = start(piping()).await;
    let res = ask(
        server.addr,
        "OPTIONS",
        "/mydataid",
        "Origin: https://public.test\r\nAccess-Control-Request-Method: GET\r\n\
         Access-Control-Request-Private-Network: true\r\n",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    server.stop().await;
}

#[tokio::test]
async fn without_the_page_the_index_is_404() {
    let (_pipe, server) = start(piping().page(false)).await;
    assert_eq!(ask(server.addr, "GET", "/", "").await.status, 404);
    assert_eq!(ask(server.addr, "GET", "/noscript", "").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_ephemeral_mode_serves_its_page_at_the_root() {
    let pipe = pipe::Service::builder().reservations(true).build();
    let server = serve(pipe).await;
    let res = ask(server.addr, "GET", "/", "").await;
    assert_eq!(res.status, 200);
    let text = res.text();
    assert!(text.contains("data-mode=\"ephemeral\" data-reservations=\"on\""));
    server.stop().await;
}
