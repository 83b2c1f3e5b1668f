//! The examples over HTTPS (issue 13): every example takes `--tls-cert` and
//! `--tls-key` (both or neither, named in `--help`, a file it cannot use
//! named before it listens) and serves HTTP/1.1 and HTTP/2 by ALPN; the
//! headline `pipe_server` streams an upload into a download over TLS.
//!
//! Run alone (`--test tls_examples`), cargo does not rebuild the examples:
//! build them first (`cargo build --all-features --examples`).

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use support::example::*;
use support::tls::*;
use support::within;

/// The examples this build has (each needs its module's features).
fn examples() -> Vec<&'static str> {
    let mut names = vec!["pipe_server"];
    if cfg!(feature = "json") {
        names.extend(["long_poll", "axum"]);
    }
    if cfg!(feature = "signal") {
        names.push("signal_server");
    }
    if cfg!(all(feature = "park", feature = "json")) {
        names.push("async_jobs");
    }
    names
}

#[tokio::test]
async fn every_example_lists_the_tls_options_in_its_help() {
    for name in examples() {
        let out = run(name, &["--help"]).await;
        assert_eq!(out.status.code(), Some(0), "{name}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--tls-cert PATH"), "{name}: {help}");
        assert!(help.contains("--tls-key PATH"), "{name}: {help}");
    }
}

#[tokio::test]
async fn every_example_wants_both_tls_files_or_neither() {
    for name in examples() {
        for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
            let out = run(name, &[given, "x.pem"]).await;
            assert_eq!(out.status.code(), Some(2), "{name} {given}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("{given} needs {missing}")),
                "{name}: {err}"
            );
            assert!(err.contains("usage:"), "{name}: {err}");
        }
    }
}

#[tokio::test]
async fn every_example_names_a_tls_file_it_cannot_use_and_does_not_listen() {
    let pki = self_signed();
    let (cert, _) = pem_files(&pki.cert_pem, &pki.key_pem);
    let missing = cert.with_file_name("missing-key.pem");
    for name in examples() {
        let out = run(
            name,
            &[
                "--addr".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--tls-cert".as_ref(),
                cert.as_os_str(),
                "--tls-key".as_ref(),
                missing.as_os_str(),
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&missing.display().to_string()),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name} said it listens");
    }
}

/// Starts example `name` over TLS with `pki`; its first line must say
/// `https://`.
async fn start_example_over_tls(name: &str, pki: &Pki, args: &[&str]) -> Example {
    let (cert, key) = pem_files(&pki.cert_pem, &pki.key_pem);
    let mut cmd = example(name);
    cmd.args(args)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    listen(&mut cmd, "https").await
}

#[tokio::test]
async fn every_example_serves_https_over_h1_and_h2() {
    let pki = self_signed();
    for name in examples() {
        let Example { addr, child } = start_example_over_tls(name, &pki, &[]).await;
        for protocol in [HTTP_1_1, H2] {
            let tls = connect(addr, &connector(&pki, &[protocol])).await;
            let mut client = Client::over(tls).await;
            let res = within(
                "a response",
                client.send(request("/nope", Empty::<Bytes>::new())),
            )
            .await;
            // Whatever each one answers there: an HTTP answer over TLS.
            assert!(res.status().is_client_error(), "{name}: {}", res.status());
            let expected = if protocol == H2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            assert_eq!(res.version(), expected, "{name}");
        }
        drop(child);
    }
}

#[tokio::test]
async fn pipe_server_streams_an_upload_into_a_download_over_tls() {
    let pki = self_signed();
    let Example { addr, child } =
        start_example_over_tls("pipe_server", &pki, &["--heartbeat-secs", "1"]).await;
    let host = format!("localhost:{}", addr.port());

    // The sender, over HTTP/1.1: `curl -T report.bin https://host/`.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let tls = connect(addr, &connector(&pki, &[HTTP_1_1])).await;
    let mut sender = Client::over(tls).await;
    let upload = Request::put(format!("https://{host}/report.bin"))
        .header(http::header::HOST, &host)
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let res = within("the sender's response head", sender.send(upload)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut sent = res.into_body();
    // Its first line is the download URL, over https.
    let mut text = Vec::new();
    while !text.contains(&b'\n') {
        text.extend_from_slice(&next_data(&mut sent).await.expect("no URL line"));
    }
    let text = String::from_utf8(text).unwrap();
    let url = text.lines().next().unwrap().trim().to_string();
    assert!(url.starts_with(&format!("https://{host}/")), "{url:?}");

    // The receiver, over HTTP/2.
    let tls = connect(addr, &connector(&pki, &[H2])).await;
    let mut receiver = Client::over(tls).await;
    let res = within("the download", receiver.send(request_to(&url))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), Version::HTTP_2);
    let body = within("the whole download", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "the download differs from the upload");

    // The sender's response ends with the completion line.
    let mut rest = text.into_bytes();
    while let Some(data) = next_data(&mut sent).await {
        rest.extend_from_slice(&data);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("done: 200000 bytes"), "{rest:?}");
    drop(child);
}

fn request_to(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

// Issue 13: the Piping mode over TLS, the receiver first (it waits with no
// head) over HTTP/2, then the sender over HTTP/1.1.
#[tokio::test]
async fn pipe_server_in_piping_mode_streams_over_tls_receiver_first() {
    let pki = self_signed();
    let Example { addr, child } =
        start_example_over_tls("pipe_server", &pki, &["--protocol", "piping"]).await;
    let host = format!("localhost:{}", addr.port());
    let url = format!("https://{host}/tls-piping-path");

    let tls = connect(addr, &connector(&pki, &[H2])).await;
    let mut receiver = Client::over(tls).await;
    let download = tokio::spawn(async move {
        let res = receiver.send(request_to(&url)).await;
        let version = res.version();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, version, body)
    });

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let tls = connect(addr, &connector(&pki, &[HTTP_1_1])).await;
    let mut sender = Client::over(tls).await;
    let upload = Request::put(format!("https://{host}/tls-piping-path"))
        .header(http::header::HOST, &host)
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let res = within("the sender's response head", sender.send(upload)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let lines = within("the sender's lines", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let lines = String::from_utf8_lossy(&lines);
    assert!(lines.contains("[INFO] Sent successfully!"), "{lines:?}");

    let (status, version, body) = within("the download", download).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version, Version::HTTP_2);
    assert!(body == payload, "the download differs from the upload");
    drop(child);
}
