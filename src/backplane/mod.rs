//! Where the hub's shared state and cross-instance fan-out live.
//!
//! A [`Backplane`] keeps what every instance of a service must agree on:
//! each channel's history (a bounded ring with an epoch and an offset per
//! message), presence (who is connected to a channel, with leases and a
//! grace window), and the fan-out of every message to every instance that
//! has subscribers.
//!
//! The signal service has a seam of its own, [`SwarmBackplane`] (feature
//! `signal`): where its swarms live when it runs as several instances.
//!
//! [`MemoryBackplane`] is the default: one process, everything in memory.
//! Several hubs in one process can share one `MemoryBackplane`, and then
//! behave as several instances behind one store would (the tests use this
//! to check that nothing the hub needs sits outside the backplane).
//!
//! # The contract
//!
//! - [`publish`](Backplane::publish) gives the message the next position of
//!   its channel, stores it (within the [`Retention`]), and hands it to
//!   every [attached](Backplane::attach) node's [`Deliver`], **in position
//!   order per channel**, exactly once per node. It returns the message and
//!   the count that the publishing node's `deliver` reported.
//! - [`history`](Backplane::history) answers the messages after a position,
//!   or [`Replay::Gap`] when it cannot cover that position (the messages
//!   were evicted, or the position belongs to another epoch of the
//!   channel). It never answers part of the missed messages.
//! - Presence counts connections per user and channel; the last connection
//!   to leave starts a grace window, and a user who comes back within it was
//!   never away. [`presence_expired`](Backplane::presence_expired) reports
//!   each user whose grace or lease ran out, once.
//!
//! State operations are async (a networked backplane awaits its store);
//! none of them waits for a subscriber.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use delayed_response::backplane::MemoryBackplane;
//! use delayed_response::hub::Hub;
//!
//! // Two hubs that share one backplane act as two instances of one service.
//! let backplane = Arc::new(MemoryBackplane::new());
//! let a = Hub::builder().backplane(backplane.clone()).build();
//! let b = Hub::builder().backplane(backplane).build();
//! # let _ = (a, b);
//! ```

#[cfg(feature = "hub")]
mod channels;
#[cfg(feature = "park")]
mod jobs;
#[cfg(feature = "hub")]
mod memory;
#[cfg(feature = "pipe")]
mod pipes;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "signal")]
mod swarm;

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "redis")]
pub use self::redis::{RedisBackplane, RedisBuilder};
#[cfg(feature = "hub")]
pub use channels::*;
#[cfg(feature = "park")]
pub use jobs::{Claim, JobBackplane, JobInbox, JobResult, JobState};
#[cfg(feature = "hub")]
pub use memory::MemoryBackplane;
#[cfg(feature = "pipe")]
pub use pipes::PipeBackplane;
#[cfg(feature = "signal")]
pub use swarm::{
    JoinOutcome, Listening, Signal, SignalOutcome, SwarmBackplane, SwarmEvent, SwarmNode, SwarmSink,
};

/// A boxed, sendable future: what the backplane's async operations return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
