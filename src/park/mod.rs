//! Async request-reply: when the work misses its deadline, park it and answer
//! `202 Accepted` with a `Location` to poll, instead of dropping the result.
//!
//! ```text
//! POST /reports            → (work runs past the deadline)
//! 202 Accepted
//! Location: /jobs/Qx3…
//! Retry-After: 1
//!
//! GET /jobs/Qx3…           → 202 + Retry-After while it runs (long-polls with Prefer: wait=N)
//! GET /jobs/Qx3…           → the result, with its real status, once it is ready
//! DELETE /jobs/Qx3…        → 204: the work is cancelled (or the result dropped)
//! ```
//!
//! A [`Store`] keeps the running jobs and their finished results; a
//! [`Service`] serves the status URLs; [`DelayedResponse::park`](crate::DelayedResponse::park) connects
//! a delayed response to a store. The original request also honours `Prefer`
//! (RFC 7240): `respond-async` answers 202 at once, `wait=N` sets this request's
//! deadline (capped by [`Store::max_wait`]); `Preference-Applied` says which
//! were honoured.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::limit::ClientKey;
//! use delayed_response::park::{self, Store};
//! use delayed_response::DelayedResponse;
//!
//! # async fn handler(req: http::Request<hyper::body::Incoming>) -> http::Response<delayed_response::Body> {
//! let store = Store::builder().base_path("/jobs/").build();
//! let status = park::Service::new(store.clone()); // serve it under /jobs/
//! // Whose cap of running jobs this one counts against.
//! let client = ClientKey::from_extensions(req.extensions());
//! DelayedResponse::for_request(&req)
//!     .timeout(Duration::from_secs(1))
//!     .park(store, client)
//!     .wait(async { "slow result" })
//!     .await
//! # }
//! ```
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`ttl`](Builder::ttl) of a finished result | 10 min |
//! | [`max_entries`](Builder::max_entries) (running + finished) | 10,000 |
//! | [`max_jobs_per_client`](Builder::max_jobs_per_client) (running) | 100 |
//! | [`max_result_bytes`](Builder::max_result_bytes) | 1 MiB |
//! | [`max_stored_bytes`](Builder::max_stored_bytes) (result bodies, all clients) | 64 MiB |
//! | [`max_stored_bytes_per_client`](Builder::max_stored_bytes_per_client) | 16 MiB |
//! | [`max_wait`](Builder::max_wait) (cap of `Prefer: wait`) | 25 s (under Heroku's 30 s and GCP's 30 s) |
//! | [`retry_after`](Builder::retry_after) | 1 s |
//! | [`base_path`](Builder::base_path) | `/jobs/` |
//!
//! # Limits
//!
//! Each global cap has a per-client cap beside it, keyed by the
//! [`ClientKey`](crate::limit::ClientKey) passed to
//! [`DelayedResponse::park`](crate::DelayedResponse::park), so that one
//! client cannot fill the store for everyone (see [`Store`] for the table):
//!
//! - A client with `max_jobs_per_client` jobs running gets
//!   `429 Too Many Requests` with `Retry-After`, and its work is dropped;
//!   other clients park as before. When the store holds `max_entries` jobs,
//!   the oldest finished results are evicted first; when only running jobs
//!   remain, new parking is refused with `503 Service Unavailable` and
//!   `Retry-After`, and the work is dropped.
//! - A result that would pass its client's byte cap evicts that client's
//!   own oldest results; one that would pass the total evicts the oldest
//!   results of anyone. So the store never holds more than
//!   `max_stored_bytes` of result bodies, and one client alone cannot push
//!   out another's. An evicted result's status URL answers `404`, as an
//!   expired one does. A result larger than any byte cap (or than
//!   `max_result_bytes`) is kept as a `500` that says it was too large.
//!
//! Behind a reverse proxy every request comes from the proxy's address:
//! put a [`ClientKey`](crate::limit::ClientKey) in the request's extensions
//! there (see [`limit`](crate::limit)).
//!
//! # Across instances
//!
//! Behind a load balancer, the status URL may reach another instance than
//! the one that parked the job. Give every instance's store one shared
//! [`JobBackplane`](crate::backplane::JobBackplane) with
//! [`Builder::backplane`] (`RedisBackplane`, feature `redis`): results are
//! kept there, a long-poll anywhere is woken when the job ends, a `DELETE`
//! anywhere cancels it where it runs, and a job whose instance died answers
//! `500` (`job lost: the instance running it stopped`) instead of `202` for
//! ever. See [`Builder::backplane`] for the details.
//!
//! # A layer on the core
//!
//! `park` uses the core's one extension point for "the deadline passed",
//! [`OnDeadline`](crate::delayed::OnDeadline): [`DelayedResponse::park`](crate::DelayedResponse::park)
//! sets a hook that chooses the deadline from `Prefer`, and at the deadline
//! takes the [`LateWork`](crate::delayed::LateWork) into a task of its own.
//! The result is rendered by the core, as a result in time would be (the
//! builder's status and headers, its error hook), then kept as bytes.

mod answers;
mod builder;
mod parking;
mod remote;
mod running;
mod service;
mod store;
mod stored;

pub use crate::http::{Prefer, ResponseFuture};
pub use builder::Builder;
pub use service::Service;
pub use store::Store;
