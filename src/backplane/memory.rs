//! The in-memory backplane: one process, channels and presence in maps.
//!
//! Locks: one map of channels (held for a lookup or an insert), one lock per
//! channel (held for an append and its delivery, which is what keeps
//! delivery in position order), one for presence and one for the nodes.
//! None is held across an `.await` (nothing here awaits), and a channel's
//! lock is the only one held while nodes deliver, so a node must not call
//! back into the backplane from `deliver`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    Backplane, BoxFuture, Deliver, Departure, History, Member, Message, NodeId, Position, Presence,
    Replay, Retention,
};
use crate::error::Error;
use crate::http::lock;

/// The default backplane: everything in this process's memory.
///
/// Epochs are random per channel, so a cursor from another process (or from
/// before a channel was dropped for having no history and no listeners) is
/// recognised as another epoch, and answered with a gap.
#[derive(Default)]
pub struct MemoryBackplane {
    channels: Mutex<HashMap<Arc<str>, Arc<Mutex<Channel>>>>,
    presence: Mutex<HashMap<Arc<str>, HashMap<String, User>>>,
    nodes: Mutex<Vec<(NodeId, Weak<dyn Deliver>)>>,
    next_node: AtomicU64,
}

struct Channel {
    name: Arc<str>,
    epoch: u64,
    /// The offset of the last message (0: none yet).
    last: u64,
    ring: VecDeque<(Message, Instant)>,
    /// The highest offset evicted from the ring: a position before it
    /// cannot be covered.
    evicted_through: u64,
    /// Nodes with local subscribers (summed over nodes).
    listeners: usize,
    /// Dropped from the map by `sweep`: a publish that raced it looks again.
    removed: bool,
    /// The last publish, read or listen, and the history age asked then:
    /// an idle channel is kept that long, so that a cursor of its epoch
    /// stays good while history could still cover it.
    touched: Instant,
    max_age: Duration,
}

impl Channel {
    /// Notes use now with `retention`, and applies it.
    fn touch(&mut self, retention: Retention, now: Instant) {
        self.touched = now;
        self.max_age = retention.max_age;
        self.evict(retention, now);
    }

    fn evict(&mut self, retention: Retention, now: Instant) {
        while let Some((message, at)) = self.ring.front() {
            let too_many = self.ring.len() > retention.max_messages;
            let too_old = now.saturating_duration_since(*at) > retention.max_age;
            if !too_many && !too_old {
                break;
            }
            self.evicted_through = self.evicted_through.max(message.position.offset);
            self.ring.pop_front();
        }
    }

    fn head(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.last,
        }
    }
}

#[derive(Default)]
struct User {
    /// Connection key → lease expiry (`None`: held until it leaves).
    connections: HashMap<String, Option<Instant>>,
    info: Option<Bytes>,
    /// Set while the user has no connections: when they count as gone.
    leaving_at: Option<Instant>,
}

impl MemoryBackplane {
    /// An empty backplane.
    pub fn new() -> Self {
        MemoryBackplane::default()
    }

    /// The channel's state, made on first use with a fresh random epoch.
    fn channel(&self, name: &str) -> Result<Arc<Mutex<Channel>>, Error> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(name) {
            return Ok(channel.clone());
        }
        let name: Arc<str> = Arc::from(name);
        let epoch = u64::from_le_bytes(crate::id::random_bytes::<8>()?) >> 1;
        let channel = Arc::new(Mutex::new(Channel {
            name: name.clone(),
            epoch,
            last: 0,
            ring: VecDeque::new(),
            evicted_through: 0,
            listeners: 0,
            removed: false,
            touched: Instant::now(),
            max_age: Duration::ZERO,
        }));
        channels.insert(name, channel.clone());
        Ok(channel)
    }

    fn nodes(&self) -> Vec<(NodeId, Arc<dyn Deliver>)> {
        let mut nodes = lock(&self.nodes);
        nodes.retain(|(_, n)| n.strong_count() > 0);
        nodes
            .iter()
            .filter_map(|(id, n)| n.upgrade().map(|n| (*id, n)))
            .collect()
    }

    fn publish_now(
        &self,
        from: NodeId,
        channel: &str,
        event: Option<&str>,
        data: Bytes,
        retention: Retention,
    ) -> Result<(Message, usize), Error> {
        let nodes = self.nodes();
        loop {
            let state = self.channel(channel)?;
            let mut ch = lock(&state);
            if ch.removed {
                continue;
            }
            ch.last += 1;
            let message = Message {
                channel: ch.name.clone(),
                position: ch.head(),
                event: event.map(Arc::from),
                data,
            };
            let now = Instant::now();
            ch.ring.push_back((message.clone(), now));
            ch.touch(retention, now);
            // Delivered under the channel's lock: two publishes to one
            // channel reach every node in position order.
            let mut count = 0;
            for (id, node) in &nodes {
                let n = node.deliver(&message);
                if *id == from {
                    count = n;
                }
            }
            return Ok((message, count));
        }
    }

    fn history_now(
        &self,
        channel: &str,
        after: Option<Position>,
        retention: Retention,
    ) -> Result<History, Error> {
        let state = self.channel(channel)?;
        let mut ch = lock(&state);
        ch.touch(retention, Instant::now());
        let head = ch.head();
        let replay = match after {
            None => Replay::Messages(Vec::new()),
            Some(after)
                if after.epoch != ch.epoch
                    || after.offset > ch.last
                    || after.offset < ch.evicted_through =>
            {
                Replay::Gap
            }
            Some(after) => Replay::Messages(
                ch.ring
                    .iter()
                    .filter(|(m, _)| m.position.offset > after.offset)
                    .map(|(m, _)| m.clone())
                    .collect(),
            ),
        };
        Ok(History { head, replay })
    }
}

impl fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackplane")
            .field("channels", &lock(&self.channels).len())
            .field("nodes", &lock(&self.nodes).len())
            .finish()
    }
}

impl Backplane for MemoryBackplane {
    fn attach(&self, node: Weak<dyn Deliver>) -> NodeId {
        let id = NodeId(self.next_node.fetch_add(1, Ordering::Relaxed) + 1);
        lock(&self.nodes).push((id, node));
        id
    }

    fn listen(&self, channel: &str) {
        if let Ok(state) = self.channel(channel) {
            lock(&state).listeners += 1;
        }
    }

    fn unlisten(&self, channel: &str) {
        let state = lock(&self.channels).get(channel).cloned();
        if let Some(state) = state {
            let mut ch = lock(&state);
            ch.listeners = ch.listeners.saturating_sub(1);
            ch.touched = Instant::now();
        }
    }

    fn publish<'a>(
        &'a self,
        from: NodeId,
        channel: &'a str,
        event: Option<&'a str>,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<(Message, usize), Error>> {
        let result = self.publish_now(from, channel, event, data, retention);
        Box::pin(std::future::ready(result))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        after: Option<Position>,
        retention: Retention,
    ) -> BoxFuture<'a, Result<History, Error>> {
        let result = self.history_now(channel, after, retention);
        Box::pin(std::future::ready(result))
    }

    fn presence_join<'a>(&'a self, entry: Presence<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        let mut presence = lock(&self.presence);
        let users = match presence.get_mut(entry.channel) {
            Some(users) => users,
            None => presence.entry(Arc::from(entry.channel)).or_default(),
        };
        let absent = !users.contains_key(entry.user);
        let user = users.entry(entry.user.to_string()).or_default();
        let expiry = entry.lease.map(|lease| Instant::now() + lease);
        user.connections
            .insert(entry.connection.to_string(), expiry);
        user.leaving_at = None;
        if entry.info.is_some() {
            user.info = entry.info;
        }
        Box::pin(std::future::ready(Ok(absent)))
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        connection: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let mut presence = lock(&self.presence);
        if let Some(u) = presence
            .get_mut(channel)
            .and_then(|users| users.get_mut(user))
        {
            u.connections.remove(connection);
            if u.connections.is_empty() && u.leaving_at.is_none() {
                u.leaving_at = Some(Instant::now() + grace);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn presence_expired(&self) -> BoxFuture<'_, Result<Vec<Departure>, Error>> {
        let now = Instant::now();
        let mut gone = Vec::new();
        let mut presence = lock(&self.presence);
        presence.retain(|channel, users| {
            users.retain(|name, user| {
                user.connections
                    .retain(|_, expiry| expiry.is_none_or(|at| at > now));
                if user.connections.is_empty() && user.leaving_at.is_none() {
                    // Its last lease ran out: the lease was the grace.
                    user.leaving_at = Some(now);
                }
                let left = user.leaving_at.is_some_and(|at| at <= now);
                if left {
                    gone.push(Departure {
                        channel: channel.clone(),
                        user: name.clone(),
                    });
                }
                !left
            });
            !users.is_empty()
        });
        Box::pin(std::future::ready(Ok(gone)))
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        let now = Instant::now();
        let presence = lock(&self.presence);
        let mut members: Vec<Member> = presence
            .get(channel)
            .map(|users| {
                users
                    .iter()
                    .map(|(name, user)| Member {
                        user: name.clone(),
                        connections: user
                            .connections
                            .values()
                            .filter(|e| e.is_none_or(|at| at > now))
                            .count(),
                        info: user.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_by(|a, b| a.user.cmp(&b.user));
        Box::pin(std::future::ready(Ok(members)))
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        channels.retain(|_, state| {
            let mut ch = lock(state);
            let retention = Retention {
                max_messages: usize::MAX,
                max_age: ch.max_age,
            };
            ch.evict(retention, now);
            // A channel with no messages left, nobody listening, and idle
            // for its history age: its epoch goes with it (a later cursor
            // for it gets a gap, as its history would be gone anyway).
            let idle = now.saturating_duration_since(ch.touched) > ch.max_age;
            let keep = ch.listeners > 0 || !ch.ring.is_empty() || !idle;
            ch.removed = !keep;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Retention = Retention {
        max_messages: 3,
        max_age: Duration::from_secs(60),
    };

    fn publish(b: &MemoryBackplane, data: &'static str) -> Message {
        b.publish_now(
            NodeId(0),
            "c",
            None,
            Bytes::from_static(data.as_bytes()),
            KEEP,
        )
        .unwrap()
        .0
    }

    fn replay(b: &MemoryBackplane, after: Position) -> Replay {
        b.history_now("c", Some(after), KEEP).unwrap().replay
    }

    #[tokio::test]
    async fn offsets_increase_and_history_replays_after_a_position() {
        let b = MemoryBackplane::new();
        let m1 = publish(&b, "1");
        let m2 = publish(&b, "2");
        assert_eq!(m1.position.offset, 1);
        assert_eq!(m2.position.offset, 2);
        assert_eq!(m1.position.epoch, m2.position.epoch);
        assert_eq!(replay(&b, m1.position), Replay::Messages(vec![m2.clone()]));
        assert_eq!(replay(&b, m2.position), Replay::Messages(vec![]));
    }

    #[tokio::test]
    async fn evicted_history_and_other_epochs_are_gaps() {
        let b = MemoryBackplane::new();
        let m1 = publish(&b, "1");
        for _ in 0..4 {
            publish(&b, "x");
        }
        // Offset 2 was evicted: after m1 cannot be covered; after 2 can.
        assert_eq!(replay(&b, m1.position), Replay::Gap);
        let after_m2 = Position {
            offset: 2,
            ..m1.position
        };
        assert!(matches!(replay(&b, after_m2), Replay::Messages(m) if m.len() == 3));
        let other = Position {
            epoch: m1.position.epoch ^ 1,
            offset: 1,
        };
        assert_eq!(replay(&b, other), Replay::Gap);
        let future = Position {
            offset: 99,
            ..m1.position
        };
        assert_eq!(replay(&b, future), Replay::Gap);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_age_out() {
        let b = MemoryBackplane::new();
        let m1 = publish(&b, "1");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            replay(
                &b,
                Position {
                    offset: 0,
                    ..m1.position
                }
            ),
            Replay::Gap
        );
        assert_eq!(replay(&b, m1.position), Replay::Messages(vec![]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_who_returns_within_the_grace_window_never_left() {
        let b = MemoryBackplane::new();
        let join = |conn: &'static str| Presence {
            channel: "c",
            user: "ann",
            connection: conn,
            info: None,
            lease: None,
        };
        assert!(b.presence_join(join("1")).await.unwrap());
        assert!(!b.presence_join(join("2")).await.unwrap());
        b.presence_leave("c", "ann", "1", Duration::from_secs(5))
            .await
            .unwrap();
        b.presence_leave("c", "ann", "2", Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(b.presence_expired().await.unwrap().is_empty());
        assert!(!b.presence_join(join("3")).await.unwrap());
        b.presence_leave("c", "ann", "3", Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let gone = b.presence_expired().await.unwrap();
        assert_eq!(
            gone,
            vec![Departure {
                channel: Arc::from("c"),
                user: "ann".to_string()
            }]
        );
        assert!(b.presence_expired().await.unwrap().is_empty());
        assert!(b.presence("c").await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_drops_idle_empty_channels_and_their_epoch() {
        let b = MemoryBackplane::new();
        let first = b.history_now("c", None, KEEP).unwrap().head;
        b.sweep();
        assert_eq!(b.history_now("c", None, KEEP).unwrap().head, first);
        tokio::time::advance(Duration::from_secs(61)).await;
        b.sweep();
        let second = b.history_now("c", None, KEEP).unwrap().head;
        assert_ne!(first.epoch, second.epoch);
        b.listen("c");
        tokio::time::advance(Duration::from_secs(61)).await;
        b.sweep();
        assert_eq!(b.history_now("c", None, KEEP).unwrap().head, second);
    }
}
