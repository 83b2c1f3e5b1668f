//! The swarms of one service: who is connected, and how a stream joins,
//! leaves and ends its swarm.
//!
//! Two levels of `std::sync::Mutex`, never held together and never across an
//! `.await`: the registry maps swarm ids to swarms (locked for a lookup, an
//! insert or a removal), and each swarm guards its own peers (locked for a
//! join, a leave or one delivery, which is O(peers) for a broadcast; see
//! `swarm.rs`). So a broadcast in one swarm never waits for another swarm.
//!
//! A peer's stream is a handle-mode [`DelayedResponse`]: an event is a
//! [`Completion::write`], which never blocks; a write refused because too
//! much waits unsent means the peer reads too slowly, and it is disconnected.
//! When a stream is over for any reason (client gone, write failed, shutdown,
//! or ended by us) the response's outcome hook removes the peer, so there is
//! no task per peer.
//!
//! With a backplane the swarms span instances: the map holds only the
//! swarms with a peer here, and `remote.rs` does the rest.
//!
//! Per-client caps: a stream holds a [`Permit`] of its client's peer cap
//! from before its `connect` event until its outcome hook runs, so it is
//! given back however the stream ends; a swarm holds one of its creator's
//! swarm cap until it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

use super::builder::Config;
use super::id::Id;
use super::remote::Remote;
use super::swarm::{peer_event, Outgoing, SendError, Swarm};
use crate::backplane::SwarmBackplane;
use crate::delayed::{Completion, DelayedResponse, Heartbeat, ResponseFuture};
use crate::http::lock;
use crate::limit::{ClientKey, PerClient, Permit, RateLimit};
use crate::sse::Event;

/// Why a request was turned down; rendered by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoSwarm,
    SwarmFull,
    TooManySwarms,
    /// The client holds `max_peers_per_client` streams.
    ClientPeers,
    /// The client's `max_swarms_per_client` swarms are open.
    ClientSwarms,
    BadToken,
    NoPeer,
    PeerTooSlow,
    NoRandomness,
    /// The backplane is out of reach.
    Unavailable,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::NoSwarm | Refusal::NoPeer | Refusal::PeerTooSlow => StatusCode::NOT_FOUND,
            Refusal::SwarmFull
            | Refusal::TooManySwarms
            | Refusal::NoRandomness
            | Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::ClientPeers | Refusal::ClientSwarms => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BadToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// One line of `text/plain`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::NoSwarm => "no such swarm\n",
            Refusal::SwarmFull => "swarm is full\n",
            Refusal::TooManySwarms => "too many swarms\n",
            Refusal::ClientPeers => "too many open streams from this client\n",
            Refusal::ClientSwarms => "too many open swarms from this client\n",
            Refusal::BadToken => "token is not a peer's of this swarm\n",
            Refusal::NoPeer => "no such peer (cid)\n",
            Refusal::PeerTooSlow => "peer was too slow and has been disconnected\n",
            Refusal::NoRandomness => "no randomness available\n",
            Refusal::Unavailable => "the swarm registry is unavailable; retry\n",
        }
    }
}

pub(crate) struct Registry {
    pub(crate) config: Config,
    /// The settings of every stream, built once (an initiator's stream
    /// answers `201`, a joined one `200`), so that a stream copies none.
    initiator_stream: DelayedResponse,
    peer_stream: DelayedResponse,
    /// The swarms with a peer here (with a backplane, the others are
    /// elsewhere).
    pub(super) swarms: Mutex<HashMap<Id, Arc<Swarm>>>,
    peers_per_client: Arc<PerClient>,
    pub(super) swarms_per_client: Arc<PerClient>,
    signal_rate: Option<RateLimit>,
    /// The backplane, if the swarms span instances (see `remote.rs`).
    pub(super) remote: Option<Remote>,
}

impl Registry {
    pub(crate) fn new(config: Config, backplane: Option<Arc<dyn SwarmBackplane>>) -> Self {
        let stream = |status| {
            DelayedResponse::new()
                .heartbeat(Heartbeat::sse(config.keep_alive))
                .max_buffered(config.peer_queue_bytes)
                .status(status)
                .pending_status(status)
        };
        Registry {
            initiator_stream: stream(StatusCode::CREATED),
            peer_stream: stream(StatusCode::OK),
            swarms: Mutex::new(HashMap::new()),
            peers_per_client: PerClient::new(config.max_peers_per_client),
            swarms_per_client: PerClient::new(config.max_swarms_per_client),
            signal_rate: config.signal_rate_per_client.map(RateLimit::new),
            remote: backplane.map(Remote::new),
            config,
        }
    }

    pub(crate) fn swarm_count(&self) -> usize {
        lock(&self.swarms).len()
    }

    pub(crate) fn peer_count(&self, id: &str) -> Option<usize> {
        let swarm = self.find(Id::parse(id)?)?;
        let count = lock(&swarm.state).peer_count();
        count
    }

    pub(super) fn find(&self, id: Id) -> Option<Arc<Swarm>> {
        lock(&self.swarms).get(&id).cloned()
    }

    /// Is there an open swarm with this id? (A POST checks before reading
    /// its body.)
    pub(crate) async fn exists(self: &Arc<Self>, id: Id) -> Result<bool, Refusal> {
        if self.find(id).is_some() {
            return Ok(true);
        }
        match &self.remote {
            Some(remote) => self.exists_remote(remote, id).await,
            None => Ok(false),
        }
    }

    /// Takes a token from `client`'s bucket, if POSTs are rate-limited;
    /// `Err(wait)` until the next one.
    pub(crate) fn check_signal_rate(&self, client: &ClientKey) -> Result<(), Duration> {
        match &self.signal_rate {
            Some(limit) => limit.check(client),
            None => Ok(()),
        }
    }

    /// One stream of `client`'s cap.
    pub(super) fn peer_permit(&self, client: &ClientKey) -> Result<Permit, Refusal> {
        self.peers_per_client.try_acquire(client).ok_or_else(|| {
            tracing::debug!(%client, "signal: client at its cap of open streams");
            Refusal::ClientPeers
        })
    }

    /// `GET /`: a new swarm whose initiator is this stream. `base` is the
    /// request's builder (its shutdown signal); `client` is who asks.
    pub(crate) async fn create(
        self: &Arc<Self>,
        base: DelayedResponse,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        match &self.remote {
            Some(remote) => self.create_remote(remote, base, client).await,
            None => self.create_here(base, client),
        }
    }

    /// `GET /` without a backplane.
    fn create_here(
        self: &Arc<Self>,
        base: DelayedResponse,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        // The client's own caps first: a client at its cap is told so
        // (429) even when the service is full too.
        let peer_permit = self.peer_permit(client)?;
        let swarm_permit = self.swarms_per_client.try_acquire(client).ok_or_else(|| {
            tracing::debug!(%client, "signal: client at its cap of open swarms");
            Refusal::ClientSwarms
        })?;
        if self.at_swarm_limit(&lock(&self.swarms)) {
            return Err(Refusal::TooManySwarms);
        }
        let (id, cid, token) = (random()?, random()?, random()?);
        let swarm = Arc::new(Swarm::new(id, Some(cid), Some(swarm_permit)));
        let (future, completion) =
            self.open_stream(base, &swarm, cid, token, peer_permit, StatusCode::CREATED);
        lock(&swarm.state).add(cid, token, completion);
        {
            let mut swarms = lock(&self.swarms);
            if self.at_swarm_limit(&swarms) {
                // Another create won the last place; dropping `future`
                // reports an abort to a swarm that is not registered.
                return Err(Refusal::TooManySwarms);
            }
            swarms.insert(id, swarm);
        }
        tracing::debug!(swarm = %id, %cid, "swarm created");
        Ok(future)
    }

    fn at_swarm_limit(&self, swarms: &HashMap<Id, Arc<Swarm>>) -> bool {
        self.config
            .max_swarms
            .is_some_and(|max| swarms.len() >= max)
    }

    /// `GET /{id}`: joins an open swarm.
    pub(crate) async fn join(
        self: &Arc<Self>,
        base: DelayedResponse,
        id: Id,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        match &self.remote {
            Some(remote) => self.join_remote(remote, base, id, client).await,
            None => self.join_here(base, id, client),
        }
    }

    /// `GET /{id}` without a backplane.
    fn join_here(
        self: &Arc<Self>,
        base: DelayedResponse,
        id: Id,
        client: &ClientKey,
    ) -> Result<ResponseFuture, Refusal> {
        let swarm = self.find(id).ok_or(Refusal::NoSwarm)?;
        let permit = self.peer_permit(client)?;
        let (cid, token) = (random()?, random()?);
        let (future, completion) =
            self.open_stream(base, &swarm, cid, token, permit, StatusCode::OK);
        let admitted = {
            let mut st = lock(&swarm.state);
            match st.peer_count() {
                None => Err(Refusal::NoSwarm),
                Some(n) if self.config.max_peers.is_some_and(|max| n >= max) => {
                    Err(Refusal::SwarmFull)
                }
                Some(_) => {
                    st.add(cid, token, completion);
                    Ok(!st.tell_initiator(peer_event("join", id, cid)))
                }
            }
        };
        // The swarm lock is released here: dropping `future` on a refusal
        // runs its outcome hook, which takes that lock.
        let close = admitted?;
        tracing::debug!(swarm = %id, %cid, "peer joined");
        if close {
            self.close(&swarm);
        }
        Ok(future)
    }

    /// A peer's stream, with its `connect` event already queued (which
    /// commits the head: the client sees the status at once). The stream
    /// holds `permit` until it is over.
    pub(super) fn open_stream(
        self: &Arc<Self>,
        base: DelayedResponse,
        swarm: &Arc<Swarm>,
        cid: Id,
        token: Id,
        permit: Permit,
        status: StatusCode,
    ) -> (ResponseFuture, Completion) {
        let registry = Arc::downgrade(self);
        let weak_swarm = Arc::downgrade(swarm);
        // The hook is an `Fn` kept as long as the response's settings, so
        // the permit is taken out of it rather than dropped with it.
        let permit = Mutex::new(Some(permit));
        let settings = if status == StatusCode::CREATED {
            &self.initiator_stream
        } else {
            &self.peer_stream
        };
        let (future, completion) = settings
            .clone()
            .with_request_of(&base)
            // Runs exactly once, when the stream is over for any reason.
            .on_outcome(move |outcome| {
                // Given back before `leave` goes out, so a client that sees
                // its peer's `leave` (or its stream's end) may open another.
                drop(lock(&permit).take());
                if let (Some(registry), Some(swarm)) = (registry.upgrade(), weak_swarm.upgrade()) {
                    tracing::debug!(swarm = %swarm.id, %cid, %outcome, "peer stream over");
                    registry.leave(&swarm, cid);
                }
            })
            .handle();
        let connect = Event::new()
            .event("connect")
            .data(format!(
                r#"{{"id":"{}","cid":"{cid}","token":"{token}"}}"#,
                swarm.id
            ))
            .encode();
        // A fresh handle has nothing queued, so this cannot hit the limit.
        let _ = completion.write(connect);
        (future, completion)
    }

    /// Removes peer `cid` (if still there) after its stream is over:
    /// `leave` to the initiator, or the end of the swarm if it was the
    /// initiator.
    fn leave(&self, swarm: &Arc<Swarm>, cid: Id) {
        if let Some(remote) = &self.remote {
            return self.forget(Some(remote), swarm, cid, false);
        }
        let close = lock(&swarm.state).remove(swarm.id, cid, false);
        if close {
            self.close(swarm);
        }
    }

    /// Ends the swarm: every remaining stream gets `close` and ends cleanly,
    /// and the id is forgotten.
    pub(super) fn close(&self, swarm: &Arc<Swarm>) {
        let peers = lock(&swarm.state).close();
        {
            let mut swarms = lock(&self.swarms);
            if swarms.get(&swarm.id).is_some_and(|s| Arc::ptr_eq(s, swarm)) {
                swarms.remove(&swarm.id);
            }
        }
        tracing::debug!(swarm = %swarm.id, peers = peers.len(), "swarm closed");
        // A last `close` event, so that a browser can `close()` its
        // EventSource instead of reconnecting to a swarm that is gone.
        let event = Event::new()
            .event("close")
            .data(format!(r#"{{"id":"{}"}}"#, swarm.id))
            .encode();
        for peer in peers {
            peer.completion.end(event.clone());
        }
    }

    /// `POST /{id}`: checks the token and the target, then delivers.
    pub(crate) async fn send(self: &Arc<Self>, id: Id, out: Outgoing<'_>) -> Result<(), SendError> {
        if let Some(remote) = &self.remote {
            return self.send_remote(remote, id, out).await;
        }
        let swarm = self.find(id).ok_or(Refusal::NoSwarm)?;
        let mut close = false;
        let result = lock(&swarm.state).deliver(&self.config, swarm.id, out, &mut close);
        if close {
            self.close(&swarm);
        }
        result
    }
}

pub(super) fn random() -> Result<Id, Refusal> {
    Id::random().map_err(|error| {
        tracing::error!(%error, "the OS random number generator failed");
        Refusal::NoRandomness
    })
}
