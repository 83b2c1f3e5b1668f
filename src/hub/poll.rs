//! Long-poll: `GET /poll…?cursor=…` answers at once when messages wait,
//! else holds the request (the core's `start` mode, heartbeat spaces) until
//! one arrives or `Prefer: wait` runs out.
//!
//! A long-poll client is a *session*: its identity and channels. It counts
//! as one connection (presence, the connection cap, the hooks) from its
//! first poll until no poll has come for a lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::open::{gap_data, go_live, Ask};
use super::presence::background;
use super::registry::{Conn, Inner, Sink};
use super::{cursor, Identity, Reason};
use crate::backplane::{Message, Presence};
use crate::body::Body;
use crate::delayed::{AbortReason, DelayedResponse, Heartbeat, Outcome};
use crate::http::{lock, text, Prefer};
use crate::limit::{ClientKey, Permit};

/// Long-poll sessions by (identity, channels).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<(ClientKey, String), Session>>,
}

pub(crate) struct Session {
    id: u64,
    pub(crate) identity: Arc<Identity>,
    channels: Arc<[Arc<str>]>,
    slot: Option<Permit>,
    /// Polls in flight.
    active: usize,
    /// When it is over, if no poll is in flight by then.
    expires: Instant,
}

impl Sessions {
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub(crate) fn users(&self) -> Vec<String> {
        lock(&self.map)
            .values()
            .filter_map(|s| s.identity.user.clone())
            .collect()
    }

    pub(crate) fn contains(&self, key: &(ClientKey, String)) -> bool {
        lock(&self.map).contains_key(key)
    }
}

pub(crate) fn session_key(identity: &Identity, channels: &[Arc<str>]) -> (ClientKey, String) {
    (identity.client_key(), channels.join(","))
}

fn answer(messages: &[Message], cursor: &str, gap: bool) -> Response<Body> {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut v = json!({
                "channel": &*m.channel,
                "id": cursor::format(&[m.position]),
                "data": String::from_utf8_lossy(&m.data),
            });
            if let Some(event) = &m.event {
                v["event"] = json!(&**event);
            }
            v
        })
        .collect();
    let body = json!({"messages": messages, "cursor": cursor, "gap": gap}).to_string();
    let mut res = Response::new(Body::from(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

impl Inner {
    /// Starts or renews the session of a poll; `false` when
    /// `on_subscribe` refused a new one (its slot is then released).
    pub(crate) fn poll_session(&self, ask: &mut Ask) -> Result<u64, ()> {
        let key = session_key(&ask.identity, &ask.channels);
        let wait_lease = self.config.max_wait + self.config.poll_lease;
        let expires = Instant::now() + wait_lease;
        let mut map = lock(&self.polls.map);
        if let Some(session) = map.get_mut(&key) {
            session.active += 1;
            session.expires = session.expires.max(expires);
            // The session holds a slot already.
            ask.slot = None;
            return Ok(session.id);
        }
        drop(map);
        if let Some(hook) = &self.config.on_subscribe {
            if !hook(&ask.identity, &ask.channels) {
                ask.slot = None;
                return Err(());
            }
        }
        let id = self.next_id();
        let session = Session {
            id,
            identity: ask.identity.clone(),
            channels: ask.channels.clone(),
            slot: ask.slot.take(),
            active: 1,
            expires,
        };
        lock(&self.polls.map).insert(key, session);
        self.sweeper.at(expires);
        Ok(id)
    }

    /// A poll of the session is over: its lease runs from now, or the
    /// session ends at once on shutdown.
    fn poll_done(&self, identity: &Identity, channels: &[Arc<str>], shutdown: bool) {
        let key = session_key(identity, channels);
        let lease = self.config.poll_lease;
        let ended = {
            let mut map = lock(&self.polls.map);
            let Some(session) = map.get_mut(&key) else {
                return;
            };
            session.active = session.active.saturating_sub(1);
            session.expires = Instant::now() + lease;
            if shutdown {
                map.remove(&key)
            } else {
                None
            }
        };
        match ended {
            Some(session) => self.end_session(session, Reason::Shutdown),
            None => {
                self.sweeper.at(Instant::now() + lease);
                self.renew_poll_presence(identity, channels, lease);
            }
        }
    }

    fn renew_poll_presence(&self, identity: &Identity, channels: &[Arc<str>], lease: Duration) {
        let Some(user) = identity.user.clone() else {
            return;
        };
        let connection = format!("{}-poll-{}", self.node, channels.join(","));
        for channel in channels
            .iter()
            .filter(|c| self.config.namespace(c).presence)
        {
            let backplane = self.config.backplane.clone();
            let (channel, user, connection) = (channel.clone(), user.clone(), connection.clone());
            background(async move {
                let entry = Presence {
                    channel: &channel,
                    user: &user,
                    connection: &connection,
                    info: None,
                    lease: Some(lease),
                };
                let _ = backplane.presence_join(entry).await;
            });
        }
        self.sweeper.at(Instant::now() + lease);
    }

    fn end_session(&self, session: Session, reason: Reason) {
        drop(session.slot);
        tracing::debug!(session = session.id, ?reason, "long-poll session over");
        if let Some(hook) = &self.config.on_unsubscribe {
            hook(&session.identity, &session.channels, reason);
        }
    }

    /// Ends the sessions whose lease ran out (their presence leases run out
    /// in the backplane at the same time).
    pub(crate) fn expire_polls(&self) {
        let now = Instant::now();
        let expired: Vec<Session> = {
            let mut map = lock(&self.polls.map);
            let keys: Vec<_> = map
                .iter()
                .filter(|(_, s)| s.active == 0 && s.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).collect()
        };
        for session in expired {
            self.end_session(session, Reason::ClientGone);
        }
    }

    /// Ends `user`'s sessions (kicked); returns how many.
    pub(crate) fn kick_polls(&self, user: &str) -> usize {
        let kicked: Vec<Session> = {
            let mut map = lock(&self.polls.map);
            let keys: Vec<_> = map
                .iter()
                .filter(|(_, s)| s.identity.user_id() == Some(user))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).collect()
        };
        let n = kicked.len();
        for session in kicked {
            self.end_session(session, Reason::Kicked);
        }
        n
    }
}

/// `GET /poll…`, once the request is checked and its session started.
pub(crate) async fn poll(inner: &Arc<Inner>, parts: &Parts, ask: Ask) -> Response<Body> {
    inner.start_sweeper();
    let wait = Prefer::from_headers(&parts.headers)
        .wait
        .unwrap_or(inner.config.max_wait)
        .min(inner.config.max_wait);
    let notify = Arc::new(Notify::new());
    let conn = Arc::new(Conn::new(
        inner.next_id(),
        ask.identity.clone(),
        ask.channels.clone(),
        ask.multiplexed,
        Sink::Poll(notify.clone()),
        None,
        false,
    ));
    inner.register(&conn);
    let connection = format!("{}-poll-{}", inner.node, conn.channels.join(","));
    inner
        .join_presence(
            &conn.identity,
            &conn.channels,
            &connection,
            Some(wait + inner.config.poll_lease),
        )
        .await;
    let histories = match inner.histories(&conn.channels, ask.cursor.as_deref()).await {
        Ok(h) => h,
        Err(error) => {
            tracing::warn!(%error, "history read failed");
            inner.unregister(&conn);
            inner.poll_done(&conn.identity, &conn.channels, false);
            return text(StatusCode::SERVICE_UNAVAILABLE, "history is unavailable\n");
        }
    };
    let first = go_live(&conn, histories, ask.cursor.as_deref(), inner.config.retry);
    let now_cursor = cursor::format(&lock(&conn.state).positions);
    if !first.messages.is_empty() || !first.gaps.is_empty() {
        inner.unregister(&conn);
        inner.poll_done(&conn.identity, &conn.channels, false);
        if !first.gaps.is_empty() {
            tracing::debug!(gap = %gap_data(&first.gaps), "long-poll gap");
        }
        return answer(&first.messages, &now_cursor, !first.gaps.is_empty());
    }
    let hub = Arc::downgrade(inner);
    let waiter = conn.clone();
    let timeout_cursor = now_cursor.clone();
    DelayedResponse::for_parts(parts)
        .json()
        .status(StatusCode::OK)
        .pending_status(StatusCode::OK)
        .heartbeat(Heartbeat::every(inner.config.keep_alive))
        .timeout(wait)
        .on_timeout(move || answer(&[], &timeout_cursor, false))
        .on_outcome(move |outcome| {
            if let Some(hub) = hub.upgrade() {
                hub.unregister(&waiter);
                let shutdown = outcome == Outcome::Aborted(AbortReason::Shutdown);
                hub.poll_done(&waiter.identity, &waiter.channels, shutdown);
            }
        })
        .start(async move {
            loop {
                notify.notified().await;
                let mut st = lock(&conn.state);
                if st.pending.is_empty() && !st.ended {
                    continue;
                }
                st.ended = true;
                st.pending_bytes = 0;
                let messages = std::mem::take(&mut st.pending);
                return answer(&messages, &cursor::format(&st.positions), false);
            }
        })
        .await
}
