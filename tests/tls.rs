//! HTTPS (issue 13): `Server::tls` over real sockets with a real TLS client
//! (tokio-rustls) and a certificate each test makes (rcgen): HTTP/1.1 and
//! HTTP/2 picked by ALPN, held responses with heartbeats, silent and broken
//! handshakes, the timeouts and shutdown; and the errors of
//! `server::load_tls_config`. The examples over TLS: `tests/tls_examples.rs`.

mod support;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use delayed_response::server::rustls::pki_types::ServerName;
use delayed_response::server::{self, RemoteAddr, Server};
use delayed_response::{Body, DelayedResponse, Heartbeat};
use http::uri::Scheme;
use http::{Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::tls::*;
use support::{closed_by_server, hello, start_fn, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A server with TLS from `pki` (loaded from PEM files, as a user would).
fn tls_server(pki: &Pki) -> Server {
    let (cert, key) = pem_files(&pki.cert_pem, &pki.key_pem);
    let config = server::load_tls_config(cert, key).unwrap();
    Server::new().tls(Arc::new(config))
}

/// A TLS client that trusts `pki`'s certificate and offers these ALPN
/// A held response: heartbeats until the test says the work is done.
async fn held_with_heartbeats(protocol: &[u8]) {
    let pki = self_signed();
    let done = Arc::new(Notify::new());
    let work_done = done.clone();
    let server = start_fn(tls_server(&pki), move |req| {
        let done = work_done.clone();
        async move {
            DelayedResponse::for_request(&req)
                .heartbeat(
                    Heartbeat::every(Duration::from_millis(20)).after(Duration::from_millis(10)),
                )
                .start(async move {
                    done.notified().await;
                    "done"
                })
                .await
        }
    })
    .await;
    let tls = connect(server.addr, &connector(&pki, &[protocol])).await;
    assert_eq!(alpn(&tls).as_deref(), Some(protocol));
    let mut client = Client::over(tls).await;
    let res = within(
        "the response head",
        client.send(request("/", Empty::<Bytes>::new())),
    )
    .await;
    let expected = if protocol == H2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    assert_eq!(res.version(), expected);
    // A heartbeat went out first, so the head is a 202.
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mut body = res.into_body();
    let first = next_data(&mut body).await.unwrap();
    assert_eq!(first, " ");
    done.notify_one();
    let mut rest = Vec::from(&first[..]);
    while let Some(data) = next_data(&mut body).await {
        rest.extend_from_slice(&data);
    }
    let text = String::from_utf8(rest).unwrap();
    assert_eq!(text.trim_start_matches(' '), "done", "{text:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_http1_client_gets_a_held_response_with_heartbeats_over_tls() {
    held_with_heartbeats(HTTP_1_1).await;
}

#[tokio::test]
async fn an_h2_client_gets_a_held_response_with_heartbeats_over_tls() {
    held_with_heartbeats(H2).await;
}

#[tokio::test]
async fn requests_over_tls_carry_the_https_scheme_and_the_client_address() {
    let pki = self_signed();
    let server = start_fn(tls_server(&pki), |req| async move {
        let scheme = req.extensions().get::<Scheme>().map(Scheme::to_string);
        let addr = req
            .extensions()
            .get::<RemoteAddr>()
            .map(|a| a.0.to_string());
        Response::new(Body::from(format!("{scheme:?} {addr:?}")))
    })
    .await;
    for protocol in [HTTP_1_1, H2] {
        let tls = connect(server.addr, &connector(&pki, &[protocol])).await;
        let local = tls.get_ref().0.local_addr().unwrap();
        let mut client = Client::over(tls).await;
        let res = client.send(request("/", Empty::<Bytes>::new())).await;
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("Some(\"https\") Some(\"{local}\")")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_offers_no_alpn_is_served_http_1_1() {
    let pki = self_signed();
    let server = hello(tls_server(&pki)).await;
    let tls = connect(server.addr, &connector(&pki, &[])).await;
    assert_eq!(alpn(&tls), None);
    let mut client = Client::over(tls).await;
    let res = client.send(request("/", Empty::<Bytes>::new())).await;
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    server.stop().await;
}

#[tokio::test]
async fn http1_only_negotiates_http_1_1_with_a_client_that_prefers_h2() {
    let pki = self_signed();
    let server = hello(tls_server(&pki).http1_only(true)).await;
    let tls = connect(server.addr, &connector(&pki, &[H2, HTTP_1_1])).await;
    assert_eq!(alpn(&tls).as_deref(), Some(HTTP_1_1));
    let mut client = Client::over(tls).await;
    let res = client.send(request("/", Empty::<Bytes>::new())).await;
    assert_eq!(res.version(), Version::HTTP_11);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_prefers_h2_gets_h2() {
    let pki = self_signed();
    let server = hello(tls_server(&pki)).await;
    let tls = connect(server.addr, &connector(&pki, &[H2, HTTP_1_1])).await;
    assert_eq!(alpn(&tls).as_deref(), Some(H2));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_starts_the_handshake_is_closed_after_the_header_read_timeout() {
    let pki = self_signed();
    let server = hello(tls_server(&pki).header_read_timeout(Duration::from_millis(200))).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    within(
        "the silent client to be closed",
        closed_by_server(&mut silent),
    )
    .await;
    // The server goes on.
    let tls = connect(server.addr, &connector(&pki, &[HTTP_1_1])).await;
    let mut client = Client::over(tls).await;
    let res = client.send(request("/", Empty::<Bytes>::new())).await;
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_mid_handshake_is_closed_after_the_header_read_timeout() {
    let pki = self_signed();
    let server = hello(tls_server(&pki).header_read_timeout(Duration::from_millis(200))).await;
    // A TLS record header announcing a ClientHello that never comes.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    within(
        "the stalled client to be closed",
        closed_by_server(&mut stalled),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_closed_and_the_server_goes_on() {
    let pki = self_signed();
    let server = hello(tls_server(&pki)).await;
    for garbage in [
        // Plain HTTP to the HTTPS port.
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        // Not even that.
        &[0xff; 300][..],
        // A handshake record whose message is nonsense.
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef][..],
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(garbage).await.unwrap();
        within("a bad handshake to be closed", closed_by_server(&mut s)).await;
    }
    let tls = connect(server.addr, &connector(&pki, &[H2])).await;
    let mut client = Client::over(tls).await;
    let res = client.send(request("/", Empty::<Bytes>::new())).await;
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_does_not_disturb_the_server() {
    let pki = self_signed();
    let server = hello(tls_server(&pki)).await;
    let stranger = self_signed();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let refused = within(
        "the handshake to fail",
        connector(&stranger, &[HTTP_1_1]).connect(name, tcp),
    )
    .await;
    assert!(refused.is_err());
    let tls = connect(server.addr, &connector(&pki, &[HTTP_1_1])).await;
    let mut client = Client::over(tls).await;
    let res = client.send(request("/", Empty::<Bytes>::new())).await;
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_tls_connection_is_closed_after_the_idle_timeout() {
    let pki = self_signed();
    let server = hello(tls_server(&pki).idle_timeout(Duration::from_millis(200))).await;
    let tls = connect(server.addr, &connector(&pki, &[HTTP_1_1])).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let res = send
        .send_request(request("/", Empty::<Bytes>::new()))
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    // The client's connection ends when the server closes it, with a TLS
    // close_notify (else rustls reports an unexpected end of file).
    within("the idle connection to be closed", conn)
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_a_connection_still_in_its_handshake_at_once() {
    let pki = self_signed();
    // Far longer than the test's patience: the server must not wait them out.
    let server = hello(
        tls_server(&pki)
            .grace_period(Duration::from_secs(600))
            .header_read_timeout(Duration::from_secs(600)),
    )
    .await;
    let addr = server.addr;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A handshake accepted after it proves it was accepted.
    connect(addr, &connector(&pki, &[HTTP_1_1])).await;
    server.stop().await;
    within(
        "the silent client to be closed",
        closed_by_server(&mut silent),
    )
    .await;
}

#[tokio::test]
async fn held_responses_end_when_a_tls_server_shuts_down() {
    let pki = self_signed();
    let (arrived, mut has_arrived) = tokio::sync::mpsc::unbounded_channel();
    let server = tls_server(&pki).grace_period(Duration::from_secs(600));
    let server = start_fn(server, move |req| {
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            DelayedResponse::for_request(&req)
                .heartbeat(Heartbeat::every(Duration::from_secs(60)))
                .start(std::future::pending::<()>())
                .await
        }
    })
    .await;
    let tls = connect(server.addr, &connector(&pki, &[H2])).await;
    let mut client = Client::over(tls).await;
    let waiting =
        tokio::spawn(async move { client.send(request("/", Empty::<Bytes>::new())).await });
    within("the request to arrive", has_arrived.recv())
        .await
        .unwrap();
    // Before its head: the held response answers 503 at shutdown, and the
    // server does not wait out its grace period for it.
    server.stop().await;
    let res = within("the held response", waiting).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// --- load_tls_config ---

fn load_error(cert: &str, key: &str) -> (io::Error, PathBuf, PathBuf) {
    let (cert_path, key_path) = pem_files(cert, key);
    let error = server::load_tls_config(&cert_path, &key_path).unwrap_err();
    (error, cert_path, key_path)
}

#[test]
fn a_loaded_config_offers_h2_and_http_1_1() {
    let pki = self_signed();
    let (cert, key) = pem_files(&pki.cert_pem, &pki.key_pem);
    let config = server::load_tls_config(cert, key).unwrap();
    assert_eq!(config.alpn_protocols, [H2.to_vec(), HTTP_1_1.to_vec()]);
}

#[test]
fn a_missing_file_is_named_in_the_error() {
    let pki = self_signed();
    let (cert, key) = pem_files(&pki.cert_pem, &pki.key_pem);
    let missing = cert.with_file_name("nope.pem");
    let error = server::load_tls_config(&missing, &key).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    let msg = error.to_string();
    assert!(msg.contains("certificate file"), "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    let error = server::load_tls_config(&cert, &missing).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    let msg = error.to_string();
    assert!(msg.contains("private key file"), "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

#[test]
fn a_certificate_file_without_a_certificate_is_refused() {
    let pki = self_signed();
    let (error, cert, _) = load_error("not a certificate\n", &pki.key_pem);
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let msg = error.to_string();
    assert!(
        msg.starts_with(&format!("{}: no certificate", cert.display())),
        "{msg}"
    );
}

#[test]
fn a_key_file_without_a_key_is_refused() {
    let pki = self_signed();
    let (error, _, key) = load_error(&pki.cert_pem, "");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let msg = error.to_string();
    assert!(
        msg.starts_with(&format!("{}: no private key", key.display())),
        "{msg}"
    );
}

#[test]
fn swapped_certificate_and_key_files_are_called_so() {
    let pki = self_signed();
    let (error, cert, _) = load_error(&pki.key_pem, &pki.cert_pem);
    let msg = error.to_string();
    assert!(
        msg.starts_with(&format!("{}: no certificate", cert.display())),
        "{msg}"
    );
    assert!(msg.contains("swapped"), "{msg}");
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let pki = self_signed();
    let other = self_signed();
    let (error, cert, key) = load_error(&pki.cert_pem, &other.key_pem);
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        error.to_string(),
        format!(
            "{}: the private key does not belong to the certificate in {}",
            key.display(),
            cert.display()
        )
    );
}

#[test]
fn a_broken_pem_section_is_refused() {
    let pki = self_signed();
    let cut = &pki.cert_pem[..pki.cert_pem.len() / 2];
    let (error, cert, _) = load_error(cut, &pki.key_pem);
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let msg = error.to_string();
    assert!(
        msg.starts_with(&format!("{}: not valid PEM", cert.display())),
        "{msg}"
    );
}
