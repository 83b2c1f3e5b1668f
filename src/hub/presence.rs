//! Presence (joins, leaves with a grace window, leases) and the one
//! background task of a hub, the sweeper, which acts when a grace window or
//! a lease runs out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::auth::Identity;
use super::registry::Inner;
use crate::backplane::Presence;
use crate::http::lock;

/// How long the sweeper sleeps with nothing scheduled (it also runs the
/// backplane's housekeeping then).
const IDLE_SWEEP: Duration = Duration::from_secs(60);

/// Deadlines of this node (grace windows, leases), and the task that
/// sleeps until the next one. One per hub, not one per connection.
pub(crate) struct Sweeper {
    deadlines: Mutex<BinaryHeap<Reverse<Instant>>>,
    notify: Arc<Notify>,
    started: AtomicBool,
    /// When the backplane's housekeeping last ran (it scans every channel,
    /// so it runs at most every `IDLE_SWEEP`).
    housekeeping: Mutex<Instant>,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper {
            deadlines: Mutex::default(),
            notify: Arc::default(),
            started: AtomicBool::new(false),
            housekeeping: Mutex::new(Instant::now()),
        }
    }
}

impl Sweeper {
    /// Runs the sweep at `when` (or at once, if it is past).
    pub(crate) fn at(&self, when: Instant) {
        lock(&self.deadlines).push(Reverse(when));
        self.notify.notify_one();
    }

    /// Runs the sweep now.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    fn next(&self) -> Option<Instant> {
        lock(&self.deadlines).peek().map(|r| r.0)
    }

    fn pop_due(&self, now: Instant) {
        let mut d = lock(&self.deadlines);
        while d.peek().is_some_and(|r| r.0 <= now) {
            d.pop();
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // The task holds only a weak reference: wake it to find the hub gone.
        self.notify.notify_one();
    }
}

/// Runs `fut` now if it is ready at once (the memory backplane's always
/// are), else in a task of its own (a networked backplane's).
pub(crate) fn background<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    if (&mut fut).now_or_never().is_none() {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(fut);
        }
    }
}

impl Inner {
    /// Starts the sweeper task, once, if a runtime is running.
    pub(crate) fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper.started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run(Arc::downgrade(self), self.sweeper.notify.clone()));
            }
            Err(_) => self.sweeper.started.store(false, Ordering::Release),
        }
    }

    /// Counts `identity`'s connection in each channel that tracks presence,
    /// announcing a `join` where the user was absent and the namespace asks.
    pub(crate) async fn join_presence(
        &self,
        identity: &Identity,
        channels: &[Arc<str>],
        connection: &str,
        lease: Option<Duration>,
    ) {
        let Some(user) = identity.user_id() else {
            return;
        };
        let info = identity.info.as_ref().map(|v| Bytes::from(v.to_string()));
        for channel in channels {
            let ns = self.config.namespace(channel);
            if !ns.presence {
                continue;
            }
            let entry = Presence {
                channel,
                user,
                connection,
                info: info.clone(),
                lease,
            };
            match self.config.backplane.presence_join(entry).await {
                Ok(true) if ns.join_leave => {
                    self.announce(channel, "join", user, identity.info.as_ref())
                        .await;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, %channel, "presence join failed"),
            }
        }
        if let Some(lease) = lease {
            self.sweeper.at(Instant::now() + lease);
        }
    }

    /// A connection left: the backplane holds the user for the grace
    /// window, and the sweeper looks again when it ends.
    pub(crate) fn leave_presence(
        &self,
        identity: &Identity,
        channels: &[Arc<str>],
        connection: &str,
    ) {
        let Some(user) = identity.user_id() else {
            return;
        };
        let grace = self.config.grace;
        let mut any = false;
        for channel in channels {
            if !self.config.namespace(channel).presence {
                continue;
            }
            any = true;
            let backplane = self.config.backplane.clone();
            let (channel, user, connection) =
                (channel.clone(), user.to_string(), connection.to_string());
            background(async move {
                if let Err(error) = backplane
                    .presence_leave(&channel, &user, &connection, grace)
                    .await
                {
                    tracing::warn!(%error, %channel, "presence leave failed");
                }
            });
        }
        if any {
            self.sweeper.at(Instant::now() + grace);
        }
    }

    /// Publishes a `join` or `leave` event to `channel`.
    async fn announce(
        &self,
        channel: &str,
        event: &str,
        user: &str,
        info: Option<&serde_json::Value>,
    ) {
        let data = serde_json::json!({"channel": channel, "user": user, "info": info});
        let retention = self.config.namespace(channel).retention;
        let published = self
            .config
            .backplane
            .publish(
                self.node,
                channel,
                Some(event),
                Bytes::from(data.to_string()),
                retention,
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, %channel, event, "presence event failed");
        }
        self.close_deferred();
    }

    /// Everything due: overflowed connections, expired long-poll sessions,
    /// users whose grace or lease ran out (announced as `leave`).
    pub(crate) async fn sweep(&self) {
        self.sweeper.pop_due(Instant::now());
        self.close_deferred();
        self.expire_polls();
        match self.config.backplane.presence_expired().await {
            Ok(gone) => {
                for crate::backplane::Departure { channel, user } in gone {
                    tracing::debug!(%channel, %user, "left");
                    if self.config.namespace(&channel).join_leave {
                        self.announce(&channel, "leave", &user, None).await;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "presence expiry failed"),
        }
        let now = Instant::now();
        let due = {
            let mut last = lock(&self.sweeper.housekeeping);
            let due = now.duration_since(*last) >= IDLE_SWEEP;
            if due {
                *last = now;
            }
            due
        };
        if due {
            self.config.backplane.sweep();
        }
    }
}

async fn run(hub: Weak<Inner>, notify: Arc<Notify>) {
    loop {
        let (next, every) = match hub.upgrade() {
            Some(inner) => (inner.sweeper.next(), inner.config.backplane.sweep_every()),
            None => return,
        };
        // A networked backplane's leases expire on other nodes too: ask it
        // as often as it says.
        let idle = Instant::now() + every.unwrap_or(IDLE_SWEEP);
        let wake_at = next.map_or(idle, |n| n.min(idle));
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {}
            () = notify.notified() => {}
        }
        let Some(inner) = hub.upgrade() else {
            return;
        };
        inner.sweep().await;
    }
}
