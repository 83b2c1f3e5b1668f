//! `pipe_routes` (any script against the pipe) and `pipe_multipart` (one
//! upload, then its download), with the same checks:
//!
//! - every status is one the pipe documents; `GET /` is the web page;
//! - every held response ends within the TTL plus two heartbeats, and the
//!   registry is empty afterwards (no id leaks);
//! - a raw download that completes carries exactly the upload; one whose
//!   upload was cut or over the limit ends abnormally, never cleanly;
//! - a strictly well-formed multipart upload (see [`multipart`]) downloads
//!   as exactly its first file part (or `502` when it has none);
//! - a sender whose response completes ends with a `done:`, `cut:` or
//!   `timeout:` line, and `done: N bytes` counts what the receiver got;
//! - `GET /reserve` answers the download URL, then the upload URL with its
//!   secret (`$ID` and `$UP` in the script); the download id alone opens
//!   nothing (`POST /reserve/$ID` is `404`);
//! - a `429` (the per-client caps, all requests being one client) carries
//!   `Retry-After`; once everything settled, the client gets its whole cap
//!   again (no permit leaks).

use std::collections::HashMap;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::Method;

use crate::driver::{self, End, Exchange, Sent, Tracked};
use crate::multipart;
use crate::script::{self, Step};
use crate::shim;

/// How long a request may take to show its first byte (virtual time).
const PATIENCE: Duration = Duration::from_secs(5);
/// The pipe's TTL in the targets (see `shim::pipe`).
const TTL: Duration = Duration::from_secs(30);
/// The TTL, two heartbeats and a margin.
const SETTLE: Duration = Duration::from_secs(60);
/// What the pipe may answer.
const STATUSES: &[u16] = &[200, 400, 403, 404, 405, 409, 413, 429, 502, 503];
/// The small per-client cap of settings bit 3.
const PER_CLIENT: usize = 2;

/// Any script against the pipe. The first byte picks the settings: bits
/// 0–1 the upload limit (none, 16 B, 1000 B, 1 MiB), bit 2 a required
/// `Referer` (`http://fuzz.test/page`), bit 3 per-client caps of 2
/// (uploads waiting, reservations) instead of the defaults.
pub fn pipe_routes(data: &[u8]) {
    let Some((&cfg, script)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        limit: [0, 16, 1000, 1 << 20][usize::from(cfg & 3)],
        referer: cfg & 4 != 0,
        per_client: (cfg & 8 != 0).then_some(PER_CLIENT),
    };
    run(script::parse(script), settings);
}

#[derive(Clone, Copy)]
struct Settings {
    limit: u64,
    referer: bool,
    per_client: Option<usize>,
}

/// One upload (the first request of the script: its headers and body; the
/// request line is ignored, it is always `POST /`), then `GET /$ID`.
pub fn pipe_multipart(data: &[u8]) {
    let Some(mut upload) = script::parse(data).into_iter().next() else {
        return;
    };
    upload.method = b"POST".to_vec();
    upload.target = b"/".to_vec();
    let download = Step {
        method: b"GET".to_vec(),
        target: b"/$ID".to_vec(),
        chunks: 1,
        ..Step::default()
    };
    let settings = Settings {
        limit: 1 << 20,
        referer: false,
        per_client: None,
    };
    run(vec![upload, download], settings);
}

struct Upload {
    sent: Sent,
    content_type: Option<Vec<u8>>,
    /// Index of the sender's exchange.
    sender: usize,
}

fn run(steps: Vec<Step>, settings: Settings) {
    let limit = settings.limit;
    driver::runtime().block_on(async move {
        let pipe = shim::pipe(limit, settings.referer, settings.per_client);
        let mut id = String::new();
        // The upload path of the last reservation (`/reserve/{id}/{secret}`).
        let mut up = String::new();
        let mut uploads: HashMap<String, Upload> = HashMap::new();
        let mut tracked: Vec<Tracked> = Vec::new();
        // For each exchange: the id a GET asked for.
        let mut taps: Vec<Option<String>> = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let vars = [("ID", id.clone()), ("UP", up.clone())];
            let Some((req, sent)) = driver::request(&step, &vars) else {
                continue;
            };
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let content_type = req
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| v.as_bytes().to_vec());
            let is_upload = method == Method::POST || method == Method::PUT;
            let mut t = driver::send(&pipe, req, leave);
            t.started(PATIENCE).await;
            let ex = t.snapshot();
            if let Some(status) = ex.status {
                assert!(
                    STATUSES.contains(&status.as_u16()),
                    "unexpected {status} for {method} {path}"
                );
                if status == 429 {
                    assert!(
                        ex.headers.contains_key(RETRY_AFTER),
                        "a 429 without Retry-After for {method} {path}"
                    );
                }
            }
            if (method == Method::GET || method == Method::HEAD)
                && path.trim_matches('/').is_empty()
            {
                // The web page, whatever the query or headers.
                assert_eq!(ex.status.map(|s| s.as_u16()), Some(200), "GET /: {ex:?}");
                let ct = ex.headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
                assert!(
                    ct.is_some_and(|ct| ct.starts_with(b"text/html")),
                    "GET / is not the page: {ct:?}"
                );
            }
            let line = first_line(&ex.body);
            if ex.status.is_some_and(|s| s == 200) {
                if is_upload {
                    if let Some(new_id) = line
                        .strip_prefix("http://")
                        .and_then(|l| l.rsplit('/').next())
                    {
                        id = new_id.to_string();
                        uploads.insert(
                            id.clone(),
                            Upload {
                                sent,
                                content_type,
                                sender: tracked.len(),
                            },
                        );
                    }
                } else if path.trim_matches('/') == "reserve" && ex.end == End::Complete {
                    let (new_id, upload) = reservation(&ex);
                    id = new_id;
                    up = upload;
                }
            }
            let tap = (method == Method::GET).then(|| {
                path.trim_start_matches('/')
                    .trim_end_matches('/')
                    .to_string()
            });
            taps.push(tap);
            tracked.push(t);
        }
        let done = driver::settle(&mut tracked, SETTLE).await;
        let exchanges: Vec<Exchange> = tracked.iter().map(Tracked::snapshot).collect();
        assert!(done, "a pipe response outlived its TTL: {exchanges:#?}");
        // Reservations nobody opened expire on their own timer.
        tokio::time::sleep(TTL + Duration::from_secs(1)).await;
        assert_eq!(shim::pipe_waiting(&pipe), 0, "the registry kept an id");
        if let Some(cap) = settings.per_client {
            check_caps_released(&pipe, cap, settings.referer).await;
        }
        for (i, ex) in exchanges.iter().enumerate() {
            driver::trace(&format!("pipe #{i}"), ex);
        }
        for (ex, tap) in exchanges.iter().zip(&taps) {
            let Some(upload) = tap.as_ref().and_then(|id| uploads.get(id)) else {
                continue;
            };
            check_download(ex, upload, &exchanges[upload.sender], limit);
        }
        for upload in uploads.values() {
            check_sender(&exchanges[upload.sender]);
        }
    });
}

/// `(download id, upload path)` of a `GET /reserve` answer (text: two
/// URL lines; JSON with `Accept: application/json`). The upload path must
/// be `/reserve/{id}/{secret}` with the download's id.
fn reservation(ex: &Exchange) -> (String, String) {
    let (download, upload) = if ex
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        let v: serde_json::Value =
            serde_json::from_slice(&ex.body).expect("a JSON reservation is JSON");
        let field = |k: &str| v[k].as_str().expect("a reservation field").to_string();
        assert_eq!(
            field("download").rsplit('/').next(),
            Some(field("id").as_str())
        );
        (field("download"), field("upload"))
    } else {
        let text = String::from_utf8_lossy(&ex.body);
        let mut lines = text.lines();
        let download = lines.next().expect("the download URL").to_string();
        let upload = lines.next().expect("the upload URL").to_string();
        (download, upload)
    };
    let id = download.rsplit('/').next().unwrap_or("").to_string();
    let at = upload
        .find("/reserve/")
        .expect("an upload URL under /reserve/");
    let path = upload[at..].to_string();
    let mut segments = path.trim_start_matches('/').split('/');
    assert_eq!(segments.next(), Some("reserve"));
    assert_eq!(segments.next(), Some(id.as_str()), "{download} / {upload}");
    let secret = segments.next().unwrap_or("");
    assert!(
        secret.len() >= 16 && segments.next().is_none(),
        "no secret in the upload URL {upload}"
    );
    (id, path)
}

/// Once every socket is gone, the one client of the script may hold its
/// whole per-client cap again: `cap` reservations, and `cap` waiting
/// uploads, all answered `200`.
async fn check_caps_released(pipe: &shim::Pipe, cap: usize, referer: bool) {
    let mut held = Vec::new();
    for (what, target) in [("GET", "/reserve"), ("POST", "/")] {
        for _ in 0..cap {
            let mut step = Step {
                method: what.as_bytes().to_vec(),
                target: target.as_bytes().to_vec(),
                body: b"x".to_vec(),
                chunks: 1,
                ..Step::default()
            };
            if referer {
                step.headers
                    .push((b"referer".to_vec(), b"http://fuzz.test/page".to_vec()));
            }
            let (req, _) = driver::request(&step, &[]).expect("a request");
            let mut t = driver::send(pipe, req, None);
            t.started(PATIENCE).await;
            let ex = t.snapshot();
            assert_eq!(
                ex.status.map(|s| s.as_u16()),
                Some(200),
                "{what} {target} after the script: a per-client permit leaked: {ex:?}"
            );
            held.push(t);
        }
    }
}

fn check_download(ex: &Exchange, upload: &Upload, sender: &Exchange, limit: u64) {
    let over = limit > 0 && upload.sent.body.len() as u64 > limit;
    let boundary = upload
        .content_type
        .as_deref()
        .and_then(multipart::boundary_of);
    let is_multipart = upload.content_type.as_deref().is_some_and(|ct| {
        String::from_utf8_lossy(ct)
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
    });
    let status = ex.status.map(|s| s.as_u16());
    if !is_multipart {
        if status != Some(200) {
            return;
        }
        match ex.end {
            End::Complete => {
                assert!(!upload.sent.cut && !over, "a cut upload downloaded cleanly");
                assert_eq!(ex.body, upload.sent.body, "the download is not the upload");
                let last = last_line(&sender.body);
                if sender.end == End::Complete {
                    assert_eq!(
                        last.split(" bytes").next(),
                        Some(format!("done: {}", ex.body.len()).as_str()),
                        "the sender was told a different count"
                    );
                }
            }
            End::Error => assert!(
                upload.sent.cut || over,
                "a whole upload ended abnormally: {ex:?}"
            ),
            End::Pending | End::Left => {}
        }
        return;
    }
    let Some(boundary) = boundary else { return };
    if upload.sent.cut || over {
        return;
    }
    let Some(expected) = multipart::first_file(&upload.sent.body, boundary) else {
        return;
    };
    match expected {
        Some(part) => {
            assert_eq!(
                status,
                Some(200),
                "a well-formed multipart upload was refused: {ex:?}"
            );
            assert_eq!(ex.end, End::Complete, "the file part was cut: {ex:?}");
            assert_eq!(ex.body, part.data, "the download is not the file part");
            let disposition = ex
                .headers
                .get(http::header::CONTENT_DISPOSITION)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            let wanted = format!("attachment; filename=\"{}\"", part.filename);
            assert_eq!(String::from_utf8_lossy(&disposition), wanted);
            if let Some(ct) = part.content_type {
                assert_eq!(
                    ex.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
                    Some(ct.as_bytes())
                );
            }
        }
        None => assert_eq!(
            status,
            Some(502),
            "a multipart upload without a file: {ex:?}"
        ),
    }
}

fn check_sender(ex: &Exchange) {
    if ex.end != End::Complete {
        return;
    }
    let last = last_line(&ex.body);
    assert!(
        ["done: ", "cut: ", "timeout: "]
            .iter()
            .any(|p| last.starts_with(p)),
        "a sender's response ended without saying how: {:?}",
        String::from_utf8_lossy(&ex.body)
    );
}

fn first_line(body: &[u8]) -> &str {
    let line = body.split(|&b| b == b'\n').next().unwrap_or(b"");
    std::str::from_utf8(line).unwrap_or("")
}

fn last_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .trim_start_matches(' ')
        .to_string()
}
