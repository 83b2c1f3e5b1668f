//! Presets for the proxies and load balancers that close quiet or slow
//! responses, and the heartbeat and deadline settings that keep a response
//! alive behind each.
//!
//! Each [`Profile`] records the proxy's rules; [`Profile::apply`] derives the
//! settings from them:
//!
//! - **heartbeat interval**: half the idle limit, so a heartbeat delayed by a
//!   busy server still arrives in time;
//! - **first heartbeat**: half the first-byte limit (the head goes out with it);
//! - **deadline** (only where the proxy caps the whole response, where no
//!   heartbeat helps): two thirds of the cap, to be used with
//!   [`DelayedResponse::park`](crate::DelayedResponse::park) so the client gets
//!   `202` + `Location` in time;
//! - extra headers the proxy needs (nginx: `X-Accel-Buffering: no`).
//!
//! | preset | rule it derives from | heartbeat | deadline |
//! |---|---|---|---|
//! | [`HEROKU`](Profile::HEROKU) | first byte within 30 s (H12), then one at least every 55 s (H15) | every 27 s, first after 15 s | — |
//! | [`AWS_ALB`](Profile::AWS_ALB) | 60 s idle timeout (default), both directions | every 30 s, first after 30 s | — |
//! | [`NGINX`](Profile::NGINX) | `proxy_read_timeout` 60 s between two reads; buffering on | every 30 s, first after 30 s, `X-Accel-Buffering: no` | — |
//! | [`CLOUDFLARE`](Profile::CLOUDFLARE) | 100 s without a byte from the origin (524) | every 50 s, first after 50 s | — |
//! | [`GCP_LB`](Profile::GCP_LB) | 30 s for the whole response (backend service timeout) | none | 20 s |
//!
//! # Examples
//!
//! ```
//! use delayed_response::proxy::Profile;
//! use delayed_response::DelayedResponse;
//!
//! # async fn handler() -> http::Response<delayed_response::Body> {
//! Profile::HEROKU
//!     .apply(DelayedResponse::new())
//!     .start(async { "a ten-minute job" })
//!     .await
//! # }
//! ```

use std::time::Duration;

use http::header::HeaderValue;

use crate::delayed::{DelayedResponse, Heartbeat};
use crate::http::X_ACCEL_BUFFERING;

/// The rules of one proxy; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// A short name, for logs.
    pub name: &'static str,
    /// The longest wait for the first byte of the response (its head).
    pub first_byte: Option<Duration>,
    /// The longest silence between two bytes once the response started.
    pub idle: Option<Duration>,
    /// The longest time for the whole response.
    pub total: Option<Duration>,
    /// Whether the proxy buffers responses unless told not to
    /// (`X-Accel-Buffering: no`).
    pub buffers: bool,
}

const fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

impl Profile {
    /// Heroku's router: the first byte within 30 s (error H12), then a byte at
    /// least every 55 s (error H15).
    pub const HEROKU: Profile = Profile {
        name: "heroku",
        first_byte: secs(30),
        idle: secs(55),
        total: None,
        buffers: false,
    };

    /// AWS Application Load Balancer: 60 s idle timeout (the default), in
    /// which the wait for the head counts too.
    pub const AWS_ALB: Profile = Profile {
        name: "aws-alb",
        first_byte: secs(60),
        idle: secs(60),
        total: None,
        buffers: false,
    };

    /// nginx as a reverse proxy: `proxy_read_timeout` 60 s (the default)
    /// between two successive reads from the upstream, head included; it
    /// buffers responses unless the upstream sends `X-Accel-Buffering: no`.
    pub const NGINX: Profile = Profile {
        name: "nginx",
        first_byte: secs(60),
        idle: secs(60),
        total: None,
        buffers: true,
    };

    /// Cloudflare's proxy: 100 s without a byte from the origin (error 524).
    pub const CLOUDFLARE: Profile = Profile {
        name: "cloudflare",
        first_byte: secs(100),
        idle: secs(100),
        total: None,
        buffers: false,
    };

    /// Google Cloud external HTTP(S) load balancer: the backend service
    /// timeout (30 s by default) caps the *whole* response, so heartbeats
    /// cannot help: answer within the cap, or park and answer 202.
    pub const GCP_LB: Profile = Profile {
        name: "gcp-lb",
        first_byte: None,
        idle: None,
        total: secs(30),
        buffers: false,
    };

    /// All presets.
    pub const ALL: [Profile; 5] = [
        Profile::HEROKU,
        Profile::AWS_ALB,
        Profile::NGINX,
        Profile::CLOUDFLARE,
        Profile::GCP_LB,
    ];

    /// The heartbeat that keeps a response alive behind this proxy, or `None`
    /// when heartbeats cannot help (a cap on the whole response).
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        if self.total.is_some() {
            return None;
        }
        let idle = self.idle.or(self.first_byte)?;
        let first = self.first_byte.unwrap_or(idle);
        Some(Heartbeat::every(whole_secs(idle / 2)).after(whole_secs(first / 2)))
    }

    /// The deadline to give [`DelayedResponse::timeout`] (with
    /// [`park`](crate::DelayedResponse::park)) where the proxy caps the whole
    /// response: two thirds of the cap.
    pub fn deadline(&self) -> Option<Duration> {
        // Divided first: `t * 2` overflows for a cap near `Duration::MAX`.
        self.total.map(|t| whole_secs(t / 3 * 2))
    }

    /// Applies the derived settings to `builder`: the heartbeat, the deadline,
    /// and `X-Accel-Buffering: no` where the proxy buffers.
    pub fn apply(&self, builder: DelayedResponse) -> DelayedResponse {
        let mut builder = builder;
        if let Some(hb) = self.heartbeat() {
            builder = builder.heartbeat(hb);
        }
        if let Some(deadline) = self.deadline() {
            builder = builder.timeout(deadline);
        }
        if self.buffers {
            builder = builder.header(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
        }
        builder
    }
}

/// Rounds down to whole seconds (at least one).
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_heartbeat_is_within_both_limits() {
        let hb = Profile::HEROKU.heartbeat().unwrap();
        assert_eq!(hb.initial_delay(), Duration::from_secs(15));
        assert_eq!(hb.interval(), Duration::from_secs(27));
    }

    #[test]
    fn gcp_gets_a_deadline_not_a_heartbeat() {
        assert_eq!(Profile::GCP_LB.heartbeat(), None);
        assert_eq!(Profile::GCP_LB.deadline(), Some(Duration::from_secs(20)));
    }

    // Regression: `t * 2 / 3` panicked for a cap near `Duration::MAX`.
    #[test]
    fn a_cap_at_the_maximum_gives_a_deadline_without_panicking() {
        let mut p = Profile::GCP_LB;
        p.total = Some(Duration::MAX);
        assert!(p.deadline().unwrap() > Duration::from_secs(1 << 62));
    }

    #[test]
    fn every_heartbeat_preset_beats_inside_its_limits() {
        for p in Profile::ALL {
            let Some(hb) = p.heartbeat() else { continue };
            assert!(hb.initial_delay() < p.first_byte.unwrap(), "{}", p.name);
            assert!(hb.interval() < p.idle.unwrap(), "{}", p.name);
        }
    }
}
