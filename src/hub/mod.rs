//! Pub/sub channels with history, replay, presence and auth, over SSE and
//! long-poll: the hub.
//!
//! Clients subscribe to channels over Server-Sent Events (or long-poll),
//! anyone allowed publishes with a `POST`, and the application publishes
//! from Rust. Every event carries a cursor; a client that reconnects with it
//! gets what it missed, in order, exactly once, or an explicit `gap`.
//!
//! Every stream is a handle-mode [`DelayedResponse`](crate::DelayedResponse)
//! with [`Heartbeat::sse`](crate::Heartbeat::sse), whose outcome hook closes
//! the connection: a client that leaves, a failed heartbeat write (a client
//! that vanished silently) and a server shutdown all end up there. History,
//! presence and fan-out sit behind a [`Backplane`](crate::backplane::Backplane)
//! (in memory by default).
//!
//! # Routes ([`Service`])
//!
//! | request | answer |
//! |---|---|
//! | `POST /pub/{channel}` (body: the data) | `201` when at least one subscriber got it, `202` when none did; JSON `{"id": …, "subscribers": n}` |
//! | `GET /sub/{channel}` | an SSE stream of one channel; events are `message` |
//! | `GET /sub?channel=a&channel=b` | one stream of several channels (at most 32); `event:` names the channel |
//! | `GET /poll/{channel}?cursor=…`, `GET /poll?channel=…&cursor=…` | long-poll: `200` `{"messages": [...], "cursor": "...", "gap": bool}` |
//! | `GET /presence/{channel}` | `200` `{"channel": …, "users": [{"user", "connections", "info"}]}` |
//! | `GET /stats` | `200` [`Stats`] as JSON (open to anyone: mount the service behind your own auth to hide it) |
//!
//! Refusals are one line of `text/plain`: a bad channel name, too many
//! channels, a reserved name on a multiplexed stream (`message`, `join`,
//! `leave`, `gap`, `overflow`, `broadcast`, `kicked`), a malformed cursor,
//! or a publish body that is not UTF-8: `400`; bad credentials or none where
//! some are needed: `401`; not allowed: `403`; no presence in that
//! namespace, or an unknown path: `404`; a wrong method: `405` with
//! `Allow`; a body over the cap: `413`; over a rate or connection limit:
//! `429` with `Retry-After`; a backplane that cannot be reached: `503`.
//!
//! # Streams
//!
//! A stream starts with `retry:` and an `id:` (its starting cursor, so a
//! browser that reconnects before any event still resumes from there).
//! Then, on a reconnect (`Last-Event-ID`) or a first connect with
//! `?last_event_id=`: an `event: gap` with `{"channels": [...]}` for the
//! channels whose history cannot cover the cursor (too old, or another
//! epoch: their missed messages are *not* replayed), then every missed
//! message of the others, in order, then live events. Each event's `id:` is
//! the cursor after it. `data:` is the published body (a CR or CRLF in it
//! arrives as LF: SSE cannot carry CR).
//!
//! Presence events, where the namespace asks ([`Namespace::join_leave`]),
//! are `join` and `leave` with `{"channel", "user", "info"}`. A stream that
//! reads too slowly gets `event: overflow` and ends; nobody else waits for
//! it. [`Hub::kick`] ends a user's streams after `event: kicked`.
//!
//! # Channels
//!
//! A name is 1–128 characters of `[A-Za-z0-9_.:@-]`. `user:{id}` is user
//! `id`'s own channel; `private:…` channels need a grant from the
//! [`Authorizer`]. Namespaces, by prefix, set history, presence, join/leave
//! events, anonymous access and who may publish ([`Namespace`]).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::hub::{Hub, Namespace, Publishers};
//!
//! # async fn run() -> Result<(), delayed_response::Error> {
//! let hub = Hub::builder()
//!     .namespace("chat.", Namespace::new().join_leave(true).publishers(Publishers::Users))
//!     .grace(Duration::from_secs(5))
//!     .build();
//! let published = hub.publish("news", "hello").await?;
//! assert_eq!(published.subscribers, 0);
//! // Serve it: `server::serve(listener, hub.service(), signal)`, or under
//! // axum: `Router::new().nest_service("/hub", hub.service())`.
//! # Ok(()) }
//! ```
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | history per channel ([`Namespace::history`]) | 100 messages, 5 minutes |
//! | presence / join and leave events | on / off |
//! | anonymous subscribers | public channels yes, `user:` and `private:` no |
//! | who may publish over HTTP ([`Publishers`]) | the authorized |
//! | keep-alive ([`Builder::keep_alive`]) | 15 s |
//! | per-stream queue ([`Builder::queue_bytes`]) | 256 KiB |
//! | channels per subscribe ([`Builder::max_channels`]) | 32 |
//! | publish body ([`Builder::body_limit`]) | 64 KiB |
//! | long-poll wait cap ([`Builder::max_wait`]) | 25 s |
//! | long-poll lease ([`Builder::poll_lease`]) | 10 s |
//! | presence grace window ([`Builder::grace`]) | 5 s |
//! | browser reconnection delay ([`Builder::retry`]) | 1 s |
//! | publishes per identity ([`Builder::publish_rate`]) | 20/s, bursts of 40 |
//! | connects per identity ([`Builder::connect_rate`]) | 10/s, bursts of 30 |
//! | open connections per identity ([`Builder::max_connections`]) | 64 |
//!
//! An identity is the user, else the request's
//! [`ClientKey`](crate::limit::ClientKey): one the application put in the
//! request's extensions, else the client's IP address (when the server
//! passes it; otherwise all anonymous clients share one). The rates are
//! [`limit::Rate`](crate::limit::Rate)s, counted by the backplane when it
//! shares them across instances
//! ([`Backplane::take_token`](crate::backplane::Backplane::take_token): the
//! Redis backplane does), else by each hub. The open-connection cap counts
//! per instance.

mod auth;
mod builder;
mod channel;
mod cursor;
#[cfg(feature = "jwt")]
mod jwt;
mod open;
mod poll;
mod presence;
mod registry;
mod service;
mod stats;
mod stream;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use auth::{Anonymous, Authorizer, Identity, Unauthorized};
pub use builder::{
    Builder, DEFAULT_BODY_LIMIT, DEFAULT_GRACE, DEFAULT_MAX_CHANNELS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_WAIT, DEFAULT_POLL_LEASE, DEFAULT_QUEUE_BYTES, DEFAULT_RETRY,
};
pub use channel::{Namespace, Publishers, DEFAULT_HISTORY, DEFAULT_HISTORY_AGE};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthorizer, DEFAULT_COOKIE};
pub use service::{ResponseFuture, Service};
pub use stats::Stats;
pub use stream::{Item, Subscription};

pub use crate::backplane::Member;
use crate::error::{Error, Kind};
use crate::http::lock;
use registry::Inner;

/// Why a connection ended, as told to [`Builder::on_unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The client left (closed the stream, stopped polling, or vanished and
    /// a heartbeat write failed).
    ClientGone,
    /// The server shut down.
    Shutdown,
    /// It read too slowly and its queue overflowed.
    SlowConsumer,
    /// [`Hub::kick`].
    Kicked,
}

/// What a publish did: the message's id (a one-channel cursor) and how many
/// subscribers on this node got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message's id.
    pub id: String,
    /// Local subscribers that got it.
    pub subscribers: usize,
}

/// A hub: channels, subscribers, presence. Cheap to clone; every clone is
/// the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// A hub with the defaults.
    pub fn new() -> Hub {
        Hub::builder().build()
    }

    /// A builder for the settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn from_config(config: builder::Config) -> Hub {
        let backplane = config.backplane.clone();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let node = backplane.attach(weak.clone());
            Inner::new(config, node)
        });
        inner.start_sweeper();
        Hub { inner }
    }

    /// The HTTP service of this hub (see the [module docs](self)).
    pub fn service(&self) -> Service {
        Service::new(self.inner.clone())
    }

    /// Publishes `data` (UTF-8 text) to `channel`. The application may
    /// publish anywhere; no limit applies.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid`] for a bad channel name or data that is not
    /// UTF-8; [`Error::is_io`] when the backplane cannot be reached.
    pub async fn publish(&self, channel: &str, data: impl Into<Bytes>) -> Result<Published, Error> {
        if !channel::valid(channel) {
            return Err(Error::with(Kind::Invalid, "bad channel name"));
        }
        self.inner.publish(channel, data.into()).await
    }

    /// Publishes to user `user`'s channel, `user:{user}`.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_to_user(
        &self,
        user: &str,
        data: impl Into<Bytes>,
    ) -> Result<Published, Error> {
        self.publish(&format!("user:{user}"), data).await
    }

    /// Sends `data` to every open stream and subscription once (on every
    /// node), whatever its channels. It is not kept in history, and moves
    /// no cursor. Its event is `message` on single-channel streams and
    /// `broadcast` on multiplexed ones.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn broadcast(&self, data: impl Into<Bytes>) -> Result<Published, Error> {
        self.inner.publish(channel::BROADCAST, data.into()).await
    }

    /// Subscribes in process, from `cursor` (an `id` from an earlier
    /// [`Item`]) or from now. The subscription is anonymous, not limited,
    /// and runs the hooks like any other.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid`] for a bad channel name, no channel, too
    /// many, a malformed cursor, or a refusal by `on_subscribe`;
    /// [`Error::is_io`] when the backplane cannot be reached.
    pub async fn subscribe(
        &self,
        channels: &[&str],
        cursor: Option<&str>,
    ) -> Result<Subscription, Error> {
        self.subscribe_as(Identity::anonymous(), channels, cursor)
            .await
    }

    /// [`subscribe`](Self::subscribe) as `identity`, who then counts in
    /// presence (for a WebSocket adapter, say). No authorization runs: the
    /// caller vouches for it.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_as(
        &self,
        identity: Identity,
        channels: &[&str],
        cursor: Option<&str>,
    ) -> Result<Subscription, Error> {
        let bad = |reason: &'static str| Error::with(Kind::Invalid, reason);
        let channels = service::channel_set(
            channels.iter().copied(),
            self.inner.config.max_channels,
            false,
        )
        .map_err(bad)?;
        let cursor = match cursor {
            Some(c) => {
                Some(cursor::parse(c, channels.len()).ok_or_else(|| bad("malformed cursor"))?)
            }
            None => None,
        };
        let identity = Arc::new(identity);
        if let Some(hook) = &self.inner.config.on_subscribe {
            if !hook(&identity, &channels) {
                return Err(bad("refused by on_subscribe"));
            }
        }
        let ask = open::Ask {
            identity,
            channels,
            multiplexed: true,
            cursor,
            slot: None,
        };
        open::subscription(&self.inner, ask).await
    }

    /// Who is in `channel`, with their connection counts and info.
    ///
    /// # Errors
    ///
    /// [`Error::is_io`] when the backplane cannot be reached.
    pub async fn presence(&self, channel: &str) -> Result<Vec<Member>, Error> {
        self.inner.config.backplane.presence(channel).await
    }

    /// Ends every stream, subscription and long-poll session of `user`
    /// ([`Reason::Kicked`]); returns how many.
    pub fn kick(&self, user: &str) -> usize {
        let ids: Vec<u64> = lock(&self.inner.conns)
            .values()
            .filter(|c| c.identity.user_id() == Some(user))
            .map(|c| c.id)
            .collect();
        let n = ids.len();
        for id in ids {
            self.inner.close(id, Reason::Kicked);
        }
        n + self.inner.kick_polls(user)
    }

    /// Channels, connections, users, and messages in and out.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

impl Inner {
    pub(crate) async fn publish(&self, channel: &str, data: Bytes) -> Result<Published, Error> {
        if std::str::from_utf8(&data).is_err() {
            return Err(Error::with(Kind::Invalid, "data is not UTF-8"));
        }
        let retention = if channel == channel::BROADCAST {
            crate::backplane::Retention {
                max_messages: 0,
                max_age: std::time::Duration::ZERO,
            }
        } else {
            self.config.namespace(channel).retention
        };
        let published = self
            .config
            .backplane
            .publish(self.node, channel, None, data, retention)
            .await;
        self.close_deferred();
        let (message, subscribers) = published?;
        self.counters.count_in();
        Ok(Published {
            id: cursor::format(&[message.position]),
            subscribers,
        })
    }

    pub(crate) fn stats(&self) -> Stats {
        let (connections, mut users) = {
            let conns = lock(&self.conns);
            let users: HashSet<String> = conns
                .values()
                .filter_map(|c| c.identity.user.clone())
                .collect();
            (conns.len(), users)
        };
        users.extend(self.polls.users());
        let (messages_in, messages_out, in_rate, out_rate) = self.counters.read();
        Stats {
            channels: lock(&self.channels).len(),
            connections: connections + self.polls.len(),
            users: users.len(),
            messages_in,
            messages_out,
            messages_in_per_sec: in_rate,
            messages_out_per_sec: out_rate,
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}
