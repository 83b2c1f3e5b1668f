//! The Piping mode: Piping Server's protocol on the pipe's core.
//!
//! `paths.rs` holds who waits on which path, `sender.rs` and `receiver.rs`
//! answer the two sides, `transfer.rs` moves the bytes (straight through
//! for one receiver, fanned out with bounded buffers for several), and
//! `answers.rs` has the fixed answers: refusals, CORS, `/help`, `/version`.

mod answers;
mod paths;
mod receiver;
mod sender;
mod transfer;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};

pub(crate) use paths::Paths;

use super::body::UploadBody;
use super::service::Inner;
use crate::body::Body;

/// The paths that are not pipes.
const RESERVED: [&str; 6] = [
    "/",
    "/noscript",
    "/version",
    "/help",
    "/favicon.ico",
    "/robots.txt",
];

/// The methods the Piping mode answers (the `Allow` of its `405`).
pub(super) const ALLOW: &str = "GET, HEAD, POST, PUT, OPTIONS";

/// What a waiting or sending sender's keep-alive lines report.
pub(crate) struct Progress {
    n: u32,
    connected: AtomicUsize,
    started: AtomicBool,
    bytes: AtomicU64,
}

impl Progress {
    fn new(n: u32) -> Arc<Self> {
        Arc::new(Progress {
            n,
            connected: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
        })
    }

    pub(crate) fn set_connected(&self, k: usize) {
        self.connected.store(k, Ordering::Relaxed);
    }

    fn start(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    fn add(&self, bytes: u64) -> u64 {
        self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The heartbeat of a sender: where it stands, as a line.
    fn line(&self) -> Bytes {
        let line = if self.started.load(Ordering::Relaxed) {
            format!("[INFO] Sending: {} bytes so far.\n", self.bytes())
        } else {
            let k = self.connected.load(Ordering::Relaxed);
            format!(
                "[INFO] Waiting for {} receiver(s)... {k} connected.\n",
                self.n
            )
        };
        Bytes::from(line)
    }
}

/// How many receivers the request says (`?n=`, default 1).
pub(super) fn receivers_wanted(parts: &Parts, max: u32) -> Result<u32, String> {
    let query = parts.uri.query().unwrap_or("");
    let Some(value) = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(name, _)| *name == "n")
        .map(|(_, v)| v)
    else {
        return Ok(1);
    };
    match value.parse::<i64>() {
        Err(_) => Err("[ERROR] Invalid \"n\" query parameter\n".to_owned()),
        Ok(n) if n <= 0 => Err(format!("[ERROR] n should > 0, but n = {n}.\n")),
        Ok(n) if n > i64::from(max) => {
            Err(format!("[ERROR] n should be at most {max}, but n = {n}.\n"))
        }
        Ok(n) => Ok(u32::try_from(n).unwrap_or(max)),
    }
}

impl Inner {
    /// Answers a request in the Piping mode.
    pub(super) async fn piping(self: Arc<Self>, parts: Parts, body: UploadBody) -> Response<Body> {
        let path = match parts.uri.path() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        let reserved = RESERVED.contains(&path.as_str());
        let method = &parts.method;
        if reserved && (method == Method::GET || method == Method::HEAD) {
            return answers::reserved(&self, &parts, &path);
        }
        if method == Method::POST || method == Method::PUT {
            if reserved {
                return answers::refuse(format!(
                    "[ERROR] Cannot send to the reserved path '{path}'. (e.g. '/mypath123')\n"
                ));
            }
            if parts.headers.contains_key(http::header::CONTENT_RANGE) {
                return answers::refuse(format!(
                    "[ERROR] Content-Range is not supported for now in {method}\n"
                ));
            }
            return self.piping_send(parts, body, path).await;
        }
        if method == Method::GET {
            return self.piping_receive(parts, path).await;
        }
        if method == Method::OPTIONS {
            return answers::preflight(&parts);
        }
        answers::method_not_allowed(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uri: &str) -> Result<u32, String> {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        receivers_wanted(&parts, 8)
    }

    #[test]
    fn n_defaults_to_one_and_refuses_bad_values() {
        assert_eq!(n("/p"), Ok(1));
        assert_eq!(n("/p?n=3"), Ok(3));
        assert_eq!(n("/p?x=1&n=2"), Ok(2));
        assert!(n("/p?n=hoge").unwrap_err().contains("Invalid"));
        assert!(n("/p?n=").unwrap_err().contains("Invalid"));
        assert!(n("/p?n=0").unwrap_err().contains("n = 0"));
        assert!(n("/p?n=-1").unwrap_err().contains("n = -1"));
        assert!(n("/p?n=9").unwrap_err().contains("at most 8"));
    }

    #[test]
    fn heartbeat_lines_say_where_the_sender_stands() {
        let p = Progress::new(2);
        p.set_connected(1);
        assert_eq!(
            &p.line()[..],
            b"[INFO] Waiting for 2 receiver(s)... 1 connected.\n"
        );
        p.start();
        p.add(10);
        assert_eq!(&p.line()[..], b"[INFO] Sending: 10 bytes so far.\n");
    }
}
