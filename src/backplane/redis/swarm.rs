//! The signal service's swarms in Redis: [`SwarmBackplane`] for
//! [`RedisBackplane`].
//!
//! Each instance (an attached [`Node`]) has a random id, an inbox topic and
//! a lease in `P:sgi`. Its tick (every third of the lease) is one script
//! that renews its lease and the TTLs of its swarms, and sweeps the
//! instances whose lease ran out: their peers leave, and their initiators'
//! swarms end. The keys and messages are in `swarm_scripts.rs`.
//!
//! Tokens never reach Redis: a peer's entry holds the SHA-1 of its token (a
//! token is 128 random bits, so its hash gives nothing away that would help
//! find it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use redis::Script;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::topic::{Topic, TopicEvent};
use super::{io, ms, swarm_scripts, RedisBackplane, Shared};
use crate::backplane::{
    BoxFuture, JoinOutcome, Listening, Signal, SignalOutcome, SwarmBackplane, SwarmEvent,
    SwarmNode, SwarmSink,
};
use crate::error::Error;

/// How many times a leave is tried (a third of a lease apart) before this
/// instance gives up on it; by then a store out of reach for that long has
/// made the instance lost, and its reset removes the peer anyway.
const LEAVE_TRIES: u32 = 6;

impl SwarmBackplane for RedisBackplane {
    fn attach(
        &self,
        sink: Weak<dyn SwarmSink>,
    ) -> BoxFuture<'_, Result<Arc<dyn SwarmNode>, Error>> {
        Box::pin(attach(self.shared.clone(), sink))
    }
}

struct Scripts {
    create: Script,
    join: Script,
    leave: Script,
    signal: Script,
    tick: Script,
}

struct Inner {
    shared: Arc<Shared>,
    /// This instance's id: 32 hex characters.
    instance: String,
    sink: Weak<dyn SwarmSink>,
    /// Set when the lease could not be renewed for a whole lease: the
    /// swarms were given up, and the next tick starts afresh.
    lost: AtomicBool,
    scripts: Scripts,
}

/// One instance: its inbox, its tick and its leaves run in tasks that stop
/// when it is dropped.
struct Node {
    inner: Arc<Inner>,
    leaves: mpsc::UnboundedSender<(String, String)>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Aborts a task when dropped (a [`Listening`]'s guard).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn token_hash(token: &str) -> String {
    sha1_smol::Sha1::from(token).digest().to_string()
}

async fn attach(
    shared: Arc<Shared>,
    sink: Weak<dyn SwarmSink>,
) -> Result<Arc<dyn SwarmNode>, Error> {
    let instance = crate::id::random_token()?;
    let inner = Arc::new(Inner {
        shared,
        instance,
        sink,
        lost: AtomicBool::new(false),
        scripts: Scripts {
            create: swarm_scripts::create(),
            join: swarm_scripts::join(),
            leave: swarm_scripts::leave(),
            signal: swarm_scripts::signal(),
            tick: swarm_scripts::tick(),
        },
    });
    let inbox = inner
        .shared
        .topic(&format!("sg:i:{}", inner.instance))
        .await?;
    // The first tick registers the lease (it finds nothing of its own).
    inner.tick(false).await?;
    let (leaves, leaves_rx) = mpsc::unbounded_channel();
    let tasks = vec![
        tokio::spawn(run_inbox(inner.clone(), inbox)).abort_handle(),
        tokio::spawn(keep(inner.clone())).abort_handle(),
        tokio::spawn(run_leaves(inner.clone(), leaves_rx)).abort_handle(),
    ];
    tracing::debug!(instance = %inner.instance, "signal: attached to redis");
    Ok(Arc::new(Node {
        inner,
        leaves,
        tasks,
    }))
}

impl Inner {
    fn ttl(&self) -> u64 {
        ms(self.shared.lease).saturating_mul(3)
    }

    fn deliver(&self, event: SwarmEvent<'_>) {
        if let Some(sink) = self.sink.upgrade() {
            sink.deliver(event);
        }
    }

    /// Refuses work while this instance is lost (until its next tick).
    fn check(&self) -> Result<(), Error> {
        if self.lost.load(Ordering::Acquire) {
            return Err(io("signal: this instance lost its lease; retry"));
        }
        Ok(())
    }

    /// Runs the create or the join script: one peer (`cid`, with the hash
    /// of its token) enters `swarm` on this instance, within `max` (0: no
    /// cap). Returns the script's answer.
    async fn enter(
        &self,
        script: &Script,
        swarm: &str,
        cid: &str,
        token: &str,
        max: Option<usize>,
    ) -> Result<i64, Error> {
        self.check()?;
        let mut cmd = self.shared.cmd.clone();
        let mut inv = script.prepare_invoke();
        inv.arg(&self.shared.prefix)
            .arg(swarm)
            .arg(cid)
            .arg(token_hash(token))
            .arg(&self.instance)
            .arg(self.ttl())
            .arg(max.unwrap_or(0));
        self.shared.call(inv.invoke_async(&mut cmd)).await
    }

    /// Renews the lease and sweeps; `Ok(true)` when renewed, `Ok(false)`
    /// when this instance had been removed (or `reset`) and starts afresh.
    async fn tick(&self, reset: bool) -> Result<bool, Error> {
        let mut cmd = self.shared.cmd.clone();
        let mut inv = self.scripts.tick.prepare_invoke();
        inv.arg(&self.shared.prefix)
            .arg(&self.instance)
            .arg(ms(self.shared.lease))
            .arg(self.ttl())
            .arg(if reset { "1" } else { "0" });
        let (renewed, swept): (i64, i64) = self.shared.call(inv.invoke_async(&mut cmd)).await?;
        if swept > 0 {
            tracing::debug!(swept, "signal: swept instances whose lease ran out");
        }
        Ok(renewed == 1)
    }

    async fn leave(&self, swarm: &str, cid: &str) -> Result<(), Error> {
        let mut cmd = self.shared.cmd.clone();
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.arg(&self.shared.prefix)
            .arg(swarm)
            .arg(cid)
            .arg(&self.instance);
        let _: i64 = self.shared.call(inv.invoke_async(&mut cmd)).await?;
        Ok(())
    }

    async fn exists(&self, swarm: &str) -> Result<bool, Error> {
        let mut cmd = self.shared.cmd.clone();
        let key = self.shared.key("sg", swarm);
        let n: i64 = self
            .shared
            .call(redis::cmd("EXISTS").arg(key).query_async(&mut cmd))
            .await?;
        Ok(n == 1)
    }
}

/// Renews the lease every third of it. A lease that could not be renewed
/// for a whole lease makes this instance lost: its swarms end here, as the
/// others' sweepers end them there.
async fn keep(inner: Arc<Inner>) {
    let lease = inner.shared.lease;
    let mut every = tokio::time::interval(lease / 3);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    every.tick().await;
    let mut renewed_at = Instant::now();
    loop {
        every.tick().await;
        let reset = inner.lost.load(Ordering::Acquire);
        match inner.tick(reset).await {
            Ok(renewed) => {
                renewed_at = Instant::now();
                if reset {
                    tracing::info!("signal: back in touch with redis; starting afresh");
                    inner.lost.store(false, Ordering::Release);
                } else if !renewed {
                    tracing::warn!("signal: this instance's swarms were removed (its lease ran out, or redis lost its data)");
                    inner.deliver(SwarmEvent::Lost);
                }
            }
            Err(error) => {
                if !reset && renewed_at.elapsed() >= lease {
                    tracing::warn!(%error, "signal: could not renew the lease; ending this instance's swarms");
                    inner.lost.store(true, Ordering::Release);
                    inner.deliver(SwarmEvent::Lost);
                } else {
                    tracing::debug!(%error, "signal: could not renew the lease");
                }
            }
        }
    }
}

/// Direct signals for this instance's peers.
async fn run_inbox(inner: Arc<Inner>, mut inbox: Topic) {
    // After a lost pub/sub connection, direct signals sent meanwhile are
    // lost (at most once, as every signal).
    while let Some(event) = inbox.recv().await {
        let TopicEvent::Message(payload) = event else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&payload) else {
            continue;
        };
        let Some((head, data)) = text.split_once('\n') else {
            continue;
        };
        let mut words = head.split(' ');
        if let (Some("d"), Some(swarm), Some(from), Some(to)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            inner.deliver(SwarmEvent::Signal {
                swarm,
                from,
                to: Some(to),
                data,
            });
        }
    }
}

/// The events of one swarm, while this instance listens to it.
async fn run_swarm(inner: Arc<Inner>, swarm: String, mut topic: Topic) {
    while let Some(event) = topic.recv().await {
        let payload = match event {
            TopicEvent::Message(payload) => payload,
            TopicEvent::Resubscribed => {
                // Its `close` may have been missed.
                if let Ok(false) = inner.exists(&swarm).await {
                    inner.deliver(SwarmEvent::Close { swarm: &swarm });
                }
                continue;
            }
        };
        let Ok(text) = std::str::from_utf8(&payload) else {
            continue;
        };
        let event = if let Some(rest) = text.strip_prefix("s ") {
            let Some((from, data)) = rest.split_once('\n') else {
                continue;
            };
            SwarmEvent::Signal {
                swarm: &swarm,
                from,
                to: None,
                data,
            }
        } else if let Some(cid) = text.strip_prefix("j ") {
            SwarmEvent::Join { swarm: &swarm, cid }
        } else if let Some(cid) = text.strip_prefix("l ") {
            SwarmEvent::Leave { swarm: &swarm, cid }
        } else if text == "c" {
            SwarmEvent::Close { swarm: &swarm }
        } else {
            continue;
        };
        inner.deliver(event);
    }
}

/// Runs the leaves the service hands over, each in its own task, retried
/// while Redis is out of reach.
async fn run_leaves(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<(String, String)>) {
    while let Some((swarm, cid)) = rx.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            for attempt in 1..=LEAVE_TRIES {
                match inner.leave(&swarm, &cid).await {
                    Ok(()) => return,
                    Err(error) if attempt == LEAVE_TRIES => {
                        tracing::warn!(%error, %swarm, %cid, "signal: could not leave; the lease covers it");
                    }
                    Err(_) => tokio::time::sleep(inner.shared.lease / 3).await,
                }
            }
        });
    }
}

impl SwarmNode for Node {
    fn listen<'a>(&'a self, swarm: &'a str) -> BoxFuture<'a, Result<Listening, Error>> {
        Box::pin(async move {
            let topic = self.inner.shared.topic(&format!("sg:s:{swarm}")).await?;
            let task = tokio::spawn(run_swarm(self.inner.clone(), swarm.to_string(), topic));
            Ok(Listening::new(AbortOnDrop(task.abort_handle())))
        })
    }

    fn create<'a>(
        &'a self,
        swarm: &'a str,
        cid: &'a str,
        token: &'a str,
        max_swarms: Option<usize>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let created = inner
                .enter(&inner.scripts.create, swarm, cid, token, max_swarms)
                .await?;
            Ok(created == 1)
        })
    }

    fn join<'a>(
        &'a self,
        swarm: &'a str,
        cid: &'a str,
        token: &'a str,
        max_peers: Option<usize>,
    ) -> BoxFuture<'a, Result<JoinOutcome, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            let joined = inner
                .enter(&inner.scripts.join, swarm, cid, token, max_peers)
                .await?;
            Ok(match joined {
                1 => JoinOutcome::Joined,
                0 => JoinOutcome::NoSwarm,
                _ => JoinOutcome::Full,
            })
        })
    }

    fn leave(&self, swarm: &str, cid: &str) {
        let _ = self.leaves.send((swarm.to_string(), cid.to_string()));
    }

    fn exists<'a>(&'a self, swarm: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            self.inner.check()?;
            self.inner.exists(swarm).await
        })
    }

    fn signal<'a>(&'a self, signal: Signal<'a>) -> BoxFuture<'a, Result<SignalOutcome, Error>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.check()?;
            let mut cmd = inner.shared.cmd.clone();
            let mut inv = inner.scripts.signal.prepare_invoke();
            inv.arg(&inner.shared.prefix)
                .arg(signal.swarm)
                .arg(token_hash(signal.token))
                .arg(signal.to.unwrap_or(""))
                .arg(signal.data.unwrap_or(""))
                .arg(if signal.data.is_some() { "s" } else { "c" });
            let outcome: i64 = inner.shared.call(inv.invoke_async(&mut cmd)).await?;
            Ok(match outcome {
                0 => SignalOutcome::NoSwarm,
                1 => SignalOutcome::BadToken,
                2 => SignalOutcome::Checked,
                3 => SignalOutcome::Sent,
                _ => SignalOutcome::NoPeer,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_as_its_sha1() {
        let hash = token_hash("0123456789abcdef0123456789abcdef");
        assert_eq!(hash.len(), 40);
        assert!(!hash.contains("0123456789abcdef"));
        assert_eq!(hash, token_hash("0123456789abcdef0123456789abcdef"));
    }
}
