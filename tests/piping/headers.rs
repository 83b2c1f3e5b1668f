//! What receivers are told: the sender's Content-Type (never `text/html`),
//! Content-Length, Content-Disposition and X-Piping; a multipart upload's
//! first part; and `Access-Control-Allow-Origin` everywhere.

use super::*;

/// Sends `body` with `headers` to a fresh path, receives it, and returns
/// the receiver's response (and checks the sender's).
async fn through(headers: &str, body: &[u8]) -> RawResponse {
    let (pipe, server) = start(piping()).await;
    let mut r = receiver(server.addr, "/h").await;
    eventually("the receiver to wait", || pipe.waiting() == 1).await;
    let mut s = sender(server.addr, "/h", body, headers).await;
    let got = read_response(&mut r).await;
    let sent = read_response(&mut s).await;
    assert_eq!(sent.status, 200);
    assert_eq!(sent.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        sent.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    server.stop().await;
    got
}

#[tokio::test]
async fn content_type_is_forwarded() {
    let got = through("Content-Type: image/png\r\n", b"png").await;
    assert_eq!(got.header("content-type"), Some("image/png"));
}

#[tokio::test]
async fn text_html_becomes_text_plain() {
    let got = through("Content-Type: text/html\r\n", b"<h1>hi</h1>").await;
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn text_html_with_parameters_becomes_text_plain_with_them() {
    let got = through("Content-Type: Text/HTML; charset=utf-8\r\n", b"<b>").await;
    assert_eq!(
        got.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

/// Regression (found by the `piping_routes` fuzz target): a type with a
/// byte beyond ASCII in its parameters could not be read as text, and was
/// forwarded untouched, `text/html` and all.
#[tokio::test]
async fn text_html_with_bytes_beyond_ascii_still_becomes_text_plain() {
    let got = through("Content-Type: text/html; charset=\u{e9}\r\n", b"<b>").await;
    let ct = got.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain;"), "Content-Type {ct:?}");
}

/// A browser takes the last type of a list: `text/plain, text/html` would
/// be HTML to it.
#[tokio::test]
async fn a_type_list_naming_text_html_becomes_text_plain() {
    let got = through("Content-Type: text/plain, TEXT/HTML\r\n", b"<b>").await;
    assert_eq!(got.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn no_content_type_is_forwarded_as_none() {
    let got = through("", b"raw").await;
    assert_eq!(got.header("content-type"), None);
    assert_eq!(got.header("x-robots-tag"), Some("none"));
}

#[tokio::test]
async fn content_length_and_disposition_are_forwarded() {
    let got = through(
        "Content-Disposition: attachment; filename=\"myfile.txt\"\r\n",
        b"this is a content",
    )
    .await;
    assert_eq!(got.header("content-length"), Some("17"));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"myfile.txt\"")
    );
    assert_eq!(got.text(), "this is a content");
}

#[tokio::test]
async fn x_piping_headers_are_forwarded_in_order_and_exposed() {
    let got = through(
        "X-Piping: one\r\nX-Piping: two\r\nx-piping: three\r\n",
        b"x",
    )
    .await;
    let values: Vec<&str> = got
        .headers
        .iter()
        .filter(|(n, _)| n == "x-piping")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values, ["one", "two", "three"]);
    assert_eq!(
        got.header("access-control-expose-headers"),
        Some("X-Piping")
    );
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn without_x_piping_nothing_is_exposed() {
    let got = through("", b"x").await;
    assert_eq!(got.header("access-control-expose-headers"), None);
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
}

fn multipart(first: &str, rest: &str) -> String {
    format!("--XyZ\r\n{first}\r\n--XyZ\r\n{rest}\r\n--XyZ--\r\n")
}

#[tokio::test]
async fn a_multipart_upload_forwards_its_first_parts_type_and_filename() {
    let body = multipart(
        "Content-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA",
        "Content-Disposition: form-data; name=\"g\"\r\n\r\nsecond",
    );
    let got = through(
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body.as_bytes(),
    )
    .await;
    assert!(got.complete);
    assert_eq!(got.text(), "PNGDATA");
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(
        got.header("content-disposition"),
        Some("form-data; name=\"f\"; filename=\"a.png\"")
    );
    assert_eq!(got.header("content-length"), None);
}

#[tokio::test]
async fn a_multipart_text_field_is_sent_as_it_is() {
    let body = multipart(
        "Content-Disposition: form-data; name=\"input_text\"\r\n\r\nsome text",
        "Content-Disposition: form-data; name=\"other\"\r\n\r\nno",
    );
    let got = through(
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body.as_bytes(),
    )
    .await;
    assert_eq!(got.text(), "some text");
    assert_eq!(got.header("content-type"), None);
}

#[tokio::test]
async fn a_multipart_html_part_becomes_text_plain() {
    let body = multipart(
        "Content-Disposition: form-data; name=\"f\"; filename=\"x.html\"\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<script>",
        "Content-Disposition: form-data; name=\"g\"\r\n\r\n2",
    );
    let got = through(
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        got.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}
