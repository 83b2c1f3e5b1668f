//! Live fan-out: reference-counted pub/sub subscriptions, delivery in
//! order, the publisher's count, and the catch-up after a reconnection.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::{io, Shared};
use crate::backplane::{Message, NodeId, Position, Replay, Retention};
use crate::error::Error;
use crate::http::lock;

/// The hub's broadcast channel (every node gets it, subscribed or not).
pub(super) const BROADCAST: &str = "*";

/// This process's subscription to one channel.
pub(crate) struct Sub {
    /// Local listeners (nodes with subscribers).
    refs: usize,
    /// `true` once Redis confirmed the subscription.
    ready: watch::Sender<bool>,
    /// The last position delivered.
    last: Option<Position>,
    /// The connection dropped since: catch up at the re-subscription.
    dirty: bool,
}

#[cfg_attr(not(any(feature = "signal", feature = "park")), allow(dead_code))]
pub(crate) enum Control {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
    /// Subscribe to a topic (see `topic.rs`).
    Topic(Arc<str>),
    /// Unsubscribe from a topic no handle wants any more.
    Untopic(Arc<str>),
}

/// Publishes in flight per channel, and the counts of their deliveries.
#[derive(Default)]
pub(crate) struct Waiters {
    inflight: HashMap<Arc<str>, usize>,
    slots: HashMap<(Arc<str>, Position), Slot>,
}

enum Slot {
    Waiting(oneshot::Sender<Counts>),
    Done(Counts),
}

type Counts = Vec<(NodeId, usize)>;

/// A publish in flight on a channel this process listens to: its
/// delivery's counts are kept for it.
pub(super) struct Inflight<'a> {
    shared: &'a Shared,
    channel: Arc<str>,
}

impl<'a> Inflight<'a> {
    pub(super) fn new(shared: &'a Shared, channel: &str) -> Self {
        let channel: Arc<str> = Arc::from(channel);
        *lock(&shared.waiters)
            .inflight
            .entry(channel.clone())
            .or_default() += 1;
        Inflight { shared, channel }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut w = lock(&self.shared.waiters);
        let n = w.inflight.entry(self.channel.clone()).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            w.inflight.remove(&self.channel);
            let ch = self.channel.clone();
            w.slots.retain(|(c, _), _| *c != ch);
        }
    }
}

/// Whether this process listens to `channel` (its publish then waits for
/// its own delivery, to count the local subscribers).
impl Shared {
    pub(super) fn listening(&self, channel: &str) -> bool {
        lock(&self.subs).get(channel).is_some_and(|s| s.refs > 0)
    }
}

/// Waits (within the timeout) for `message` to come back over pub/sub;
/// returns how many of `from`'s subscribers got it.
pub(super) async fn wait_for(shared: &Shared, message: &Message, from: NodeId) -> usize {
    let key = (message.channel.clone(), message.position);
    let rx = {
        let mut w = lock(&shared.waiters);
        match w.slots.remove(&key) {
            Some(Slot::Done(counts)) => return count_of(&counts, from),
            _ => {
                let (tx, rx) = oneshot::channel();
                w.slots.insert(key, Slot::Waiting(tx));
                rx
            }
        }
    };
    match tokio::time::timeout(shared.timeout, rx).await {
        Ok(Ok(counts)) => count_of(&counts, from),
        _ => 0,
    }
}

fn count_of(counts: &Counts, from: NodeId) -> usize {
    counts
        .iter()
        .find(|(id, _)| *id == from)
        .map_or(0, |(_, n)| *n)
}

pub(super) fn listen(shared: &Shared, channel: &str) {
    let mut subs = lock(&shared.subs);
    if let Some(sub) = subs.get_mut(channel) {
        sub.refs += 1;
        return;
    }
    let channel: Arc<str> = Arc::from(channel);
    subs.insert(
        channel.clone(),
        Sub {
            refs: 1,
            ready: watch::channel(false).0,
            last: None,
            dirty: false,
        },
    );
    let _ = shared.control.send(Control::Subscribe(channel));
}

pub(super) fn unlisten(shared: &Shared, channel: &str) {
    let mut subs = lock(&shared.subs);
    let Some(sub) = subs.get_mut(channel) else {
        return;
    };
    sub.refs = sub.refs.saturating_sub(1);
    if sub.refs == 0 {
        subs.remove(channel);
        lock(&shared.retention).remove(channel);
        let _ = shared
            .control
            .send(Control::Unsubscribe(Arc::from(channel)));
    }
}

/// Waits until this process's subscription to `channel` (if it has one)
/// is confirmed: a history read after it misses nothing live.
pub(super) async fn subscribed(shared: &Shared, channel: &str) -> Result<(), Error> {
    let rx = lock(&shared.subs).get(channel).map(|s| s.ready.subscribe());
    let Some(mut rx) = rx else {
        return Ok(());
    };
    let waited = tokio::time::timeout(shared.timeout, rx.wait_for(|ready| *ready))
        .await
        .map(|r| r.map(|_| ()));
    match waited {
        // Ready, or unsubscribed meanwhile.
        Ok(_) => Ok(()),
        Err(_) => Err(io("redis: the subscription timed out")),
    }
}

/// Hands `message` to every node, in order, once; tells a waiting
/// publisher the counts.
fn deliver(shared: &Shared, message: &Message) {
    if &*message.channel != BROADCAST {
        let mut subs = lock(&shared.subs);
        let Some(sub) = subs.get_mut(&message.channel) else {
            return;
        };
        if let Some(last) = sub.last {
            if last.epoch == message.position.epoch && message.position.offset <= last.offset {
                return;
            }
        }
        sub.last = Some(message.position);
    }
    let counts: Counts = shared
        .nodes()
        .iter()
        .map(|(id, node)| (*id, node.deliver(message)))
        .collect();
    let mut w = lock(&shared.waiters);
    if w.inflight.contains_key(&message.channel) {
        let key = (message.channel.clone(), message.position);
        match w.slots.remove(&key) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(counts);
            }
            _ => {
                w.slots.insert(key, Slot::Done(counts));
            }
        }
    }
}

/// A pub/sub payload: `{epoch} {offset} {event}\n{data}`.
fn parse(channel: Arc<str>, payload: &Bytes) -> Option<Message> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&payload[..nl]).ok()?;
    let mut parts = head.splitn(3, ' ');
    let epoch = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let event = parts.next().filter(|e| !e.is_empty()).map(Arc::from);
    Some(Message {
        channel,
        position: Position { epoch, offset },
        event,
        data: payload.slice(nl + 1..),
    })
}

/// The delivery task: pub/sub pushes and subscription changes, in order.
pub(super) async fn run(
    shared: Weak<Shared>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    loop {
        tokio::select! {
            biased;
            push = pushes.recv() => {
                let (Some(push), Some(shared)) = (push, shared.upgrade()) else { return };
                Box::pin(on_push(&shared, push)).await;
            }
            ctl = control.recv() => {
                let (Some(ctl), Some(shared)) = (ctl, shared.upgrade()) else { return };
                Box::pin(on_control(&shared, ctl)).await;
            }
        }
    }
}

async fn on_push(shared: &Arc<Shared>, push: PushInfo) {
    let prefix = format!("{}:c:", shared.prefix);
    let channel_of = |v: &Value| -> Option<Arc<str>> {
        let name: String = redis::from_redis_value_ref(v).ok()?;
        name.strip_prefix(&prefix).map(Arc::from)
    };
    let topic_prefix = shared.topic_key("");
    let topic_of = |v: &Value| -> Option<String> {
        let name: String = redis::from_redis_value_ref(v).ok()?;
        name.strip_prefix(&topic_prefix).map(str::to_string)
    };
    if let Some(topic) = push.data.first().and_then(topic_of) {
        match push.kind {
            PushKind::Message => {
                if let Some(payload) = push
                    .data
                    .get(1)
                    .and_then(|v| redis::from_redis_value_ref::<Bytes>(v).ok())
                {
                    shared.on_topic_message(&topic, payload);
                }
            }
            PushKind::Subscribe => shared.on_topic_subscribed(&topic),
            _ => {}
        }
        return;
    }
    match push.kind {
        PushKind::Message => {
            let (Some(channel), Some(payload)) = (
                push.data.first().and_then(channel_of),
                push.data
                    .get(1)
                    .and_then(|v| redis::from_redis_value_ref::<Bytes>(v).ok()),
            ) else {
                return;
            };
            if let Some(message) = parse(channel, &payload) {
                deliver(shared, &message);
            }
        }
        PushKind::Disconnection => {
            tracing::warn!("redis backplane: pub/sub connection lost");
            shared.on_topics_disconnected();
            for sub in lock(&shared.subs).values_mut() {
                sub.dirty = true;
            }
        }
        PushKind::Subscribe => {
            let Some(channel) = push.data.first().and_then(channel_of) else {
                return;
            };
            let dirty = lock(&shared.subs)
                .get_mut(&channel)
                .is_some_and(|s| std::mem::take(&mut s.dirty));
            if dirty {
                catch_up(shared, channel).await;
            }
        }
        _ => {}
    }
}

/// After a re-subscription: delivers what the channel's stream has after
/// the last delivered position, or a `gap` event at the head when it
/// cannot cover it (Redis restarted empty, messages evicted, or nothing
/// delivered yet to compare with).
async fn catch_up(shared: &Arc<Shared>, channel: Arc<str>) {
    let Some(last) = lock(&shared.subs).get(&channel).map(|s| s.last) else {
        return;
    };
    let retention = lock(&shared.retention)
        .get(&channel)
        .copied()
        .unwrap_or(Retention {
            max_messages: usize::MAX,
            max_age: Duration::MAX,
        });
    match Box::pin(shared.history(&channel, last, retention)).await {
        Ok(history) => match (last, history.replay) {
            (Some(_), Replay::Messages(messages)) => {
                for m in &messages {
                    deliver(shared, m);
                }
            }
            _ => {
                tracing::debug!(%channel, "redis backplane: gap after reconnection");
                let gap = Message {
                    channel: channel.clone(),
                    position: history.head,
                    event: Some(Arc::from("gap")),
                    data: Bytes::from(format!("{{\"channels\":[\"{channel}\"]}}")),
                };
                // A gap moves subscribers to the head, even one at the
                // same offset of another epoch.
                if let Some(sub) = lock(&shared.subs).get_mut(&channel) {
                    sub.last = None;
                }
                deliver(shared, &gap);
            }
        },
        Err(error) => {
            tracing::warn!(%error, %channel, "redis backplane: catch-up failed");
            if let Some(sub) = lock(&shared.subs).get_mut(&channel) {
                sub.dirty = true;
            }
        }
    }
}

async fn on_control(shared: &Arc<Shared>, ctl: Control) {
    let mut sub = shared.sub.clone();
    match ctl {
        Control::Subscribe(channel) => {
            let ready = lock(&shared.subs).get(&channel).map(|s| s.ready.clone());
            let Some(ready) = ready else { return };
            match shared.call(sub.subscribe(shared.key("c", &channel))).await {
                Ok(()) => {
                    ready.send_replace(true);
                }
                Err(error) => {
                    tracing::warn!(%error, %channel, "redis backplane: subscribe failed; retrying");
                    let control = shared.control.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = control.send(Control::Subscribe(channel));
                    });
                }
            }
        }
        Control::Topic(name) => {
            if !shared.wants_topic(&name) {
                return;
            }
            match shared.call(sub.subscribe(shared.topic_key(&name))).await {
                Ok(()) => shared.on_topic_subscribed(&name),
                Err(error) => {
                    tracing::warn!(%error, topic = %name, "redis backplane: subscribe failed; retrying");
                    let control = shared.control.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = control.send(Control::Topic(name));
                    });
                }
            }
        }
        Control::Untopic(name) => {
            if shared.wants_topic(&name) {
                return;
            }
            if let Err(error) = shared.call(sub.unsubscribe(shared.topic_key(&name))).await {
                tracing::debug!(%error, topic = %name, "redis backplane: unsubscribe failed");
            }
        }
        Control::Unsubscribe(channel) => {
            if shared.listening(&channel) {
                return;
            }
            if let Err(error) = shared
                .call(sub.unsubscribe(shared.key("c", &channel)))
                .await
            {
                tracing::debug!(%error, %channel, "redis backplane: unsubscribe failed");
            }
        }
    }
}

/// Keeps the pub/sub connection alive (a ping a second makes the manager
/// notice a lost connection and reconnect) and renews held leases.
pub(super) async fn keep(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renew = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut sub = shared.sub.clone();
        let _ = shared
            .call(redis::cmd("PING").query_async::<Value>(&mut sub))
            .await;
        if last_renew.elapsed() >= shared.lease / 3 {
            last_renew = tokio::time::Instant::now();
            if let Err(error) = super::presence::renew(&shared).await {
                tracing::warn!(%error, "redis backplane: lease renewal failed");
            }
        }
    }
}
