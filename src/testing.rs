//! Test helpers (feature `testing`): a simulator of the proxies in
//! [`proxy`](crate::proxy) that sits between a test and a response and fails
//! it the way the proxy would.
//!
//! It drives the response in-process, so it runs under tokio's paused clock:
//! a ten-minute job is checked in microseconds, with exact timings.
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::proxy::Profile;
//! use delayed_response::testing::{RouterSim, Verdict};
//! use delayed_response::DelayedResponse;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let job = async {
//!     tokio::time::sleep(Duration::from_secs(600)).await;
//!     "done"
//! };
//! let response = Profile::HEROKU.apply(DelayedResponse::new()).start(job);
//! let verdict = RouterSim::new(Profile::HEROKU).run(response).await;
//! assert!(matches!(verdict, Verdict::Delivered { .. }));
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::{timeout_at, Instant};

use crate::body::Body;
use crate::delayed::instant_after;
use crate::proxy::Profile;

/// What the client behind the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The whole response got through.
    Delivered {
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: HeaderMap,
        /// Its body.
        body: Bytes,
        /// The longest silence between two bytes (the head counts as one).
        max_gap: Duration,
        /// From the request to the end of the body.
        elapsed: Duration,
    },
    /// The proxy gave up.
    Failed {
        /// The proxy's own error (e.g. `H12 request timeout`; see
        /// [`RouterSim`] for each preset's).
        error: &'static str,
        /// When, from the request.
        after: Duration,
        /// Whether the head had gone out before.
        head_sent: bool,
    },
    /// The server ended the body abnormally.
    Cut {
        /// When, from the request.
        after: Duration,
    },
}

/// A proxy between a test and a response; see the [module docs](self).
///
/// When the proxy gives up, [`Verdict::Failed`] carries the error it reports:
///
/// | preset | first byte too late | silence too long | whole response too long |
/// |---|---|---|---|
/// | [`HEROKU`](Profile::HEROKU) | `H12 request timeout` | `H15 idle connection` | — |
/// | [`AWS_ALB`](Profile::AWS_ALB) | `504 gateway timeout` | `connection closed (idle timeout)` | — |
/// | [`NGINX`](Profile::NGINX) | `504 gateway time-out` | `upstream timed out (truncated response)` | — |
/// | [`CLOUDFLARE`](Profile::CLOUDFLARE) | `524 a timeout occurred` | `524 a timeout occurred` | — |
/// | [`GCP_LB`](Profile::GCP_LB) | — | — | `504 backend timeout` |
/// | another | `first byte timeout` | `idle timeout` | `response timeout` |
#[derive(Debug, Clone)]
pub struct RouterSim {
    profile: Profile,
}

/// How a proxy reports each of its limits.
struct Errors {
    first_byte: &'static str,
    idle: &'static str,
    total: &'static str,
}

impl Errors {
    /// The errors of the preset named `name` (see [`RouterSim`]).
    fn of(name: &str) -> Errors {
        let (first_byte, idle, total) = match name {
            "heroku" => ("H12 request timeout", "H15 idle connection", ""),
            "aws-alb" => (
                "504 gateway timeout",
                "connection closed (idle timeout)",
                "",
            ),
            "nginx" => (
                "504 gateway time-out",
                "upstream timed out (truncated response)",
                "",
            ),
            "cloudflare" => ("524 a timeout occurred", "524 a timeout occurred", ""),
            "gcp-lb" => ("", "", "504 backend timeout"),
            _ => ("first byte timeout", "idle timeout", "response timeout"),
        };
        Errors {
            first_byte,
            idle,
            total,
        }
    }
}

impl RouterSim {
    /// A simulator of `profile`.
    pub fn new(profile: Profile) -> Self {
        RouterSim { profile }
    }

    /// Awaits `response` and its body, enforcing the profile's first-byte,
    /// idle and total limits.
    pub async fn run<F>(&self, response: F) -> Verdict
    where
        F: Future<Output = Response<Body>>,
    {
        let p = &self.profile;
        let errors = Errors::of(p.name);
        let t0 = Instant::now();
        // Limits too long to count (`Duration::MAX`) saturate: never.
        let total_at = p.total.map(|t| instant_after(t0, t));
        let fail = |error, head_sent| Verdict::Failed {
            error,
            after: t0.elapsed(),
            head_sent,
        };
        // The head.
        let (head_at, head_error) = earliest(
            p.first_byte
                .map(|d| (instant_after(t0, d), errors.first_byte)),
            total_at.map(|t| (t, errors.total)),
        );
        let res = match head_at {
            Some(at) => match timeout_at(at, response).await {
                Ok(res) => res,
                Err(_) => return fail(head_error, false),
            },
            None => response.await,
        };
        let (parts, mut body) = res.into_parts();
        let mut last = Instant::now();
        let mut max_gap = last - t0;
        let mut data = BytesMut::new();
        loop {
            let (limit, error) = earliest(
                p.idle.map(|d| (instant_after(last, d), errors.idle)),
                total_at.map(|t| (t, errors.total)),
            );
            let frame = match limit {
                Some(at) => match timeout_at(at, body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => return fail(error, true),
                },
                None => body.frame().await,
            };
            match frame {
                None => break,
                Some(Err(_)) => {
                    return Verdict::Cut {
                        after: t0.elapsed(),
                    }
                }
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        if chunk.is_empty() {
                            continue;
                        }
                        let now = Instant::now();
                        max_gap = max_gap.max(now - last);
                        last = now;
                        data.extend_from_slice(&chunk);
                    }
                }
            }
        }
        Verdict::Delivered {
            status: parts.status,
            headers: parts.headers,
            body: data.freeze(),
            max_gap,
            elapsed: t0.elapsed(),
        }
    }
}

/// The earlier of two optional deadlines, with its error.
fn earliest(
    a: Option<(Instant, &'static str)>,
    b: Option<(Instant, &'static str)>,
) -> (Option<Instant>, &'static str) {
    match (a, b) {
        (Some(a), Some(b)) if b.0 < a.0 => (Some(b.0), b.1),
        (Some(a), _) => (Some(a.0), a.1),
        (None, Some(b)) => (Some(b.0), b.1),
        (None, None) => (None, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: `t0 + limit` panicked for a limit near `Duration::MAX`.
    #[tokio::test(start_paused = true)]
    async fn limits_at_the_maximum_never_fire() {
        let mut profile = Profile::HEROKU;
        profile.first_byte = Some(Duration::MAX);
        profile.idle = Some(Duration::MAX);
        profile.total = Some(Duration::MAX);
        let response = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Body::from("late"))
        };
        let verdict = RouterSim::new(profile).run(response).await;
        assert!(
            matches!(&verdict, Verdict::Delivered { body, .. } if body == "late"),
            "{verdict:?}"
        );
    }

    #[test]
    fn another_profile_gets_generic_errors() {
        assert_eq!(Errors::of("mine").idle, "idle timeout");
        assert_eq!(Errors::of("heroku").first_byte, "H12 request timeout");
    }
}
