//! This node's connections, and the delivery of messages to them.
//!
//! Locks, never held across an `.await`: `conns` (every open connection),
//! `channels` (channel → its local subscribers, each behind a lock of its
//! own), and one per connection. The order is `channels` → a channel's
//! subscribers → a connection. Delivery runs inside the backplane's
//! publish (which keeps a channel's messages in order), so nothing it does
//! calls back into the backplane: closing a connection that overflowed is
//! deferred to the sweeper.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use tokio::sync::Notify;

use super::auth::Identity;
use super::builder::Config;
use super::channel::BROADCAST;
use super::cursor;
use super::presence::Sweeper;
use super::stats::Counters;
use super::stream::{Item, Queue};
use super::Reason;
use crate::backplane::{Deliver, Message, NodeId, Position};
use crate::delayed::{Completion, DelayedResponse, Heartbeat};
use crate::http::lock;
use crate::limit::{PerClient, Permit, RateLimit};
use crate::sse::Event;

pub(crate) type Subscribers = Mutex<HashMap<u64, Arc<Conn>>>;

/// The hub's state on this node.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) node: NodeId,
    pub(crate) channels: Mutex<HashMap<Arc<str>, Arc<Subscribers>>>,
    pub(crate) conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    pub(crate) publish_rate: Option<RateLimit>,
    pub(crate) connect_rate: Option<RateLimit>,
    /// Open connections per identity.
    pub(crate) connections: Arc<PerClient>,
    pub(crate) counters: Counters,
    /// Connections that overflowed during a delivery, to close outside it.
    pub(crate) deferred: Mutex<Vec<u64>>,
    pub(crate) sweeper: Sweeper,
    pub(crate) polls: super::poll::Sessions,
    /// An SSE stream's settings, made once (each stream adds its request's
    /// part and its outcome hook).
    pub(crate) sse_stream: DelayedResponse,
}

/// Where a connection's events go.
pub(crate) enum Sink {
    /// An SSE stream: a handle-mode delayed response.
    Sse(Completion),
    /// An in-process [`Subscription`](super::Subscription).
    Stream(Arc<Queue>),
    /// A long-poll request: messages gather in `pending`.
    Poll(Arc<Notify>),
}

/// One open connection: a stream, a subscription or a waiting poll.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) identity: Arc<Identity>,
    /// Sorted and without duplicates; cursors follow this order.
    pub(crate) channels: Arc<[Arc<str>]>,
    pub(crate) multiplexed: bool,
    pub(crate) sink: Sink,
    pub(crate) state: Mutex<ConnState>,
    /// Holds a connection slot of this identity (taken and dropped on
    /// close: the `Conn` itself may live on a little in its stream).
    pub(crate) slot: Mutex<Option<Permit>>,
    /// Counts for presence and the hooks (a poll request does not: its
    /// session does).
    pub(crate) session: bool,
}

pub(crate) struct ConnState {
    /// Where the client is, per channel.
    pub(crate) positions: Vec<Position>,
    /// False while history is read: deliveries wait in `pending`.
    pub(crate) live: bool,
    pub(crate) pending: Vec<Message>,
    pub(crate) pending_bytes: usize,
    /// Its sink has ended: nothing more is written.
    pub(crate) ended: bool,
    /// Why the hub ended it (overflow, kick), which wins over the reason the
    /// response reports afterwards.
    pub(crate) reason: Option<Reason>,
}

/// The result of offering a message to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Sent,
    Skipped,
    Overflow,
}

/// A message encoded at most once per stream kind, whatever the number of
/// subscribers.
pub(crate) struct Encoded<'a> {
    pub(crate) message: &'a Message,
    single: OnceCell<Bytes>,
    body: OnceCell<Bytes>,
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(message: &'a Message) -> Self {
        Encoded {
            message,
            single: OnceCell::new(),
            body: OnceCell::new(),
        }
    }

    /// The whole event of a single-channel stream: its `id:` is the
    /// channel's position alone, the same for every such stream.
    pub(crate) fn single(&self) -> Bytes {
        self.single
            .get_or_init(|| {
                let m = self.message;
                let mut e = Event::new();
                if let Some(name) = &m.event {
                    e = e.event(&**name);
                }
                e.id(cursor::format(&[m.position])).data(text(m)).encode()
            })
            .clone()
    }

    /// A multiplexed stream's event without its `id:` line and final blank
    /// line (which depend on the stream): `event:` names the channel.
    pub(crate) fn body(&self) -> Bytes {
        self.body
            .get_or_init(|| {
                let m = self.message;
                let name = m.event.as_deref().unwrap_or(&m.channel);
                let all = Event::new().event(name).data(text(m)).encode();
                all.slice(..all.len() - 1)
            })
            .clone()
    }
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.data).into_owned()
}

/// `id: {cursor}` and the blank line that dispatches the event.
pub(crate) fn id_tail(positions: &[Position]) -> Bytes {
    Bytes::from(format!("id: {}\n\n", cursor::format(positions)))
}

/// The last event of a stream that read too slowly.
pub(crate) fn overflow_event() -> Bytes {
    Event::new()
        .event("overflow")
        .data(r#"{"reason":"slow consumer"}"#)
        .encode()
}

fn concat(parts: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}

impl Conn {
    pub(crate) fn new(
        id: u64,
        identity: Arc<Identity>,
        channels: Arc<[Arc<str>]>,
        multiplexed: bool,
        sink: Sink,
        slot: Option<Permit>,
        session: bool,
    ) -> Conn {
        let n = channels.len();
        Conn {
            id,
            identity,
            channels,
            multiplexed,
            sink,
            state: Mutex::new(ConnState {
                positions: vec![
                    Position {
                        epoch: 0,
                        offset: 0
                    };
                    n
                ],
                live: false,
                pending: Vec::new(),
                pending_bytes: 0,
                ended: false,
                reason: None,
            }),
            slot: Mutex::new(slot),
            session,
        }
    }

    /// Offers `m` (of one of its channels) to this connection.
    pub(crate) fn offer(&self, enc: &Encoded<'_>, queue_bytes: usize) -> Offer {
        let m = enc.message;
        let mut st = lock(&self.state);
        if st.ended {
            return Offer::Skipped;
        }
        let Ok(i) = self.channels.binary_search(&m.channel) else {
            return Offer::Skipped;
        };
        if !st.live || matches!(self.sink, Sink::Poll(_)) {
            if st.live && is_old(st.positions[i], m.position) {
                return Offer::Skipped;
            }
            if !st.pending.is_empty() && st.pending_bytes + m.data.len() > queue_bytes {
                // A poll answers with what it has; its next poll replays
                // the rest from history. A stream being replayed overflows.
                if matches!(self.sink, Sink::Poll(_)) {
                    return Offer::Skipped;
                }
                return self.overflow(&mut st);
            }
            st.pending_bytes += m.data.len();
            st.pending.push(m.clone());
            if st.live {
                st.positions[i] = m.position;
            }
            if let (true, Sink::Poll(notify)) = (st.live, &self.sink) {
                notify.notify_one();
            }
            return Offer::Sent;
        }
        if is_old(st.positions[i], m.position) {
            return Offer::Skipped;
        }
        self.write(&mut st, i, enc)
    }

    fn write(&self, st: &mut ConnState, i: usize, enc: &Encoded<'_>) -> Offer {
        let m = enc.message;
        match &self.sink {
            Sink::Sse(completion) if !self.multiplexed => match completion.write(enc.single()) {
                Ok(()) => {
                    st.positions[i] = m.position;
                    Offer::Sent
                }
                Err(e) if e.is_limit() => self.overflow(st),
                Err(_) => {
                    st.ended = true;
                    Offer::Skipped
                }
            },
            Sink::Sse(completion) => {
                match completion.write(enc.body()) {
                    Ok(()) => {}
                    Err(e) if e.is_limit() => return self.overflow(st),
                    Err(_) => {
                        st.ended = true;
                        return Offer::Skipped;
                    }
                }
                st.positions[i] = m.position;
                let tail = id_tail(&st.positions);
                match completion.write(tail.clone()) {
                    Ok(()) => Offer::Sent,
                    Err(e) if e.is_limit() => {
                        // The body is queued: finish its event, then end.
                        st.ended = true;
                        st.reason = Some(Reason::SlowConsumer);
                        completion.end(concat(&[&tail, &overflow_event()]));
                        Offer::Overflow
                    }
                    Err(_) => {
                        st.ended = true;
                        Offer::Skipped
                    }
                }
            }
            Sink::Stream(queue) => {
                let before = st.positions[i];
                st.positions[i] = m.position;
                let item = Item::Message {
                    channel: m.channel.clone(),
                    event: m.event.clone(),
                    data: m.data.clone(),
                    cursor: cursor::format(&st.positions),
                };
                match queue.push(item) {
                    Ok(()) => Offer::Sent,
                    Err(_) => {
                        st.positions[i] = before;
                        self.overflow(st)
                    }
                }
            }
            Sink::Poll(_) => Offer::Skipped,
        }
    }

    /// Ends the sink after `event: overflow`.
    fn overflow(&self, st: &mut ConnState) -> Offer {
        st.ended = true;
        st.reason = Some(Reason::SlowConsumer);
        match &self.sink {
            Sink::Sse(completion) => {
                completion.end(overflow_event());
            }
            Sink::Stream(queue) => queue.close(Some(Item::Overflow)),
            Sink::Poll(_) => {}
        }
        Offer::Overflow
    }

    /// Ends the sink for `reason` (unless it already ended), with the event
    /// that tells the client.
    pub(crate) fn end(&self, reason: Reason) {
        let mut st = lock(&self.state);
        if st.reason.is_none() {
            st.reason = Some(reason);
        }
        if std::mem::replace(&mut st.ended, true) {
            return;
        }
        match &self.sink {
            Sink::Sse(completion) => {
                let last = match reason {
                    Reason::Kicked => Event::new().event("kicked").data("{}").encode(),
                    _ => Bytes::new(),
                };
                completion.end(last);
            }
            Sink::Stream(queue) => queue.close(match reason {
                Reason::Kicked => Some(Item::Kicked),
                _ => None,
            }),
            Sink::Poll(notify) => notify.notify_one(),
        }
    }
}

/// Has the client already got the message at `m` (same epoch, not after
/// its position)?
fn is_old(at: Position, m: Position) -> bool {
    at.epoch == m.epoch && m.offset <= at.offset
}

impl Inner {
    pub(crate) fn new(config: Config, node: NodeId) -> Inner {
        Inner {
            publish_rate: config.publish_rate.map(RateLimit::new),
            connect_rate: config.connect_rate.map(RateLimit::new),
            connections: PerClient::new(config.max_connections.unwrap_or(usize::MAX)),
            node,
            channels: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            deferred: Mutex::new(Vec::new()),
            sweeper: Sweeper::default(),
            polls: super::poll::Sessions::default(),
            sse_stream: DelayedResponse::new()
                .heartbeat(Heartbeat::sse(config.keep_alive))
                .max_buffered(config.queue_bytes)
                .pending_status(StatusCode::OK),
            config,
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `conn` to its channels (and to the open connections if it is a
    /// session), then tells the backplane about channels new to this node.
    pub(crate) fn register(&self, conn: &Arc<Conn>) {
        if conn.session {
            lock(&self.conns).insert(conn.id, conn.clone());
        }
        let mut new = Vec::new();
        {
            let mut channels = lock(&self.channels);
            for ch in conn.channels.iter() {
                let subs = channels.entry(ch.clone()).or_insert_with(|| {
                    new.push(ch.clone());
                    Arc::new(Mutex::new(HashMap::new()))
                });
                lock(subs).insert(conn.id, conn.clone());
            }
        }
        for ch in new {
            self.config.backplane.listen(&ch);
        }
    }

    /// Removes `conn` from its channels.
    pub(crate) fn unregister(&self, conn: &Conn) {
        let mut gone = Vec::new();
        {
            let mut channels = lock(&self.channels);
            for ch in conn.channels.iter() {
                let Some(subs) = channels.get(ch) else {
                    continue;
                };
                let empty = {
                    let mut subs = lock(subs);
                    subs.remove(&conn.id);
                    subs.is_empty()
                };
                if empty {
                    channels.remove(ch);
                    gone.push(ch.clone());
                }
            }
        }
        for ch in gone {
            self.config.backplane.unlisten(&ch);
        }
    }

    /// Closes connection `id` for `reason`, once: its sink ends, it leaves
    /// its channels and presence, its slot is freed, and `on_unsubscribe`
    /// runs. Later calls for the same id do nothing.
    pub(crate) fn close(&self, id: u64, reason: Reason) {
        let Some(conn) = lock(&self.conns).remove(&id) else {
            return;
        };
        conn.end(reason);
        let reason = lock(&conn.state).reason.unwrap_or(reason);
        self.unregister(&conn);
        self.leave_presence(
            &conn.identity,
            &conn.channels,
            &format!("{}-{}", self.node, id),
        );
        drop(lock(&conn.slot).take());
        tracing::debug!(conn = id, ?reason, "hub connection closed");
        if let Some(hook) = &self.config.on_unsubscribe {
            hook(&conn.identity, &conn.channels, reason);
        }
    }

    /// Closes the connections that overflowed during deliveries.
    pub(crate) fn close_deferred(&self) {
        let ids = std::mem::take(&mut *lock(&self.deferred));
        for id in ids {
            self.close(id, Reason::SlowConsumer);
        }
    }

    /// Delivers a broadcast to every open connection once.
    fn deliver_broadcast(&self, m: &Message) -> usize {
        let conns: Vec<Arc<Conn>> = lock(&self.conns).values().cloned().collect();
        let data = text(m);
        let single = Event::new().data(data.clone()).encode();
        let single = single.slice(..single.len() - 1);
        let multi = Event::new().event("broadcast").data(data).encode();
        let multi = multi.slice(..multi.len() - 1);
        let mut count = 0;
        for conn in conns {
            let st = lock(&conn.state);
            if st.ended || !st.live {
                continue;
            }
            let sent = match &conn.sink {
                Sink::Sse(c) => {
                    let body = if conn.multiplexed { &multi } else { &single };
                    // The current cursor: a broadcast moves no position.
                    c.write(concat(&[body, &id_tail(&st.positions)])).is_ok()
                }
                Sink::Stream(q) => q
                    .push(Item::Broadcast {
                        data: m.data.clone(),
                    })
                    .is_ok(),
                Sink::Poll(_) => false,
            };
            count += usize::from(sent);
        }
        count
    }
}

impl Deliver for Inner {
    fn deliver(&self, m: &Message) -> usize {
        let count = if &*m.channel == BROADCAST {
            self.deliver_broadcast(m)
        } else {
            let subs = lock(&self.channels).get(&m.channel).cloned();
            let Some(subs) = subs else {
                return 0;
            };
            let enc = Encoded::new(m);
            let mut count = 0;
            let mut overflowed = Vec::new();
            for conn in lock(&subs).values() {
                match conn.offer(&enc, self.config.queue_bytes) {
                    Offer::Sent => count += 1,
                    Offer::Skipped => {}
                    Offer::Overflow => overflowed.push(conn.id),
                }
            }
            if !overflowed.is_empty() {
                tracing::debug!(channel = %m.channel, n = overflowed.len(), "slow consumers cut off");
                lock(&self.deferred).extend(overflowed);
                self.sweeper.wake();
            }
            count
        };
        self.counters.count_out(count);
        count
    }
}
