//! `signal_bodies`: a swarm (an initiator and a joiner) is set up first,
//! then the script runs with `$ID`, `$TOKEN`/`$CID` (the initiator's) and
//! `$TOKEN2`/`$CID2` (the joiner's). Checks:
//!
//! - every status is one the signal service documents;
//! - both peers' streams always parse as SSE, and every `signal` event's
//!   data is a JSON envelope `{"from", "data"}`;
//! - a POST that is not `200` delivers nothing; a `200` delivers one event
//!   to each peer it targets (everyone, or `cid`);
//! - for a JSON body, the delivered `data` is the body's `data` as it was
//!   sent, token for token (numbers byte for byte), and `from` is the cid
//!   of the token's owner.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::Method;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::driver::{self, Tracked};
use crate::script::{self, Step};
use crate::shim;
use crate::sse;

const PATIENCE: Duration = Duration::from_secs(5);
const STATUSES: &[u16] = &[200, 201, 204, 400, 401, 404, 405, 406, 413, 415, 503];

struct Peer {
    cid: String,
    token: String,
    stream: Tracked,
    /// Signal events expected so far (their exact data text); `None` where
    /// only the shape is known.
    expected: Vec<Option<String>>,
}

/// See the module docs.
pub fn signal_bodies(data: &[u8]) {
    let steps = script::parse(data);
    driver::runtime().block_on(async move {
        let service = shim::signal();
        let Some((id, initiator)) = open(&service, "/").await else {
            panic!("the swarm could not be created");
        };
        let Some((_, joiner)) = open(&service, &format!("/{id}")).await else {
            panic!("the joiner could not join");
        };
        let mut peers = [initiator, joiner];
        let mut others = Vec::new();
        for mut step in steps {
            if step.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
            }
            let leave = driver::take_leave(&mut step);
            let vars = [
                ("ID", id.clone()),
                ("CID", peers[0].cid.clone()),
                ("TOKEN", peers[0].token.clone()),
                ("CID2", peers[1].cid.clone()),
                ("TOKEN2", peers[1].token.clone()),
            ];
            let Some((req, sent)) = driver::request(&step, &vars) else {
                continue;
            };
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let json = req
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"));
            let mut t = driver::send(&service, req, leave);
            t.started(PATIENCE).await;
            // Let the peers' readers take what was written.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let ex = t.snapshot();
            driver::trace(&format!("signal {method} {path}"), &ex);
            let status = ex.status.map(|s| s.as_u16());
            if let Some(status) = status {
                assert!(
                    STATUSES.contains(&status),
                    "unexpected {status} for {method} {path}"
                );
            }
            if method == Method::POST && status == Some(200) {
                let expected = if json && !sent.cut {
                    expectation(&sent.body, &peers)
                } else {
                    None
                };
                match expected {
                    Some((targets, envelope)) => {
                        for (peer, targeted) in peers.iter_mut().zip(targets) {
                            if targeted {
                                peer.expected.push(Some(envelope.clone()));
                            }
                        }
                    }
                    None => {
                        // Shape only: whoever got a new event got one.
                        for peer in &mut peers {
                            let got = signals(&peer.stream).len();
                            if got > peer.expected.len() {
                                peer.expected.push(None);
                            }
                        }
                    }
                }
            }
            for peer in &peers {
                check(peer);
            }
            others.push(t);
        }
        for peer in &peers {
            driver::trace(&format!("peer {}", peer.cid), &peer.stream.snapshot());
        }
        drop(others);
    });
}

/// Opens a stream at `path`; `(swarm id, peer)` from its `connect` event.
async fn open<S>(service: &S, path: &str) -> Option<(String, Peer)>
where
    S: hyper::service::Service<
        http::Request<driver::ReqBody>,
        Response = http::Response<delayed_response::Body>,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    let step = Step {
        method: b"GET".to_vec(),
        target: path.as_bytes().to_vec(),
        chunks: 1,
        ..Step::default()
    };
    let (req, _) = driver::request(&step, &[])?;
    let mut stream = driver::send(service, req, None);
    stream.started(PATIENCE).await;
    let parsed = sse::parse(&stream.snapshot().body);
    let connect = parsed.events.first()?;
    assert_eq!(connect.event_type, "connect");
    let v: Value = serde_json::from_str(&connect.data).ok()?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some((
        field("id")?,
        Peer {
            cid: field("cid")?,
            token: field("token")?,
            stream,
            expected: Vec::new(),
        },
    ))
}

/// For a JSON body whose sender and targets are known: which of the two
/// peers get the signal, and the envelope they get.
fn expectation(body: &[u8], peers: &[Peer; 2]) -> Option<([bool; 2], String)> {
    let trimmed = body.trim_ascii();
    let value: Value = if trimmed.is_empty() {
        return None;
    } else {
        serde_json::from_slice(trimmed).ok()?
    };
    let token = value.get("token")?.as_str()?;
    let from = peers.iter().find(|p| p.token == token)?.cid.clone();
    value.get("data").filter(|d| !d.is_null())?;
    let targets = match value.get("cid") {
        None | Some(Value::Null) => [true, true],
        Some(Value::String(s)) if s.is_empty() => [true, true],
        Some(Value::String(s)) if *s == peers[0].cid => [true, false],
        Some(Value::String(s)) if *s == peers[1].cid => [false, true],
        // Another peer of the script's.
        Some(_) => [false, false],
    };
    // The envelope's exact text: `data` as it was sent, token for token,
    // without the whitespace between tokens (the last `data` member, as a
    // map of the object keeps it).
    let members: HashMap<String, &RawValue> = serde_json::from_slice(trimmed).ok()?;
    let data = without_whitespace(members.get("data")?.get());
    let text = format!(r#"{{"from":"{from}","data":{data}}}"#);
    Some((targets, text))
}

/// JSON text with the whitespace outside its strings removed.
fn without_whitespace(json: &str) -> String {
    let mut out = String::new();
    let mut chars = json.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The `signal` events of a peer's stream so far: their data as JSON, and
/// as text.
fn signals(stream: &Tracked) -> Vec<(Value, String)> {
    let body = stream.snapshot().body;
    sse::parse(&body)
        .events
        .into_iter()
        .filter(|e| e.event_type == "signal")
        .map(|e| {
            let v = serde_json::from_str(&e.data)
                .unwrap_or_else(|err| panic!("signal data is not JSON ({err}): {:?}", e.data));
            (v, e.data)
        })
        .collect()
}

fn check(peer: &Peer) {
    let got = signals(&peer.stream);
    assert_eq!(
        got.len(),
        peer.expected.len(),
        "peer {} got {got:?}, expected {:?}",
        peer.cid,
        peer.expected
    );
    for ((got, text), expected) in got.iter().zip(&peer.expected) {
        assert!(
            got.get("from").is_some_and(Value::is_string) && got.get("data").is_some(),
            "not an envelope: {got}"
        );
        if let Some(expected) = expected {
            assert_eq!(text, expected);
        }
    }
}
