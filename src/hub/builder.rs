//! The hub's settings: [`Builder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::auth::{Anonymous, Authorizer, Identity};
use super::channel::{Kind, Namespace};
use super::{Hub, Reason};
use crate::backplane::{Backplane, MemoryBackplane};
use crate::limit::Rate;

/// The default per-stream queue: 256 KiB of events waiting unsent.
pub const DEFAULT_QUEUE_BYTES: usize = 256 * 1024;
/// The default cap on the channels of one subscribe: 32.
pub const DEFAULT_MAX_CHANNELS: usize = 32;
/// The default publish body cap: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The default cap on a long-poll's `Prefer: wait`: 25 s.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(25);
/// The default presence grace window: 5 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The default long-poll lease: a poller is present for 10 s after a poll.
pub const DEFAULT_POLL_LEASE: Duration = Duration::from_secs(10);
/// The default reconnection delay told to browsers (`retry:`): 1 s.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The default cap on open connections per identity: 64.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

pub(crate) type SubscribeHook = Arc<dyn Fn(&Identity, &[Arc<str>]) -> bool + Send + Sync>;
pub(crate) type UnsubscribeHook = Arc<dyn Fn(&Identity, &[Arc<str>], Reason) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) keep_alive: Duration,
    pub(crate) queue_bytes: usize,
    pub(crate) max_channels: usize,
    pub(crate) body_limit: usize,
    pub(crate) max_wait: Duration,
    pub(crate) poll_lease: Duration,
    pub(crate) grace: Duration,
    pub(crate) retry: Duration,
    pub(crate) namespaces: Vec<(String, Namespace)>,
    pub(crate) default_ns: Namespace,
    pub(crate) restricted_ns: Namespace,
    pub(crate) publish_rate: Option<Rate>,
    pub(crate) connect_rate: Option<Rate>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) on_subscribe: Option<SubscribeHook>,
    pub(crate) on_unsubscribe: Option<UnsubscribeHook>,
    pub(crate) backplane: Arc<dyn Backplane>,
}

impl Config {
    /// The settings of `channel`: the longest configured prefix that
    /// matches, else the built-in ones.
    pub(crate) fn namespace(&self, channel: &str) -> &Namespace {
        if let Some((_, ns)) = self
            .namespaces
            .iter()
            .find(|(prefix, _)| channel.starts_with(prefix.as_str()))
        {
            return ns;
        }
        match super::channel::kind(channel) {
            Kind::Public => &self.default_ns,
            Kind::User(_) | Kind::Private => &self.restricted_ns,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keep_alive: crate::Heartbeat::DEFAULT_INTERVAL,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_channels: DEFAULT_MAX_CHANNELS,
            body_limit: DEFAULT_BODY_LIMIT,
            max_wait: DEFAULT_MAX_WAIT,
            poll_lease: DEFAULT_POLL_LEASE,
            grace: DEFAULT_GRACE,
            retry: DEFAULT_RETRY,
            namespaces: Vec::new(),
            default_ns: Namespace::default(),
            restricted_ns: Namespace::default().anonymous(false),
            publish_rate: Some(Rate::per_second(20.0).burst(40)),
            connect_rate: Some(Rate::per_second(10.0).burst(30)),
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            authorizer: Arc::new(Anonymous),
            on_subscribe: None,
            on_unsubscribe: None,
            backplane: Arc::new(MemoryBackplane::new()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("keep_alive", &self.keep_alive)
            .field("queue_bytes", &self.queue_bytes)
            .field("max_channels", &self.max_channels)
            .field("body_limit", &self.body_limit)
            .field("max_wait", &self.max_wait)
            .field("poll_lease", &self.poll_lease)
            .field("grace", &self.grace)
            .field("namespaces", &self.namespaces)
            .field("publish_rate", &self.publish_rate)
            .field("connect_rate", &self.connect_rate)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Hub`]; see the Defaults table in the [module docs](super).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// How often an idle stream gets the SSE comment `:\n\n` (default 15
    /// s). A client that vanished without a FIN is found by the write that
    /// fails, within two of these.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.config.keep_alive = interval;
        self
    }

    /// How many bytes of events may wait unsent for one stream (default
    /// 256 KiB). A stream that would pass it reads too slowly: it gets
    /// `event: overflow` and ends, and nobody else waits for it.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.config.queue_bytes = bytes;
        self
    }

    /// The most channels one subscribe may name (default 32); more is `400`.
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.config.max_channels = channels;
        self
    }

    /// The largest publish body (default 64 KiB); larger is `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// The longest a long-poll waits, whatever its `Prefer: wait` (default
    /// 25 s: under the 30 s that Heroku and GCP allow).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// How long after a poll a long-poll client still counts as connected
    /// (default 10 s): its next poll must come within it.
    pub fn poll_lease(mut self, lease: Duration) -> Self {
        self.config.poll_lease = lease;
        self
    }

    /// How long a user's leave is held (default 5 s): one who reconnects
    /// within it causes neither a `leave` nor a `join`.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// The reconnection delay a stream tells browsers (`retry:`, default 1
    /// s).
    pub fn retry(mut self, delay: Duration) -> Self {
        self.config.retry = delay;
        self
    }

    /// Settings for the channels whose names start with `prefix` (the
    /// longest matching prefix wins). Channels of no configured namespace
    /// use [`Namespace::default`]; `user:` and `private:` channels the same
    /// without anonymous subscribers.
    pub fn namespace(mut self, prefix: impl Into<String>, namespace: Namespace) -> Self {
        let prefix = prefix.into();
        self.config.namespaces.retain(|(p, _)| *p != prefix);
        self.config.namespaces.push((prefix, namespace));
        self.config
            .namespaces
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// The settings of channels in no configured namespace.
    pub fn default_namespace(mut self, namespace: Namespace) -> Self {
        self.config.default_ns = namespace;
        self
    }

    /// The token bucket on publishes per identity (user, else client key);
    /// `None` for no limit. Over it: `429` with `Retry-After`. On a backplane
    /// that counts across instances (Redis), one bucket serves them all.
    pub fn publish_rate(mut self, rate: Option<Rate>) -> Self {
        self.config.publish_rate = rate;
        self
    }

    /// The token bucket on new connections (streams and polls) per
    /// identity; `None` for no limit. Over it: `429` with `Retry-After`.
    /// Shared across instances like [`publish_rate`](Self::publish_rate).
    pub fn connect_rate(mut self, rate: Option<Rate>) -> Self {
        self.config.connect_rate = rate;
        self
    }

    /// The most open streams and polls per identity (default 64); `None`
    /// for no cap. Over it: `429`.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Turns off the rate limits and the connection cap (tests, load
    /// harnesses, a hub behind a gateway that limits).
    pub fn no_limits(self) -> Self {
        self.publish_rate(None)
            .connect_rate(None)
            .max_connections(None)
    }

    /// Who clients are, and what they may do (default: everyone is
    /// anonymous).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.config.authorizer = Arc::new(authorizer);
        self
    }

    /// Called before a connection (a stream, or a long-poll client's first
    /// poll) subscribes, with its identity and channels; `false` refuses it
    /// (`403`). When it returns `true`,
    /// [`on_unsubscribe`](Self::on_unsubscribe) runs exactly once later.
    pub fn on_subscribe<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Identity, &[Arc<str>]) -> bool + Send + Sync + 'static,
    {
        self.config.on_subscribe = Some(Arc::new(hook));
        self
    }

    /// Called exactly once when a connection that
    /// [`on_subscribe`](Self::on_subscribe) let in is over, with why.
    pub fn on_unsubscribe<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Identity, &[Arc<str>], Reason) + Send + Sync + 'static,
    {
        self.config.on_unsubscribe = Some(Arc::new(hook));
        self
    }

    /// Where history, presence and fan-out live (default: a fresh
    /// [`MemoryBackplane`]).
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.config.backplane = backplane;
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        Hub::from_config(self.config)
    }
}
