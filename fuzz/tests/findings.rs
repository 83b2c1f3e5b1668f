//! Bugs the fuzz targets found in code outside `fuzz/`, as tests that say
//! what should happen. A new one is `#[ignore]`d until the fix lands (then
//! drop the `#[ignore]`, and the guard in the target that skips the case):
//! `cargo test --test findings -- --ignored` shows it failing. The three
//! below are fixed (regression tests in the crate: `src/http.rs`,
//! `tests/signal.rs`).

use std::time::Duration;

use delayed_response::park::Prefer;
use http::HeaderMap;

fn prefer(value: &str) -> Prefer {
    let mut headers = HeaderMap::new();
    headers.insert("prefer", value.parse().expect("a header value"));
    Prefer::from_headers(&headers)
}

/// RFC 7240 §2: a preference's value may be a quoted-string, and a comma
/// inside one does not end the preference. `Prefer::from_headers` splits
/// on every comma, so a `wait=` inside another preference's quoted value
/// is read as the client's `wait`, and the real one after it is ignored
/// (first wins). Found by `prefer`.
#[test]
fn a_comma_inside_a_quoted_value_does_not_start_a_preference() {
    let p = prefer(r#"foo="a, wait=9", wait=1"#);
    assert_eq!(p.wait, Some(Duration::from_secs(1)));
    let p = prefer(r#"foo="x, respond-async""#);
    assert!(!p.respond_async);
}

/// `wait="7"` is the RFC's quoted form of 7 and is read as 7; but the
/// quotes are trimmed with `trim_matches('"')`, so unbalanced or doubled
/// quotes (`wait="7`, `wait=""7""`) are read as 7 too, where RFC 7240 asks
/// to ignore a malformed preference.
#[test]
fn unbalanced_quotes_make_a_malformed_wait() {
    assert_eq!(prefer(r#"wait="7"#).wait, None);
    assert_eq!(prefer(r#"wait=""7"""#).wait, None);
    assert_eq!(prefer(r#"wait="7""#).wait, Some(Duration::from_secs(7)));
}

/// A number a peer signals can reach the others changed: the service parses
/// the body with serde_json (whose default float parsing is fast but not
/// correctly rounded) and forwards `data` re-serialized. `1.0000000000000005e20`
/// is read as the f64 next to the right one and forwarded as
/// `1.0000000000000003e+20`. Fix: serde_json's `float_roundtrip` feature
/// (exact parsing), or forward `data` as its raw text (`RawValue`). Found by
/// `sse_roundtrip` (`corpus/sse_roundtrip/serde_float_drift`: an 88-digit
/// integer), whose check now compares text.
#[test]
fn a_signalled_number_arrives_unchanged() {
    use delayed_response_fuzz::{driver, script::Step, shim, sse};
    use http::{Request, StatusCode};

    const SENT: &str = "1.0000000000000005e20";
    driver::runtime().block_on(async {
        let service = shim::signal();
        let get = Step {
            method: b"GET".to_vec(),
            target: b"/".to_vec(),
            chunks: 1,
            ..Step::default()
        };
        let (req, _) = driver::request(&get, &[]).expect("GET /");
        let mut stream = driver::send(&service, req, None);
        stream.started(Duration::from_secs(1)).await;
        let connect = sse::parse(&stream.snapshot().body).events[0].data.clone();
        let v: serde_json::Value = serde_json::from_str(&connect).expect("connect data");
        let (id, token) = (v["id"].as_str().unwrap(), v["token"].as_str().unwrap());
        let body = format!(r#"{{"token":"{token}","data":{SENT}}}"#);
        let req = Request::post(format!("/{id}"))
            .header("content-type", "application/json")
            .body(driver::body_of(body.into_bytes(), 1, false))
            .expect("a POST");
        let mut post = driver::send(&service, req, None);
        post.started(Duration::from_secs(1)).await;
        assert_eq!(post.snapshot().status, Some(StatusCode::OK));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let events = sse::parse(&stream.snapshot().body).events;
        let signal = events
            .iter()
            .find(|e| e.event_type == "signal")
            .expect("the signal");
        let got = signal
            .data
            .split(r#""data":"#)
            .nth(1)
            .expect("data")
            .trim_end_matches('}');
        assert_eq!(got, SENT, "the number changed in transit");
    });
}
