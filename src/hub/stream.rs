//! In-process subscriptions: [`Subscription`], a `Stream` of [`Item`]s.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::Stream;

use super::registry::Inner;
use super::Reason;
use crate::http::lock;

/// What a [`Subscription`] yields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// A message of one channel (or a `join`/`leave` event, named in
    /// `event`).
    Message {
        /// Its channel.
        channel: Arc<str>,
        /// `None` for published data; `join` or `leave` for presence events.
        event: Option<Arc<str>>,
        /// The body, byte for byte.
        data: Bytes,
        /// The cursor after this message, covering every channel of the
        /// subscription: subscribe again with it to go on from here.
        cursor: String,
    },
    /// History could not cover the cursor for these channels (too old, or
    /// another epoch): their missed messages are not replayed, and they go
    /// on live from here.
    Gap {
        /// The channels concerned.
        channels: Vec<Arc<str>>,
        /// The cursor from here on.
        cursor: String,
    },
    /// A message of [`Hub::broadcast`](super::Hub::broadcast).
    Broadcast {
        /// The body.
        data: Bytes,
    },
    /// The subscription read too slowly; it is over. Subscribe again with
    /// the last cursor to get a replay or a gap.
    Overflow,
    /// The user was kicked ([`Hub::kick`](super::Hub::kick)); it is over.
    Kicked,
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Item::Message { data, cursor, .. } => data.len() + cursor.len(),
            Item::Broadcast { data } => data.len(),
            Item::Gap { cursor, .. } => cursor.len(),
            Item::Overflow | Item::Kicked => 0,
        }
    }
}

/// The bounded queue between delivery and a [`Subscription`].
pub(crate) struct Queue {
    state: Mutex<QueueState>,
}

struct QueueState {
    items: VecDeque<Item>,
    bytes: usize,
    max: usize,
    closed: bool,
    waker: Option<Waker>,
}

/// The queue is full: the subscriber is too slow.
pub(crate) struct Full;

impl Queue {
    pub(crate) fn new(max: usize) -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                bytes: 0,
                max,
                closed: false,
                waker: None,
            }),
        })
    }

    /// Queues `item`; one item is always taken when nothing waits.
    pub(crate) fn push(&self, item: Item) -> Result<(), Full> {
        let size = item.size();
        let waker = {
            let mut st = lock(&self.state);
            if st.closed {
                return Ok(());
            }
            if !st.items.is_empty() && st.bytes + size > st.max {
                return Err(Full);
            }
            st.bytes += size;
            st.items.push_back(item);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `item` whatever the limit (the replay at the start).
    pub(crate) fn push_start(&self, item: Item) {
        let mut st = lock(&self.state);
        st.bytes += item.size();
        st.items.push_back(item);
        if let Some(w) = st.waker.take() {
            drop(st);
            w.wake();
        }
    }

    /// Ends the queue, after `last` (past the limit) if given.
    pub(crate) fn close(&self, last: Option<Item>) {
        let waker = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            st.closed = true;
            if let Some(item) = last {
                st.items.push_back(item);
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// An in-process subscription from [`Hub::subscribe`](super::Hub::subscribe):
/// a `Stream` of [`Item`]s that ends after [`Item::Overflow`] or
/// [`Item::Kicked`]. Dropping it unsubscribes (reason
/// [`Reason::ClientGone`]).
///
/// Delivery never waits for it: it has a bounded queue (the hub's
/// [`queue_bytes`](super::Builder::queue_bytes)), and one that overflows is
/// over.
pub struct Subscription {
    pub(crate) queue: Arc<Queue>,
    pub(crate) hub: Weak<Inner>,
    pub(crate) conn: u64,
    pub(crate) channels: Arc<[Arc<str>]>,
}

impl Subscription {
    /// The channels, sorted; cursors cover them in this order.
    pub fn channels(&self) -> &[Arc<str>] {
        &self.channels
    }
}

impl Stream for Subscription {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut st = lock(&self.queue.state);
        if let Some(item) = st.items.pop_front() {
            st.bytes = st.bytes.saturating_sub(item.size());
            return Poll::Ready(Some(item));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.close(self.conn, Reason::ClientGone);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}
