//! The core: [`DelayedResponse`], a builder with four ways to finish.
//!
//! | mode | what it does | head goes out |
//! |---|---|---|
//! | [`wait`](DelayedResponse::wait) | waits for the work, up to the [`timeout`](DelayedResponse::timeout) | with the result (200), or at the deadline (202) |
//! | [`start`](DelayedResponse::start) | long-poll: heartbeats keep the connection alive until the work ends | with the result if it is ready before the first heartbeat, else with the first heartbeat (202) |
//! | [`poll`](DelayedResponse::poll) | `start`, where the work re-runs a check every interval until it yields a result | as `start` |
//! | [`handle`](DelayedResponse::handle) | `start`, where a [`Completion`] ends the response from elsewhere and may write progress bytes first | as `start`, or with the first progress write |
//!
//! # Head timing
//!
//! The status line is not sent before it must be. A result that is ready before
//! the first heartbeat is due gets its real status (200, or whatever the reply
//! or the error hook says). Once a heartbeat (or a progress write) has gone out,
//! the response is a `202 Accepted` ([`pending_status`](DelayedResponse::pending_status))
//! and only the body of later results can be written.
//! [`accepted_at_start`](DelayedResponse::accepted_at_start) restores the
//! original library's behaviour of sending 202 at once.
//!
//! # Errors after the head
//!
//! When the work fails, or times out, after a 202 has gone out, the body ends
//! *abnormally* (HTTP/1.1: no final chunk, curl exit 18; HTTP/2: RST_STREAM), so
//! the client knows it did not get a result. An [`on_error`](DelayedResponse::on_error)
//! or [`on_timeout`](DelayedResponse::on_timeout) hook renders a body instead.
//!
//! # Extending `wait`: what happens at the deadline
//!
//! By default `wait` drops the work at its deadline and answers `202 Accepted`.
//! An [`OnDeadline`] set with [`on_deadline`](DelayedResponse::on_deadline)
//! replaces that: it is handed the still running work as a [`LateWork`], and
//! its answer goes out instead. It can also choose the deadline and add to an
//! answer given in time. [`park`](crate::park) is built on it (feature `park`):
//! it parks the late work in a store and answers `202` with a `Location`.
//!
//! # Files
//!
//! `builder.rs` holds the [`DelayedResponse`] settings, `config.rs` what they
//! set, `outcome.rs` how a response ended, `wait.rs` the `wait` mode,
//! `deadline.rs` its extension point, `held.rs` the engine of the held modes
//! (`start`, `poll`, `handle`), `tick.rs` the heartbeat schedules they share,
//! `handle.rs` the [`Completion`], `reply.rs` rendering, `guard.rs` a
//! rendered body that keeps its tracker, `tracker.rs` abort detection,
//! `shutdown.rs` the shutdown signal, `time.rs` deadline arithmetic.

mod builder;
mod config;
mod deadline;
mod guard;
mod handle;
mod heartbeat;
mod held;
mod outcome;
mod reply;
mod shutdown;
mod tick;
mod time;
mod tracker;
mod wait;

pub use builder::DelayedResponse;
pub use config::DEFAULT_MAX_BUFFERED;
pub use deadline::{LateWork, OnDeadline};
pub use handle::Completion;
pub use heartbeat::Heartbeat;
pub use held::ResponseFuture;
pub use outcome::{AbortReason, Outcome};
#[cfg(feature = "json")]
pub use reply::Json;
pub use reply::{IntoReply, Reply};
pub use shutdown::Shutdown;

// For every layer with timers of its own (park's TTLs, the simulator);
// a build without them leaves it unused.
#[allow(unused_imports)]
pub(crate) use time::instant_after;
