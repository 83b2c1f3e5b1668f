//! Swarms that span instances: the registry's side of a [`SwarmBackplane`].
//!
//! With a backplane the registry keeps only its own peers' streams; who is
//! in which swarm, the tokens (as hashes) and the caps `max_peers` and
//! `max_swarms` are the backplane's. A swarm is in the registry's map while
//! one of its peers is here or joining here: it holds this instance's
//! subscription to the swarm's events, and the events the backplane
//! delivers (this registry is its [`SwarmSink`]) are written to the peers
//! here.
//!
//! A join subscribes to the swarm's events, adds the stream here, and only
//! then registers it in the backplane, so that no event published after the
//! answer is missed; a refused join is taken back here without a word.
//!
//! A stream's outcome hook cannot wait, so leaves go to the backplane in the
//! background; the initiator's `leave` events and the swarm's `close` come
//! back through the backplane, as for a peer on another instance. When the
//! initiator here leaves, the other peers here get `close` at once.

use std::sync::{Arc, Weak};

use http::StatusCode;
use tokio::sync::OnceCell;

use super::id::Id;
use super::registry::{random, Refusal, Registry};
use super::swarm::{peer_event, Outgoing, SendError, Swarm, Target};
use crate::backplane::{
    JoinOutcome, Signal, SignalOutcome, SwarmBackplane, SwarmEvent, SwarmNode, SwarmSink,
};
use crate::delayed::{DelayedResponse, ResponseFuture};
use crate::http::lock;
use crate::limit::ClientKey;

/// The backplane, and this instance's node of it (attached at first use:
/// building a service does not wait for the network).
pub(crate) struct Remote {
    backplane: Arc<dyn SwarmBackplane>,
    node: OnceCell<Arc<dyn SwarmNode>>,
}

impl Remote {
    pub(super) fn new(backplane: Arc<dyn SwarmBackplane>) -> Self {
        Remote {
            backplane,
            node: OnceCell::new(),
        }
    }
}

fn unavailable(error: crate::Error) -> Refusal {
    tracing::warn!(%error, "signal: the backplane failed");
    Refusal::Unavailable
}

/// A join on its way to a swarm here: keeps the swarm in the map until the
/// stream is added (or the join is given up, however its future ends).
struct Pending<'a> {
    registry: &'a Registry,
    swarm: Arc<Swarm>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let unused = {
            let mut st = lock(&self.swarm.state);
            st.pending -= 1;
            st.open && st.unused()
        };
        if unused {
            self.registry.close(&self.swarm);
        }
    }
}

impl Registry {
    /// This instance's node, attached at first use.
    async fn node<'a>(
        self: &Arc<Self>,
        remote: &'a Remote,
    ) -> Result<&'a Arc<dyn SwarmNode>, Refusal> {
        remote
            .node
            .get_or_try_init(|| {
                let this: Weak<Registry> = Arc::downgrade(self);
                let sink: Weak<dyn SwarmSink> = this;
                remote.backplane.attach(sink)
            })
            .await
            .map_err(unavailable)
    }

    pub(super) async fn exists_remote(
        self: &Arc<Self>,
        remote: &Remote,
        id: Id,
    ) -> Result<bool, Refusal> {
        let node = self.node(remote).await?;
        node.exists(&id.to_string()).await.map_err(unavailable)
    }

    /// `GET /` with a backplane.
    pub(super) async fn create_remote(
        self: &Arc<Self>,
        remote: &Remote,
        base: DelayedResponse,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        let peer_permit = self.peer_permit(client)?;
        let swarm_permit = self.swarms_per_client.try_acquire(client).ok_or_else(|| {
            tracing::debug!(%client, "signal: client at its cap of open swarms");
            Refusal::ClientSwarms
        })?;
        let node = self.node(remote).await?;
        let (id, cid, token) = (random()?, random()?, random()?);
        let (id_s, cid_s) = (id.to_string(), cid.to_string());
        let swarm = Arc::new(Swarm::new(id, Some(cid), Some(swarm_permit)));
        let listening = node.listen(&id_s).await.map_err(unavailable)?;
        let _ = swarm.listening.set(listening);
        let (future, completion) =
            self.open_stream(base, &swarm, cid, token, peer_permit, StatusCode::CREATED);
        lock(&swarm.state).add(cid, token, completion);
        lock(&self.swarms).insert(id, swarm.clone());
        let created = node
            .create(&id_s, &cid_s, &token.to_string(), self.config.max_swarms)
            .await;
        let refusal = match created {
            Ok(true) => {
                let open = lock(&swarm.state).open;
                if open {
                    tracing::debug!(swarm = %id, %cid, "swarm created");
                    return Ok(future);
                }
                // Ended here meanwhile (this instance was lost): there too.
                node.leave(&id_s, &cid_s);
                Refusal::Unavailable
            }
            Ok(false) => Refusal::TooManySwarms,
            Err(error) => unavailable(error),
        };
        self.forget(None, &swarm, cid, false);
        drop(future);
        Err(refusal)
    }

    /// `GET /{id}` with a backplane.
    pub(super) async fn join_remote(
        self: &Arc<Self>,
        remote: &Remote,
        base: DelayedResponse,
        id: Id,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        // A swarm not known here is looked up first (one `EXISTS`): an id
        // that names no swarm costs no subscription, and, as on one
        // instance, no such swarm is 404 before the per-client cap.
        if self.find(id).is_none() && !self.exists_remote(remote, id).await? {
            return Err(Refusal::NoSwarm);
        }
        let permit = self.peer_permit(client)?;
        let node = self.node(remote).await?;
        let (cid, token) = (random()?, random()?);
        let (id_s, cid_s) = (id.to_string(), cid.to_string());
        let pending = Pending {
            registry: self,
            swarm: self.swarm_here(id),
        };
        let swarm = pending.swarm.clone();
        swarm
            .listening
            .get_or_try_init(|| node.listen(&id_s))
            .await
            .map_err(unavailable)?;
        let (future, completion) =
            self.open_stream(base, &swarm, cid, token, permit, StatusCode::OK);
        let added = {
            let mut st = lock(&swarm.state);
            if st.open {
                st.add(cid, token, completion);
            }
            st.open
        };
        drop(pending);
        if !added {
            return Err(Refusal::NoSwarm);
        }
        let joined = node
            .join(&id_s, &cid_s, &token.to_string(), self.config.max_peers)
            .await;
        let refusal = match joined {
            Ok(JoinOutcome::Joined) => {
                let open = lock(&swarm.state).open;
                if open {
                    tracing::debug!(swarm = %id, %cid, "peer joined");
                    return Ok(future);
                }
                node.leave(&id_s, &cid_s);
                Refusal::NoSwarm
            }
            Ok(JoinOutcome::Full) => Refusal::SwarmFull,
            Ok(_) => Refusal::NoSwarm,
            Err(error) => unavailable(error),
        };
        self.forget(None, &swarm, cid, false);
        drop(future);
        Err(refusal)
    }

    /// The swarm `id` here, made if need be, with one more join pending.
    fn swarm_here(&self, id: Id) -> Arc<Swarm> {
        loop {
            let swarm = lock(&self.swarms)
                .entry(id)
                .or_insert_with(|| Arc::new(Swarm::new(id, None, None)))
                .clone();
            let open = {
                let mut st = lock(&swarm.state);
                if st.open {
                    st.pending += 1;
                }
                st.open
            };
            if open {
                return swarm;
            }
            // Closed, and about to leave the map: make a new one.
            let mut swarms = lock(&self.swarms);
            if swarms.get(&id).is_some_and(|s| Arc::ptr_eq(s, &swarm)) {
                swarms.remove(&id);
            }
        }
    }

    /// A stream here is over: the backplane is told (if `remote`), and the
    /// swarm is closed here if it was the initiator, or forgotten if
    /// nobody is left here.
    pub(super) fn forget(&self, remote: Option<&Remote>, swarm: &Arc<Swarm>, cid: Id, slow: bool) {
        let (taken, unused) = {
            let mut st = lock(&swarm.state);
            let taken = st.take(swarm.id, cid, slow);
            (taken, st.open && st.unused())
        };
        if taken.is_some() {
            if let Some(node) = remote.and_then(|r| r.node.get()) {
                node.leave(&swarm.id.to_string(), &cid.to_string());
            }
        }
        if taken == Some(true) || unused {
            self.close(swarm);
        }
    }

    /// `POST /{id}` with a backplane: one round trip checks the token and
    /// the target and publishes.
    pub(super) async fn send_remote(
        self: &Arc<Self>,
        remote: &Remote,
        id: Id,
        out: Outgoing<'_>,
    ) -> Result<(), SendError> {
        let node = self.node(remote).await?;
        let Some(token) = out.token else {
            return Err(Refusal::BadToken.into());
        };
        let target = match out.target {
            Target::All => Ok(None),
            Target::Invalid => Err(SendError::BadCid),
            Target::Peer(cid) => Id::parse(cid)
                .map(Some)
                .ok_or(SendError::Refused(Refusal::NoPeer)),
        };
        // The checks of one instance, in its order: token, data, cid. A bad
        // POST only has its token checked.
        let problem = match (&out.data, &target) {
            (None, _) => Some(SendError::NoData),
            (_, Err(e)) => Some(*e),
            _ => None,
        };
        let to = target.ok().flatten().map(|cid| cid.to_string());
        let (id_s, token_s) = (id.to_string(), token.to_string());
        let signal = Signal {
            swarm: &id_s,
            token: &token_s,
            to: to.as_deref(),
            data: out.data.as_deref().filter(|_| problem.is_none()),
        };
        match node.signal(signal).await.map_err(unavailable)? {
            SignalOutcome::Sent => Ok(()),
            SignalOutcome::Checked => Err(problem.unwrap_or(SendError::NoData)),
            SignalOutcome::NoSwarm => Err(Refusal::NoSwarm.into()),
            SignalOutcome::BadToken => Err(Refusal::BadToken.into()),
            _ => Err(Refusal::NoPeer.into()),
        }
    }

    fn here(&self, swarm: &str) -> Option<Arc<Swarm>> {
        self.find(Id::parse(swarm)?)
    }

    /// A `join` or `leave` for the initiator, if it is here. If it is too
    /// slow its stream fails, and its leave ends the swarm.
    fn tell_initiator_here(&self, swarm: &str, event: &str, cid: &str) {
        let (Some(swarm), Some(cid)) = (self.here(swarm), Id::parse(cid)) else {
            return;
        };
        let _ = lock(&swarm.state).tell_initiator(peer_event(event, swarm.id, cid));
    }

    fn signal_here(&self, swarm: &str, from: &str, to: Option<&str>, data: &str) {
        let (Some(swarm), Some(from)) = (self.here(swarm), Id::parse(from)) else {
            return;
        };
        let target = match to.map(Id::parse) {
            None => None,
            Some(Some(cid)) => Some(cid),
            Some(None) => return,
        };
        let failed = lock(&swarm.state).write_signal(&self.config, from, target, data.to_string());
        for (cid, slow) in failed {
            self.forget(self.remote.as_ref(), &swarm, cid, slow);
        }
    }

    /// This instance lost its lease: every swarm here ends.
    fn lost(&self) {
        let swarms: Vec<Arc<Swarm>> = lock(&self.swarms).values().cloned().collect();
        let node = self.remote.as_ref().and_then(|r| r.node.get());
        for swarm in swarms {
            let cids = lock(&swarm.state).cids();
            if let Some(node) = node {
                // Already removed if this instance was swept; if not, they
                // are removed as soon as the backplane is back.
                for cid in cids {
                    node.leave(&swarm.id.to_string(), &cid.to_string());
                }
            }
            self.close(&swarm);
        }
    }
}

impl SwarmSink for Registry {
    fn deliver(&self, event: SwarmEvent<'_>) {
        match event {
            SwarmEvent::Join { swarm, cid } => self.tell_initiator_here(swarm, "join", cid),
            SwarmEvent::Leave { swarm, cid } => self.tell_initiator_here(swarm, "leave", cid),
            SwarmEvent::Signal {
                swarm,
                from,
                to,
                data,
            } => self.signal_here(swarm, from, to, data),
            SwarmEvent::Close { swarm } => {
                if let Some(swarm) = self.here(swarm) {
                    self.close(&swarm);
                }
            }
            SwarmEvent::Lost => self.lost(),
        }
    }
}
