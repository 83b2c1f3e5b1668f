//! Opening a subscription: register first, then read history, then write
//! the replay and whatever arrived meanwhile, deduplicated by position; so
//! nothing is lost and nothing comes twice.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Response, StatusCode};

use super::registry::{id_tail, Conn, Encoded, Inner, Sink};
use super::stream::{Item, Queue, Subscription};
use super::{cursor, Reason};
use crate::backplane::{History, Message, Position, Replay};
use crate::body::Body;
use crate::delayed::{AbortReason, DelayedResponse, Outcome};
use crate::error::Error;
use crate::http::{lock, text, unbuffered};
use crate::sse::Event;

/// What a subscribe asks for, checked.
pub(crate) struct Ask {
    pub(crate) identity: Arc<super::Identity>,
    /// Sorted, without duplicates.
    pub(crate) channels: Arc<[Arc<str>]>,
    pub(crate) multiplexed: bool,
    /// One position per channel, in `channels` order.
    pub(crate) cursor: Option<Vec<Position>>,
    /// The connection slot taken for it.
    pub(crate) slot: Option<crate::limit::Permit>,
}

/// What a subscription starts from.
#[derive(Default)]
pub(crate) struct Start {
    /// Channels whose cursor history could not cover.
    pub(crate) gaps: Vec<Arc<str>>,
    /// Messages to write, in order (replay, then what arrived meanwhile).
    pub(crate) messages: Vec<Message>,
}

impl Inner {
    /// Reads every channel's history after the cursor.
    pub(crate) async fn histories(
        &self,
        channels: &[Arc<str>],
        cursor: Option<&[Position]>,
    ) -> Result<Vec<History>, Error> {
        let mut out = Vec::with_capacity(channels.len());
        for (i, channel) in channels.iter().enumerate() {
            let retention = self.config.namespace(channel).retention;
            let after = cursor.map(|c| c[i]);
            out.push(
                self.config
                    .backplane
                    .history(channel, after, retention)
                    .await?,
            );
        }
        Ok(out)
    }
}

/// Sets the connection's positions from the cursor and histories, writes
/// (or, for a poll, returns) what the client must get first, and goes live:
/// from then on deliveries are written directly. All under the
/// connection's lock, so no delivery can slip in between.
pub(crate) fn go_live(
    conn: &Conn,
    histories: Vec<History>,
    cursor: Option<&[Position]>,
    retry: std::time::Duration,
) -> Start {
    let mut st = lock(&conn.state);
    let mut gaps = Vec::new();
    let mut messages = Vec::new();
    for (i, history) in histories.into_iter().enumerate() {
        match (cursor, history.replay) {
            (Some(c), Replay::Messages(replay)) => {
                st.positions[i] = c[i];
                messages.extend(replay);
            }
            (Some(_), Replay::Gap) => {
                st.positions[i] = history.head;
                gaps.push(conn.channels[i].clone());
            }
            (None, _) => st.positions[i] = history.head,
        }
    }
    let start = st.positions.clone();
    messages.append(&mut st.pending);
    st.pending_bytes = 0;
    st.live = true;
    let st = &mut *st;
    // Keep only what the client has not got, advancing the positions.
    let mut fresh = Vec::with_capacity(messages.len());
    for m in messages {
        let Ok(i) = conn.channels.binary_search(&m.channel) else {
            continue;
        };
        let at = st.positions[i];
        if at.epoch == m.position.epoch && m.position.offset <= at.offset {
            continue;
        }
        st.positions[i] = m.position;
        fresh.push(m);
    }
    let first = Start {
        gaps,
        messages: fresh,
    };
    match &conn.sink {
        Sink::Sse(completion) => {
            // One write, which the queue takes however large it is: the
            // reconnection delay and starting cursor, a `gap` event if any,
            // then the messages, each with the cursor after it.
            let mut buf = BytesMut::new();
            buf.put(
                Event::new()
                    .id(cursor::format(&start))
                    .retry(retry)
                    .encode(),
            );
            st.positions.clone_from(&start);
            if !first.gaps.is_empty() {
                buf.put(
                    Event::new()
                        .event("gap")
                        .id(cursor::format(&st.positions))
                        .data(gap_data(&first.gaps))
                        .encode(),
                );
            }
            for m in &first.messages {
                let Ok(i) = conn.channels.binary_search(&m.channel) else {
                    continue;
                };
                st.positions[i] = m.position;
                let enc = Encoded::new(m);
                if conn.multiplexed {
                    buf.put(enc.body());
                    buf.put(id_tail(&st.positions));
                } else {
                    buf.put(enc.single());
                }
            }
            if completion.write(buf.freeze()).is_err() {
                st.ended = true;
            }
            Start::default()
        }
        Sink::Stream(queue) => {
            st.positions.clone_from(&start);
            if !first.gaps.is_empty() {
                queue.push_start(Item::Gap {
                    channels: first.gaps,
                    cursor: cursor::format(&st.positions),
                });
            }
            for m in first.messages {
                let Ok(i) = conn.channels.binary_search(&m.channel) else {
                    continue;
                };
                st.positions[i] = m.position;
                queue.push_start(Item::Message {
                    channel: m.channel,
                    event: m.event,
                    data: m.data,
                    cursor: cursor::format(&st.positions),
                });
            }
            Start::default()
        }
        // The positions stay past the messages: the poll answers with them.
        Sink::Poll(_) => first,
    }
}

/// The data of a `gap` event.
pub(crate) fn gap_data(channels: &[Arc<str>]) -> String {
    let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
    serde_json::json!({ "channels": names }).to_string()
}

/// Why a stream's response ended, as an unsubscribe reason (the hub's own
/// reason, if it ended it, wins in `close`).
fn reason(outcome: Outcome) -> Reason {
    match outcome {
        Outcome::Aborted(AbortReason::Shutdown) => Reason::Shutdown,
        _ => Reason::ClientGone,
    }
}

const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream; charset=utf-8");

/// `GET /sub…`: the SSE stream, a handle-mode delayed response whose
/// outcome hook closes the connection.
pub(crate) async fn sse(inner: &Arc<Inner>, parts: &Parts, ask: Ask) -> Response<Body> {
    inner.start_sweeper();
    let id = inner.next_id();
    let hub = Arc::downgrade(inner);
    // Settings made once, so a held stream keeps no copy of them.
    let (response, completion) = inner
        .sse_stream
        .clone()
        .with_request_of(&DelayedResponse::for_parts(parts))
        // Runs exactly once, when the stream is over for any reason.
        .on_outcome(move |outcome| {
            if let Some(hub) = hub.upgrade() {
                hub.close(id, reason(outcome));
            }
        })
        .handle();
    let conn = Arc::new(Conn::new(
        id,
        ask.identity,
        ask.channels,
        ask.multiplexed,
        Sink::Sse(completion),
        ask.slot,
        true,
    ));
    // Registered before anything awaits: from here on, dropping this future
    // (the client left) drops `response`, whose outcome hook closes `conn`.
    inner.register(&conn);
    match inner.histories(&conn.channels, ask.cursor.as_deref()).await {
        Ok(histories) => {
            go_live(&conn, histories, ask.cursor.as_deref(), inner.config.retry);
            // After going live, so that the stream sees its own `join`.
            let key = format!("{}-{}", inner.node, id);
            inner
                .join_presence(&conn.identity, &conn.channels, &key, None)
                .await;
            let mut res = response.await;
            // hyper keeps a response's header map for the connection's
            // next response: room for exactly these headers costs half of
            // what the map's default growth takes (≈300 bytes per stream).
            let headers = res.headers_mut();
            headers.reserve(3);
            headers.insert(CONTENT_TYPE, EVENT_STREAM);
            unbuffered(headers);
            res
        }
        Err(error) => {
            tracing::warn!(%error, "history read failed");
            drop(response);
            text(StatusCode::SERVICE_UNAVAILABLE, "history is unavailable\n")
        }
    }
}

/// [`Hub::subscribe`](super::Hub::subscribe): the same, into a queue.
pub(crate) async fn subscription(inner: &Arc<Inner>, ask: Ask) -> Result<Subscription, Error> {
    inner.start_sweeper();
    let id = inner.next_id();
    let queue = Queue::new(inner.config.queue_bytes);
    let conn = Arc::new(Conn::new(
        id,
        ask.identity,
        ask.channels.clone(),
        true,
        Sink::Stream(queue.clone()),
        ask.slot,
        true,
    ));
    inner.register(&conn);
    // Made now, so that an early return or a cancelled await unsubscribes.
    let subscription = Subscription {
        queue: queue.clone(),
        hub: Arc::downgrade(inner),
        conn: id,
        channels: ask.channels,
    };
    let histories = inner
        .histories(&conn.channels, ask.cursor.as_deref())
        .await?;
    go_live(&conn, histories, ask.cursor.as_deref(), inner.config.retry);
    // After going live, so that the subscriber sees its own `join`.
    let key = format!("{}-{}", inner.node, id);
    inner
        .join_presence(&conn.identity, &conn.channels, &key, None)
        .await;
    Ok(subscription)
}
