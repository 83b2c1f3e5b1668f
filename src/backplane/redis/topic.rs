//! Topics: addressed pub/sub messages on the backplane's connections, for
//! the modules other than the hub (an instance's inbox, a job's end).
//!
//! A topic is a Redis pub/sub channel `{prefix}:t:{name}`. This process
//! subscribes once per name, whatever the number of [`Topic`] handles, and
//! unsubscribes when the last one is dropped. Delivery is at most once, as
//! Redis pub/sub is: after the pub/sub connection was lost and restored,
//! each handle gets [`TopicEvent::Resubscribed`], so its owner can re-read
//! whatever state it was waiting on.

// Used by signal's and park's Redis parts.
#![cfg_attr(not(any(feature = "signal", feature = "park")), allow(dead_code))]

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::{io, Shared};
use crate::error::Error;
use crate::http::lock;

/// What a [`Topic`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicEvent {
    /// A payload, as published.
    Message(Bytes),
    /// The pub/sub connection dropped and the topic was subscribed again:
    /// messages published meanwhile were lost.
    Resubscribed,
}

/// This process's subscriptions to topics.
#[derive(Default)]
pub(crate) struct Topics {
    map: HashMap<Arc<str>, Entry>,
    next: u64,
}

struct Entry {
    handles: Vec<(u64, mpsc::UnboundedSender<TopicEvent>)>,
    /// `true` once Redis confirmed the subscription.
    ready: watch::Sender<bool>,
    /// The connection dropped since: tell the handles at the
    /// re-subscription.
    dirty: bool,
}

/// A subscription to one topic; dropping it unsubscribes (the last one
/// for a name unsubscribes this process).
pub(crate) struct Topic {
    shared: Weak<Shared>,
    name: Arc<str>,
    id: u64,
    rx: mpsc::UnboundedReceiver<TopicEvent>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

impl Topic {
    /// The next event; `None` once the backplane is gone.
    pub(crate) async fn recv(&mut self) -> Option<TopicEvent> {
        self.rx.recv().await
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut topics = lock(&shared.topics);
        let Some(entry) = topics.map.get_mut(&self.name) else {
            return;
        };
        entry.handles.retain(|(id, _)| *id != self.id);
        if entry.handles.is_empty() {
            topics.map.remove(&self.name);
            let _ = shared
                .control
                .send(super::fanout::Control::Untopic(self.name.clone()));
        }
    }
}

impl Shared {
    /// The Redis pub/sub channel of a topic.
    pub(super) fn topic_key(&self, name: &str) -> String {
        self.key("t", name)
    }

    /// Subscribes to a topic; returns once Redis confirmed the
    /// subscription (so a message published after this returns is
    /// received).
    ///
    /// # Errors
    ///
    /// The subscription was not confirmed within the timeout.
    pub(crate) async fn topic(self: &Arc<Self>, name: &str) -> Result<Topic, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, mut ready) = {
            let mut topics = lock(&self.topics);
            topics.next += 1;
            let id = topics.next;
            let name: Arc<str> = Arc::from(name);
            let entry = topics.map.entry(name.clone()).or_insert_with(|| {
                let _ = self
                    .control
                    .send(super::fanout::Control::Topic(name.clone()));
                Entry {
                    handles: Vec::new(),
                    ready: watch::channel(false).0,
                    dirty: false,
                }
            });
            entry.handles.push((id, tx));
            (id, entry.ready.subscribe())
        };
        let topic = Topic {
            shared: Arc::downgrade(self),
            name: Arc::from(name),
            id,
            rx,
        };
        let confirmed = tokio::time::timeout(self.timeout, ready.wait_for(|r| *r))
            .await
            .is_ok();
        if confirmed {
            Ok(topic)
        } else {
            Err(io("redis: the topic subscription timed out"))
        }
    }

    /// Hands a pub/sub message of a topic to its handles.
    pub(super) fn on_topic_message(&self, name: &str, payload: Bytes) {
        let mut topics = lock(&self.topics);
        if let Some(entry) = topics.map.get_mut(name) {
            entry
                .handles
                .retain(|(_, tx)| tx.send(TopicEvent::Message(payload.clone())).is_ok());
        }
    }

    /// The pub/sub connection dropped: every topic may miss messages.
    pub(super) fn on_topics_disconnected(&self) {
        for entry in lock(&self.topics).map.values_mut() {
            entry.dirty = true;
        }
    }

    /// Redis confirmed a topic's subscription (first, or again after a
    /// reconnection).
    pub(super) fn on_topic_subscribed(&self, name: &str) {
        let mut topics = lock(&self.topics);
        if let Some(entry) = topics.map.get_mut(name) {
            entry.ready.send_replace(true);
            if std::mem::take(&mut entry.dirty) {
                entry
                    .handles
                    .retain(|(_, tx)| tx.send(TopicEvent::Resubscribed).is_ok());
            }
        }
    }

    /// Whether this process still wants a topic (an unsubscription that
    /// raced a new subscription is skipped).
    pub(super) fn wants_topic(&self, name: &str) -> bool {
        lock(&self.topics).map.contains_key(name)
    }
}
