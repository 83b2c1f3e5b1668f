//! The Redis backplane (feature `redis`): history in a stream per channel,
//! live fan-out over pub/sub, presence in leases, and the hub's rate limits
//! per identity counted in Redis (one budget across instances).
//!
//! Each operation that changes state is one Lua script (one round trip,
//! atomic), whatever the number of subscribers. A publish is `XADD … MAXLEN
//! ~ N` (plus a TTL) and a `PUBLISH` in one script; the cursor's offset is
//! the stream entry's id (`0-{offset}`), and the epoch is a random number
//! set with `HSETNX` at the channel's first use, so a Redis that restarted
//! empty gives every channel a new epoch, and old cursors get a `gap`.
//!
//! Every call has a timeout ([`RedisBuilder::timeout`]); a failed or late
//! call is an [`Error`] that [`Error::is_io`] (the hub answers `503`).
//!
//! Connections: one `ConnectionManager` for commands and one (RESP3) for
//! pub/sub. Both reconnect with exponential backoff; the pub/sub one
//! re-subscribes by itself, and after a reconnection every channel with
//! local subscribers is caught up from its stream (or gets a `gap` event
//! when the stream cannot cover what it may have missed).

mod fanout;
mod history;
#[cfg(feature = "park")]
mod jobs;
mod limits;
#[cfg(feature = "pipe")]
mod pipes;
mod presence;
mod scripts;
#[cfg(feature = "signal")]
mod swarm;
#[cfg(feature = "signal")]
mod swarm_scripts;
mod topic;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, Script};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{
    Backplane, BoxFuture, Deliver, Departure, History, Member, Message, NodeId, Position, Presence,
    Retention,
};
use crate::error::{Error, Kind};
use crate::http::lock;
use crate::limit::{ClientKey, Rate};

use fanout::{Control, Sub, Waiters};

/// Settings for a [`RedisBackplane`]; from [`RedisBackplane::builder`].
#[derive(Debug, Clone)]
pub struct RedisBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    lease: Duration,
}

impl RedisBuilder {
    /// The prefix of every key and pub/sub channel (default `dr`): hubs that
    /// share a prefix share channels.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any Redis call may take (default 2 s); past it the call
    /// fails (a publish answers `503`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The lease of everything this process holds in Redis (default 15 s),
    /// renewed every third of it while it lives: a hub stream's presence
    /// entry, a signal instance's peers and swarms, a park job's owner, a
    /// pipe id's owner. When this process dies, the other instances see its
    /// users leave, its swarms end, its jobs lost and its pipes gone at most
    /// this long after. Taken within 30 ms and one day.
    pub fn lease(mut self, lease: Duration) -> Self {
        // At most a day: deadlines are `now + lease / 3`.
        self.lease = lease.clamp(Duration::from_millis(30), Duration::from_secs(86_400));
        self
    }

    /// Connects (in a tokio runtime).
    ///
    /// # Errors
    ///
    /// A bad URL, or Redis unreachable within the timeout.
    pub async fn connect(self) -> Result<RedisBackplane, Error> {
        RedisBackplane::start(self).await
    }
}

/// A [`Backplane`] in Redis (7.0 or later): several processes that share one
/// Redis and one prefix act as instances of one hub.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), delayed_response::Error> {
/// use std::sync::Arc;
/// use delayed_response::backplane::RedisBackplane;
/// use delayed_response::hub::Hub;
///
/// let backplane = RedisBackplane::connect("redis://127.0.0.1:6379").await?;
/// let hub = Hub::builder().backplane(Arc::new(backplane)).build();
/// # let _ = hub;
/// # Ok(())
/// # }
/// ```
pub struct RedisBackplane {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

pub(crate) struct Shared {
    cmd: ConnectionManager,
    sub: ConnectionManager,
    prefix: String,
    timeout: Duration,
    lease: Duration,
    nodes: Mutex<Vec<(NodeId, Weak<dyn Deliver>)>>,
    next_node: AtomicU64,
    subs: Mutex<HashMap<Arc<str>, Sub>>,
    control: mpsc::UnboundedSender<Control>,
    waiters: Mutex<Waiters>,
    /// Presence entries without a lease of their own: (key, member) → the
    /// lease renewed for them.
    held: Mutex<HashMap<(String, String), ()>>,
    retention: Mutex<HashMap<Arc<str>, Retention>>,
    /// Subscriptions to topics (addressed messages for the other modules).
    topics: Mutex<topic::Topics>,
    scripts: Scripts,
}

struct Scripts {
    publish: Script,
    history: Script,
    join: Script,
    leave: Script,
    expired: Script,
    presence: Script,
    renew: Script,
    take_token: Script,
}

/// An I/O error for a Redis failure.
fn io(error: impl Into<crate::BoxError>) -> Error {
    Error::with(Kind::Io, error)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long a channel's epoch lives without use: a day, or the history's
/// age if longer.
fn meta_ttl(retention: Retention) -> u64 {
    ms(retention.max_age.saturating_mul(2)).max(86_400_000)
}

impl RedisBackplane {
    /// Connects to `url` (`redis://host:port/db`) with the defaults.
    ///
    /// # Errors
    ///
    /// A bad URL, or Redis unreachable within the timeout.
    pub async fn connect(url: &str) -> Result<RedisBackplane, Error> {
        RedisBackplane::builder(url).connect().await
    }

    /// A builder for the settings.
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder {
            url: url.into(),
            prefix: "dr".to_string(),
            timeout: Duration::from_secs(2),
            lease: Duration::from_secs(15),
        }
    }

    async fn start(b: RedisBuilder) -> Result<RedisBackplane, Error> {
        let info = b
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::with(Kind::Invalid, e))?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let sub_info = info.clone().set_redis_settings(resp3);
        let config = || {
            ConnectionManagerConfig::new()
                .set_response_timeout(Some(b.timeout))
                .set_connection_timeout(Some(b.timeout))
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(500))
                .set_number_of_retries(8)
        };
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let connect = async {
            let cmd = ConnectionManager::new_with_config(
                redis::Client::open(info).map_err(io)?,
                config(),
            )
            .await
            .map_err(io)?;
            let sub = ConnectionManager::new_with_config(
                redis::Client::open(sub_info).map_err(io)?,
                config()
                    .set_push_sender(push_tx)
                    .set_automatic_resubscription(),
            )
            .await
            .map_err(io)?;
            Ok::<_, Error>((cmd, sub))
        };
        let (cmd, sub) = tokio::time::timeout(b.timeout, connect)
            .await
            .map_err(|_| io("redis: connect timed out"))??;
        let shared = Arc::new(Shared {
            cmd,
            sub,
            prefix: b.prefix,
            timeout: b.timeout,
            lease: b.lease,
            nodes: Mutex::new(Vec::new()),
            next_node: AtomicU64::new(0),
            subs: Mutex::new(HashMap::new()),
            control,
            waiters: Mutex::new(Waiters::default()),
            held: Mutex::new(HashMap::new()),
            retention: Mutex::new(HashMap::new()),
            topics: Mutex::new(topic::Topics::default()),
            scripts: Scripts {
                publish: scripts::publish(),
                history: scripts::history(),
                join: scripts::join(),
                leave: scripts::leave(),
                expired: scripts::expired(),
                presence: scripts::presence(),
                renew: scripts::renew(),
                take_token: scripts::take_token(),
            },
        });
        // Broadcasts reach every node: always subscribed.
        let mut sub = shared.sub.clone();
        shared
            .call(sub.subscribe(shared.key("c", fanout::BROADCAST)))
            .await?;
        let tasks = vec![
            tokio::spawn(fanout::run(Arc::downgrade(&shared), push_rx, control_rx)).abort_handle(),
            tokio::spawn(fanout::keep(Arc::downgrade(&shared))).abort_handle(),
        ];
        Ok(RedisBackplane { shared, tasks })
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("prefix", &self.shared.prefix)
            .field("timeout", &self.shared.timeout)
            .finish()
    }
}

impl Shared {
    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}:{kind}:{channel}", self.prefix)
    }

    /// Runs a Redis call under the timeout.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        // Boxed: redis's futures are large, and a debug build nests them
        // deep enough to overflow a 2 MiB stack during a reconnection.
        match tokio::time::timeout(self.timeout, Box::pin(fut)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(io(e)),
            Err(_) => Err(io("redis: the call timed out")),
        }
    }

    /// The retention of a channel this process listens to (for its
    /// catch-up after a reconnection; forgotten at its last unlisten).
    fn remember(&self, channel: &str, retention: Retention) {
        let mut map = lock(&self.retention);
        if map.get(channel) != Some(&retention) {
            map.insert(Arc::from(channel), retention);
        }
    }

    fn new_epoch() -> Result<String, Error> {
        let epoch = u64::from_le_bytes(crate::id::random_bytes::<8>()?) >> 1;
        Ok(epoch.to_string())
    }

    fn nodes(&self) -> Vec<(NodeId, Arc<dyn Deliver>)> {
        let mut nodes = lock(&self.nodes);
        nodes.retain(|(_, n)| n.strong_count() > 0);
        nodes
            .iter()
            .filter_map(|(id, n)| n.upgrade().map(|n| (*id, n)))
            .collect()
    }

    async fn publish(
        &self,
        from: NodeId,
        channel: &str,
        event: Option<&str>,
        data: Bytes,
        retention: Retention,
    ) -> Result<(Message, usize), Error> {
        let wait = self.listening(channel);
        if wait {
            self.remember(channel, retention);
        }
        let _inflight = wait.then(|| fanout::Inflight::new(self, channel));
        let mut cmd = self.cmd.clone();
        let mut inv = self.scripts.publish.prepare_invoke();
        inv.key(self.key("m", channel))
            .key(self.key("s", channel))
            .arg(Shared::new_epoch()?)
            .arg(retention.max_messages)
            .arg(ms(retention.max_age))
            .arg(meta_ttl(retention))
            .arg(event.unwrap_or(""))
            .arg(&data[..])
            .arg(self.key("c", channel));
        let (epoch, offset): (String, u64) = self.call(inv.invoke_async(&mut cmd)).await?;
        let position = Position {
            epoch: epoch.parse().map_err(io)?,
            offset,
        };
        let message = Message {
            channel: Arc::from(channel),
            position,
            event: event.map(Arc::from),
            data,
        };
        let count = if wait {
            fanout::wait_for(self, &message, from).await
        } else {
            0
        };
        Ok((message, count))
    }
}

impl Backplane for RedisBackplane {
    fn attach(&self, node: Weak<dyn Deliver>) -> NodeId {
        let id = NodeId(
            self.shared
                .next_node
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        );
        lock(&self.shared.nodes).push((id, node));
        id
    }

    fn listen(&self, channel: &str) {
        fanout::listen(&self.shared, channel);
    }

    fn unlisten(&self, channel: &str) {
        fanout::unlisten(&self.shared, channel);
    }

    fn publish<'a>(
        &'a self,
        from: NodeId,
        channel: &'a str,
        event: Option<&'a str>,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<(Message, usize), Error>> {
        Box::pin(self.shared.publish(from, channel, event, data, retention))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        after: Option<Position>,
        retention: Retention,
    ) -> BoxFuture<'a, Result<History, Error>> {
        Box::pin(self.shared.history(channel, after, retention))
    }

    fn presence_join<'a>(&'a self, entry: Presence<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(presence::join(&self.shared, entry))
    }

    fn presence_leave<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        connection: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(presence::leave(
            &self.shared,
            channel,
            user,
            connection,
            grace,
        ))
    }

    fn presence_expired(&self) -> BoxFuture<'_, Result<Vec<Departure>, Error>> {
        Box::pin(presence::expired(&self.shared))
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Member>, Error>> {
        Box::pin(presence::members(&self.shared, channel))
    }

    fn sweep_every(&self) -> Option<Duration> {
        Some(self.shared.lease / 3)
    }

    fn take_token<'a>(
        &'a self,
        limit: &'a str,
        client: &'a ClientKey,
        rate: Rate,
    ) -> Option<BoxFuture<'a, Result<Option<Duration>, Error>>> {
        Some(Box::pin(limits::take_token(
            &self.shared,
            limit,
            client,
            rate,
        )))
    }
}
