//! `query`: the whole input is a query string, appended to a fixed set of
//! requests of every service. No service reads a query today beyond
//! passing it to the pipe's hooks, so the checks are that a query never
//! changes an answer, and that it reaches the pipe's hooks unchanged and
//! stays out of the download's file name.

use std::time::Duration;

use delayed_response::park::Store;
use http::header::CONTENT_DISPOSITION;
use http::{Method, Request, StatusCode, Uri};

use crate::driver::{self, End, Exchange, ReqBody};
use crate::shim;

const PATIENCE: Duration = Duration::from_secs(5);
const SWARM: &str = "/0123456789abcdef0123456789abcdef";
const JOB: &str = "/jobs/AAAAAAAAAAAAAAAAAAAAAA";

#[derive(Clone, Copy)]
enum Svc {
    Pipe,
    Signal,
    Park,
}

/// Requests whose answer does not depend on earlier ones.
const PROBES: &[(Svc, &str, &str)] = &[
    (Svc::Signal, "GET", "/"),
    (Svc::Signal, "GET", SWARM),
    (Svc::Signal, "POST", SWARM),
    (Svc::Signal, "GET", "/Stray"),
    (Svc::Signal, "DELETE", "/"),
    (Svc::Park, "GET", JOB),
    (Svc::Park, "GET", "/jobs/short"),
    (Svc::Park, "DELETE", JOB),
    (Svc::Park, "PUT", JOB),
    (Svc::Pipe, "GET", "/AAAAAAAAAAAA"),
    (Svc::Pipe, "GET", "/reserve"),
    (Svc::Pipe, "DELETE", "/"),
    (Svc::Pipe, "GET", "/a/b"),
];

/// See the module docs.
pub fn query(data: &[u8]) {
    let Some(query) = query_of(data) else {
        return;
    };
    driver::runtime().block_on(async move {
        let pipe = shim::pipe(0, false, None);
        let signal = shim::signal();
        let park = shim::park_status(Store::new());
        for &(svc, method, path) in PROBES {
            let mut statuses = Vec::new();
            for target in [path.to_string(), format!("{path}?{query}")] {
                let req = request(method, &target, b"");
                let mut t = match svc {
                    Svc::Pipe => driver::send(&pipe, req, Some(0)),
                    Svc::Signal => driver::send(&signal, req, Some(0)),
                    Svc::Park => driver::send(&park, req, Some(0)),
                };
                t.started(PATIENCE).await;
                statuses.push(t.snapshot().status);
            }
            assert_eq!(
                statuses[0], statuses[1],
                "?{query} changed the answer to {method} {path}"
            );
        }

        // The query reaches the pipe's hooks as it was sent.
        let echo = shim::pipe_echoing_query();
        let mut sender = driver::send(
            &echo,
            request("PUT", &format!("/name.txt?{query}"), b"x"),
            None,
        );
        sender.started(PATIENCE).await;
        let opened = sender.snapshot();
        assert_eq!(opened.status, Some(StatusCode::OK));
        let text = String::from_utf8_lossy(&opened.body).into_owned();
        let line = text.lines().next().unwrap_or("");
        let (url, seen) = line.split_once('\t').expect("url, tab, query");
        let sent = Uri::try_from(format!("/?{query}")).ok();
        let sent = sent.as_ref().and_then(Uri::query).unwrap_or("-");
        assert_eq!(seen, sent, "the hooks saw another query");
        assert!(!url.contains('?'), "the download URL kept the query: {url}");
        let id = url.rsplit('/').next().unwrap_or("");
        let mut receiver =
            driver::send(&echo, request("GET", &format!("/{id}?{query}"), b""), None);
        assert!(driver::settle(std::slice::from_mut(&mut receiver), PATIENCE).await);
        let got: Exchange = receiver.snapshot();
        assert_eq!(
            got.status,
            Some(StatusCode::OK),
            "a query kept the receiver out"
        );
        assert_eq!(got.end, End::Complete);
        assert_eq!(got.body, b"x");
        assert_eq!(
            got.headers.get(CONTENT_DISPOSITION).map(|v| v.as_bytes()),
            Some(&b"attachment; filename=\"name.txt\""[..])
        );
    });
}

/// The input as a query string: as it is when `http` accepts it, else
/// percent-encoded where it must be.
fn query_of(data: &[u8]) -> Option<String> {
    if data.len() > 4096 {
        return None;
    }
    if let Ok(raw) = std::str::from_utf8(data) {
        if Uri::try_from(format!("/?{raw}")).is_ok() && !raw.contains('#') {
            return Some(raw.to_string());
        }
    }
    let mut out = String::new();
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::try_from(format!("/?{out}")).is_ok().then_some(out)
}

fn request(method: &str, target: &str, body: &[u8]) -> Request<ReqBody> {
    let mut req = Request::new(driver::body_of(body.to_vec(), 1, false));
    *req.method_mut() = Method::from_bytes(method.as_bytes()).expect("a method");
    *req.uri_mut() = Uri::try_from(target).expect("a target that parsed once already");
    req
}
