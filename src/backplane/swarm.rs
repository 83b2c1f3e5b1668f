//! The seam between the signal service and where its swarms live when it
//! runs as several instances: [`SwarmBackplane`] and what goes with it.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Weak};

use super::BoxFuture;
use crate::error::Error;

/// Where a [`signal`](crate::signal) service's swarms live when it runs as
/// several instances; [`signal::Builder::backplane`] takes one.
///
/// Without a backplane a signal service keeps its swarms in memory: one
/// instance. The instances that share a `SwarmBackplane` (with feature
/// `redis`, [`RedisBackplane`](super::RedisBackplane)) serve the same swarms:
/// a peer may create a swarm on one instance and another join it on a
/// second; signals, `join`, `leave` and `close` reach the peers wherever
/// they are connected.
///
/// # The contract
///
/// - A service [attaches](SwarmBackplane::attach) once, before its first
///   swarm, and gets its [`SwarmNode`]: one instance, with an inbox (direct
///   signals for its peers) and a lease that it renews while it lives.
/// - The registry of swarms (each swarm's initiator, its peers with the
///   instance that holds each, and a *hash* of each peer's token, never the
///   token) is the backplane's. The service keeps only its own peers'
///   streams.
/// - Before a service answers a create or a join it
///   [listens](SwarmNode::listen) to the swarm, so that every event
///   published after the answer reaches it.
/// - Events reach the [`SwarmSink`] of every instance that listens to the
///   swarm (broadcast signals, `join`, `leave`, `close`), or of the instance
///   that holds the target (a direct signal). Delivery is at most once, in
///   order per swarm for the events of the swarm; a direct signal travels
///   apart and may overtake them.
/// - When an instance dies without leaving cleanly, its lease runs out and a
///   surviving instance removes its peers: their `leave`s go out, and a
///   swarm whose initiator was there ends for everyone, exactly once.
/// - An instance that could not renew its lease for a whole lease, or finds
///   that it was removed, gets [`SwarmEvent::Lost`]: its swarms are over.
///
/// Ids, cids and tokens are the service's 32-lowercase-hex strings.
///
/// [`signal::Builder::backplane`]: crate::signal::Builder::backplane
pub trait SwarmBackplane: Send + Sync + 'static {
    /// Joins as one instance: subscribes its inbox and starts renewing its
    /// lease. `sink` gets the events of the swarms the node
    /// [listens](SwarmNode::listen) to, and the direct signals to its peers;
    /// the node's background work stops when it is dropped.
    fn attach(&self, sink: Weak<dyn SwarmSink>)
        -> BoxFuture<'_, Result<Arc<dyn SwarmNode>, Error>>;
}

/// One instance's view of a [`SwarmBackplane`]. Every call that may fail
/// fails with an [`Error`] that [`Error::is_io`] when the store is out of
/// reach (the service answers `503`).
pub trait SwarmNode: Send + Sync + 'static {
    /// Subscribes to the events of `swarm`; returns once subscribed. The
    /// events go to the sink until the [`Listening`] is dropped.
    fn listen<'a>(&'a self, swarm: &'a str) -> BoxFuture<'a, Result<Listening, Error>>;

    /// Registers a new swarm whose initiator is `cid` (held by this
    /// instance) with `token`. `Ok(false)`: `max_swarms` swarms are open.
    fn create<'a>(
        &'a self,
        swarm: &'a str,
        cid: &'a str,
        token: &'a str,
        max_swarms: Option<usize>,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Adds peer `cid` (held by this instance) with `token` to `swarm`, and
    /// publishes its `join`.
    fn join<'a>(
        &'a self,
        swarm: &'a str,
        cid: &'a str,
        token: &'a str,
        max_peers: Option<usize>,
    ) -> BoxFuture<'a, Result<JoinOutcome, Error>>;

    /// Removes peer `cid` of this instance from `swarm`, in the background
    /// (retried while the store is out of reach, within the lease): its
    /// `leave` goes out, or, for the initiator, the swarm's `close`. Nothing
    /// happens if it is not there.
    fn leave(&self, swarm: &str, cid: &str);

    /// Is `swarm` open?
    fn exists<'a>(&'a self, swarm: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Checks a signal's token and target, and publishes it: one round trip
    /// to the store, whatever the number of peers.
    fn signal<'a>(&'a self, signal: Signal<'a>) -> BoxFuture<'a, Result<SignalOutcome, Error>>;
}

/// Gets the events of the swarms an instance listens to.
pub trait SwarmSink: Send + Sync + 'static {
    /// One event; must not block (it runs on the backplane's task).
    fn deliver(&self, event: SwarmEvent<'_>);
}

/// What a [`SwarmSink`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwarmEvent<'a> {
    /// Peer `cid` joined `swarm` (for its initiator).
    Join {
        /// The swarm.
        swarm: &'a str,
        /// The new peer.
        cid: &'a str,
    },
    /// Peer `cid` left `swarm` (for its initiator).
    Leave {
        /// The swarm.
        swarm: &'a str,
        /// The peer that left.
        cid: &'a str,
    },
    /// A signal from `from`, to every peer or to `to`.
    Signal {
        /// The swarm.
        swarm: &'a str,
        /// The sender's cid.
        from: &'a str,
        /// The one peer it is for; `None`: every peer.
        to: Option<&'a str>,
        /// The `data`, one line of JSON.
        data: &'a str,
    },
    /// `swarm` ended: its initiator left, or its instance died.
    Close {
        /// The swarm.
        swarm: &'a str,
    },
    /// This instance was out of reach for longer than its lease (or the
    /// store lost its data): every swarm it held a peer of may be gone, and
    /// its own peers were (or will be) removed. Its streams must end.
    Lost,
}

/// A signal for [`SwarmNode::signal`].
#[derive(Debug, Clone, Copy)]
pub struct Signal<'a> {
    /// The swarm.
    pub swarm: &'a str,
    /// The sender's token.
    pub token: &'a str,
    /// The one peer it is for; `None`: every peer.
    pub to: Option<&'a str>,
    /// The `data`; `None` checks the swarm and the token only, and sends
    /// nothing (the POST is bad, but its token decides between `401` and
    /// `400`).
    pub data: Option<&'a str>,
}

/// What [`SwarmNode::join`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// The peer is in the swarm.
    Joined,
    /// There is no such swarm.
    NoSwarm,
    /// The swarm has `max_peers` peers.
    Full,
}

/// What [`SwarmNode::signal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalOutcome {
    /// Published.
    Sent,
    /// The swarm is open and the token a peer's (a check without data).
    Checked,
    /// There is no such swarm.
    NoSwarm,
    /// The token is no current peer's of the swarm.
    BadToken,
    /// The target is no current peer of the swarm.
    NoPeer,
}

/// A subscription to a swarm's events ([`SwarmNode::listen`]); dropping it
/// ends it.
pub struct Listening(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl Listening {
    /// A subscription that ends when `guard` is dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Self {
        Listening(Box::new(guard))
    }
}

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Listening")
    }
}
