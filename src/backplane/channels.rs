//! The hub's part of the backplane: channels, history, presence, fan-out.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::BoxFuture;
use crate::error::Error;
use crate::limit::{ClientKey, Rate};

/// Where a message sits in its channel: the channel's epoch (which changes
/// when its history is lost, for example when the store restarts) and the
/// message's offset within that epoch (increasing, not necessarily by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The identity of this run of the channel's history.
    pub epoch: u64,
    /// The message's place in the epoch; `0` is "before the first message".
    pub offset: u64,
}

/// One message of a channel, as stored and fanned out.
///
/// Cloning is cheap: the channel name and the data are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published to.
    pub channel: Arc<str>,
    /// Its position in the channel.
    pub position: Position,
    /// `None` for published data; a control event name (`join`, `leave`)
    /// for events the hub makes itself.
    pub event: Option<Arc<str>>,
    /// The body, byte for byte.
    pub data: Bytes,
}

/// How much history a channel keeps: at most `max_messages`, none older
/// than `max_age`. `max_messages == 0` keeps none (positions are still
/// given out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The most messages kept.
    pub max_messages: usize,
    /// The oldest message kept.
    pub max_age: Duration,
}

/// What [`Backplane::history`] found after a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every message after the position, in order (maybe none).
    Messages(Vec<Message>),
    /// The history cannot cover the position: messages were evicted, or the
    /// position belongs to another epoch.
    Gap,
}

/// A channel's history read: its current end and what came after a
/// position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The position of the channel's last message (offset `0` before the
    /// first), in the channel's current epoch.
    pub head: Position,
    /// The messages after the asked position; with no position asked, an
    /// empty list.
    pub replay: Replay,
}

/// One user present in a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// How many connections (streams, long-poll leases) the user has in the
    /// channel; `0` while a leave is held in its grace window.
    pub connections: usize,
    /// The JSON the authorizer attached to the user, if any.
    pub info: Option<Bytes>,
}

/// A user whose grace window or lease ran out: they left `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// The channel.
    pub channel: Arc<str>,
    /// The user.
    pub user: String,
}

/// A node's delivery to its local subscribers.
pub trait Deliver: Send + Sync {
    /// Hands `message` to this node's subscribers of its channel, without
    /// waiting for any of them; returns how many got it.
    fn deliver(&self, message: &Message) -> usize;
}

/// A node attached to a backplane (see [`Backplane::attach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A presence connection: who, where, and for how long.
#[derive(Debug, Clone)]
pub struct Presence<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The user.
    pub user: &'a str,
    /// A key unique to this connection across every node (a long-poll
    /// client's polls share one).
    pub connection: &'a str,
    /// JSON about the user, shown by [`Backplane::presence`].
    pub info: Option<Bytes>,
    /// `Some(lease)`: the connection counts until `lease` after this call,
    /// unless renewed (long-poll); `None`: until it leaves.
    pub lease: Option<Duration>,
}

/// The store and fan-out behind a hub. See the [module docs](crate::backplane) for the
/// contract an implementation must keep.
pub trait Backplane: Send + Sync + 'static {
    /// Attaches a node: from now on every message published through this
    /// backplane, by any node, is handed to `node` (until it is dropped).
    fn attach(&self, node: Weak<dyn Deliver>) -> NodeId;

    /// The node has its first local subscriber of `channel` (a networked
    /// backplane subscribes to the channel then).
    fn listen(&self, channel: &str);

    /// The node's last local subscriber of `channel` left.
    fn unlisten(&self, channel: &str);

    /// Publishes: stores the message within `retention` and fans it out (see
    /// the module docs). Returns it with the count that `from`'s
    /// [`Deliver`] reported.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached (never for the memory backplane,
    /// except without entropy for a new channel's epoch).
    fn publish<'a>(
        &'a self,
        from: NodeId,
        channel: &'a str,
        event: Option<&'a str>,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<(Message, usize), Error>>;

    /// The channel's head, and the messages after `after` (none asked:
    /// `None`).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        after: Option<Position>,
        retention: Retention,
    ) -> BoxFuture<'a, Result<History, Error>>;

    /// Counts a connection of a user in a channel (or renews its lease).
    /// Returns `true` when the user was absent: neither connected nor held
    /// in a grace window (the caller then announces a join).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    fn presence_join<'a>(&'a self, entry: Presence<'a>) -> BoxFuture<'a, Result<bool, Error>>;

    /// A connection left. When it was the user's last in the channel, the
    /// user stays listed (with no connections) for `grace`, and is reported
    /// by [`presence_expired`](Self::presence_expired) after that unless they
    /// came back.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        connection: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The users whose grace window or last lease has run out, each reported
    /// once (by whichever node asks first).
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    fn presence_expired(&self) -> BoxFuture<'_, Result<Vec<Departure>, Error>>;

    /// Who is in `channel`, sorted by user id.
    ///
    /// # Errors
    ///
    /// When the store cannot be reached.
    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>>;

    /// Housekeeping a node runs now and then (the memory backplane drops
    /// channels whose history has expired and that nobody listens to).
    fn sweep(&self) {}

    /// How often a node should call
    /// [`presence_expired`](Self::presence_expired) even when nothing of its
    /// own is due: `None` (the default) when only the node's own leases and
    /// grace windows can expire; a networked backplane answers its lease
    /// period, so that another node's dead connections are announced.
    fn sweep_every(&self) -> Option<Duration> {
        None
    }

    /// Takes one token of the rate limit `limit` (`"publish"`, `"connect"`)
    /// for `client`, from a bucket that every node shares: `Ok(None)` when
    /// one was there, `Ok(Some(wait))` when the client must wait that long.
    ///
    /// `None` (the default): this backplane does not count across nodes,
    /// and each hub counts in its own process (the memory backplane). A
    /// networked backplane answers `Some`, so that a client's budget is one
    /// however many instances it spreads its requests over. When the
    /// future fails (the store is unreachable) the hub counts locally for
    /// that request.
    #[allow(clippy::type_complexity)]
    fn take_token<'a>(
        &'a self,
        limit: &'a str,
        client: &'a ClientKey,
        rate: Rate,
    ) -> Option<BoxFuture<'a, Result<Option<Duration>, Error>>> {
        let _ = (limit, client, rate);
        None
    }
}

impl fmt::Debug for dyn Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Backplane")
    }
}
