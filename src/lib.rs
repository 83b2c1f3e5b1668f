//! HTTP responses that cannot be answered at once, on tokio and hyper 1.x.
//!
//! A handler that is sometimes slow answers `200` when its work finishes in
//! time and `202 Accepted` when it does not; a proxy that kills quiet
//! connections is kept happy with heartbeat bytes until the result is ready; a
//! client that goes away is noticed, and its work cancelled.
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::{DelayedResponse, Heartbeat, Json};
//!
//! # async fn slow_report() -> u32 { 42 }
//! # async fn handler(req: http::Request<hyper::body::Incoming>) -> http::Response<delayed_response::Body> {
//! // Long-poll: the head waits up to 1 s for the result (then 200 with it);
//! // after that a 202 goes out and a space every 20 s keeps proxies happy.
//! DelayedResponse::for_request(&req)
//!     .json()
//!     .heartbeat(Heartbeat::every(Duration::from_secs(20)).after(Duration::from_secs(1)))
//!     .start(async { Json(slow_report().await) })
//!     .await
//! # }
//! ```
//!
//! # Layout
//!
//! - [`delayed`]: the core, [`DelayedResponse`] and its four modes (`wait`,
//!   `start`, `poll`, `handle`), [`Heartbeat`], [`Reply`] rendering,
//!   [`Completion`], and the one extension point of `wait`,
//!   [`delayed::OnDeadline`] ("the deadline passed").
//! - [`Body`]: the response body every part of the crate returns.
//! - [`Error`]: the one error type, with `is_*` predicates.
//! - [`server`]: `serve` with TCP_NODELAY, HTTP/1.1 + h2c (HTTPS with
//!   HTTP/2 by ALPN, feature `tls`), and a graceful shutdown that ends held
//!   responses.
//! - [`sse`]: Server-Sent Events encoding ([`sse::Event`]); keep-alive
//!   comments are [`Heartbeat::sse`].
//! - [`signal`] (feature `signal`): SSE signalling swarms, koa-signal's
//!   protocol on the core's heartbeat and abort primitives.
//! - `pipe` (feature `pipe`): the ephemeral pipe, an upload streamed into a
//!   later download, nothing stored.
//! - [`park`] (feature `park`): async request-reply, timed-out work parked
//!   behind `202 Accepted` + `Location`, and `Prefer` (RFC 7240); an
//!   [`OnDeadline`](delayed::OnDeadline) hook on the core.
//! - `hub` (feature `hub`): pub/sub channels over SSE and long-poll, with
//!   cursors and replay, presence, JWT auth (feature `jwt`) and abuse limits.
//! - `backplane`: where state shared by several instances lives: the hub's
//!   history, presence and fan-out, signal's swarms, park's jobs and
//!   results, and which instance holds each pipe; in memory (one instance)
//!   by default, in Redis with feature `redis`.
//! - [`limit`]: per-client limits: who a request comes from
//!   ([`limit::ClientKey`]), and the `429 Too Many Requests` every service
//!   answers a client at its cap.
//! - [`proxy`]: heartbeat and deadline presets for Heroku, AWS ALB, nginx,
//!   Cloudflare and GCP load balancers.
//! - `testing` (feature `testing`): a proxy simulator for tests under paused
//!   time.
//!
//! ## Layers
//!
//! Each module uses only the modules below it (its `use crate::…` lines), so
//! there is no import cycle; a service never uses another service.
//!
//! | layer | module | may use |
//! |---|---|---|
//! | core | `error` | nothing |
//! | | `body` | `error` |
//! | | `http` (crate-private: service adapter, plain answers, lock, header names, `Prefer`) | `error`, `body` |
//! | | `id` (crate-private: CSPRNG ids) | `error` |
//! | | `delayed` | `error`, `body`, `http` |
//! | | `sse` | `delayed` |
//! | | `server` | `error`, `body`, `delayed` |
//! | | `proxy` | `delayed`, `http` |
//! | | `limit` | `body`, `http`, `server` |
//! | shared state | `backplane` (features `hub`, `signal`, `park`, `pipe`; Redis with `redis`) | the core |
//! | services | `park`, `pipe`, `signal`, `hub` | the core, `limit`, `backplane`; never one another |
//! | tools | `testing` | the core |
//!
//! The core knows nothing of the services: `park` plugs into `wait` through
//! [`OnDeadline`](delayed::OnDeadline) (its [`DelayedResponse::park`] is an
//! inherent method defined in `park`), and the other services build
//! [`DelayedResponse`]s like any user.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `json` | yes | [`Json`] and [`Reply::json`] (serde, serde_json) |
//! | `park` | yes | async request-reply (getrandom) |
//! | `pipe` | yes | the ephemeral pipe service (getrandom, multer) |
//! | `signal` | yes | SSE signalling swarms (getrandom, form_urlencoded) |
//! | `hub` | no | pub/sub channels with history, presence and auth over SSE and long-poll, on a backplane (getrandom, form_urlencoded) |
//! | `jwt` | no | `hub::JwtAuthorizer`, HS256 tokens (jsonwebtoken) |
//! | `redis` | no | `backplane::RedisBackplane`: the hub's history, fan-out and presence, signal's swarms and park's jobs in Redis, for several instances; with `pipe`, a pipe across instances (redis, hyper's client) |
//! | `testing` | no | `testing::RouterSim` |
//! | `tls` | no | HTTPS for `server::Server` (`Server::tls`, `server::load_tls_config`; tokio-rustls with the *ring* provider) |
//! | `full` | no | all of the above |
//!
//! # Abort and cancellation semantics
//!
//! hyper reports a client that went away by dropping the handler's future (or
//! the response body, once the head is out). A delayed response turns that
//! drop into an *abort*: its work is dropped, and so cancelled, unless
//! [detached](DelayedResponse::detach); [`DelayedResponse::on_abort`] runs with
//! [`AbortReason::ClientGone`]; [`Completion::aborted`] resolves. An abort is
//! never reported after a response finished normally, and a server shutdown is
//! reported as [`AbortReason::Shutdown`], not as a client abort.
//!
//! Measured on loopback (see `tests/abort.rs`), the abort fires within about
//! 0.1–0.3 ms of the client's FIN, RST or HTTP/2 RST_STREAM, both while the
//! handler is pending and while a held body waits between heartbeats. hyper
//! cannot see a disconnect, and only a failing heartbeat write reveals it
//! (within one or two heartbeat intervals), when:
//!
//! - the handler holds an upload it has not read yet (HTTP/1),
//! - the connection was built with `half_close(true)`,
//! - the client pipelined another request behind this one,
//! - the peer vanished without a FIN or RST (a pulled cable).
//!
//! A client that half-closes its side (`shutdown(Write)`) counts as gone, as in
//! hyper's default.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`DelayedResponse::timeout`] | none |
//! | heartbeat interval ([`Heartbeat`]), SSE keep-alive | 15 s ([`Heartbeat::DEFAULT_INTERVAL`], the one keep-alive default) |
//! | floor of heartbeat and poll intervals | 10 ms ([`DelayedResponse::DEFAULT_MIN_INTERVAL`]) |
//! | first heartbeat | after one interval |
//! | heartbeat bytes | `" "` (JSON whitespace); [`Heartbeat::sse`] uses `":\n\n"` |
//! | status of an early result | `200 OK` |
//! | status once the head must go out first | `202 Accepted` |
//! | a duration too long to add to now (`Duration::MAX`) | never |
//! | unsent progress bytes per handle | 1 MiB ([`delayed::DEFAULT_MAX_BUFFERED`]) |
//! | server shutdown grace period | 10 s ([`server::DEFAULT_GRACE_PERIOD`]) |
//! | server header read timeout | 30 s ([`server::DEFAULT_HEADER_READ_TIMEOUT`]) |
//! | server idle (keep-alive) timeout | 75 s ([`server::DEFAULT_IDLE_TIMEOUT`]) |
//! | server open connections | 25,000 ([`server::DEFAULT_MAX_CONNECTIONS`]) |
//! | server HTTP/2 streams per connection | 100 ([`server::DEFAULT_MAX_CONCURRENT_STREAMS`]) |
//! | signal POST body limit, per-peer queue | 10 KiB, 64 KiB (see [`signal`]) |
//! | signal open streams, open swarms, POST rate, per client | 64, 16, no limit (see [`signal`]) |
//! | park: jobs in a store (running + finished), running jobs per client | 10,000, 100 (see [`park`]) |
//! | park: bytes of stored results in all, per client, per result | 64 MiB, 16 MiB, 1 MiB |
//! | hub history, grace window, body cap, per-stream queue | 100 messages / 5 min, 5 s, 64 KiB, 256 KiB (see `hub`) |
//!
//! 15 s keeps a connection open behind Heroku (first byte within 30 s, then
//! one every 55 s), AWS ALB and nginx (60 s idle) and Cloudflare (100 s).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(
    feature = "hub",
    feature = "signal",
    feature = "park",
    feature = "pipe"
))]
pub mod backplane;
mod body;
pub mod delayed;
mod error;
mod http;
#[cfg(feature = "hub")]
pub mod hub;
#[cfg(any(
    feature = "park",
    feature = "pipe",
    feature = "signal",
    feature = "hub"
))]
mod id;
pub mod limit;
#[cfg(feature = "park")]
pub mod park;
#[cfg(feature = "pipe")]
pub mod pipe;
pub mod proxy;
pub mod server;
#[cfg(feature = "signal")]
pub mod signal;
pub mod sse;
#[cfg(feature = "testing")]
pub mod testing;

pub use body::Body;
#[cfg(feature = "json")]
pub use delayed::Json;
pub use delayed::{
    AbortReason, Completion, DelayedResponse, Heartbeat, IntoReply, Outcome, Reply, ResponseFuture,
    Shutdown,
};
pub use error::{BoxError, Error, Result};
