//! `pipe_routes` (any script against the pipe) and `pipe_multipart` (one
//! upload, then its download), with the same checks:
//!
//! - every status is one the pipe documents;
//! - every held response ends within the TTL plus two heartbeats, and the
//!   registry is empty afterwards (no id leaks);
//! - a raw download that completes carries exactly the upload; one whose
//!   upload was cut or over the limit ends abnormally, never cleanly;
//! - a strictly well-formed multipart upload (see [`multipart`]) downloads
//!   as exactly its first file part (or `502` when it has none);
//! - a sender whose response completes ends with a `done:`, `cut:` or
//!   `timeout:` line, and `done: N bytes` counts what the receiver got.

use std::collections::HashMap;
use std::time::Duration;

use http::header::CONTENT_TYPE;
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
const STATUSES: &[u16] = &[200, 400, 403, 404, 405, 409, 413, 502, 503];

/// Any script against the pipe. The first byte picks the settings: bits
/// 0–1 the upload limit (none, 16 B, 1000 B, 1 MiB), bit 2 a required
/// `Referer` (`http://fuzz.test/page`).
pub fn pipe_routes(data: &[u8]) {
    let Some((&cfg, script)) = data.split_first() else {
        return;
    };
    let limit = [0, 16, 1000, 1 << 20][usize::from(cfg & 3)];
    run(script::parse(script), limit, cfg & 4 != 0);
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
    run(vec![upload, download], 1 << 20, false);
}

struct Upload {
    sent: Sent,
    content_type: Option<Vec<u8>>,
    /// Index of the sender's exchange.
    sender: usize,
}

fn run(steps: Vec<Step>, limit: u64, referer: bool) {
    driver::runtime().block_on(async move {
        let pipe = shim::pipe(limit, referer);
        let mut id = String::new();
        let mut uploads: HashMap<String, Upload> = HashMap::new();
        let mut tracked: Vec<Tracked> = Vec::new();
        // For each exchange: the id a GET asked for.
        let mut taps: Vec<Option<String>> = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let vars = [("ID", id.clone())];
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
                } else if path.trim_end_matches('/').ends_with("/reserve") && !line.is_empty() {
                    id = line.to_string();
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
