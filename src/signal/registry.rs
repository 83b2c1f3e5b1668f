//! The swarms: who is connected, with which token, and how events reach them.
//!
//! Two levels of `std::sync::Mutex`, never held together and never across an
//! `.await`: the registry maps swarm ids to swarms (locked for a lookup, an
//! insert or a removal), and each swarm guards its own peers (locked for a
//! join, a leave or one delivery, which is O(peers) for a broadcast). So a
//! broadcast in one swarm never waits for another swarm.
//!
//! A peer's stream is a handle-mode [`DelayedResponse`]: an event is a
//! [`Completion::write`], which never blocks; a write refused because too
//! much waits unsent means the peer reads too slowly, and it is disconnected.
//! When a stream is over for any reason (client gone, write failed, shutdown,
//! or ended by us) the response's outcome hook removes the peer, so there is
//! no task per peer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;

use super::Config;
use crate::delayed::{Completion, DelayedResponse, Heartbeat, ResponseFuture, Shutdown};
use crate::sse::Event;

/// A swarm id, cid or token: 128 bits from the OS CSPRNG, written as 32
/// lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id([u8; 16]);

impl Id {
    pub(crate) fn random() -> Result<Id, crate::Error> {
        crate::id::random_bytes().map(Id)
    }

    /// Parses 32 lowercase hex characters; anything else is no id we issued.
    pub(crate) fn parse(s: &str) -> Option<Id> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Id(bytes))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a request was turned down; rendered by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoSwarm,
    SwarmFull,
    TooManySwarms,
    BadToken,
    NoPeer,
    PeerTooSlow,
    NoRandomness,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::NoSwarm | Refusal::NoPeer | Refusal::PeerTooSlow => StatusCode::NOT_FOUND,
            Refusal::SwarmFull | Refusal::TooManySwarms | Refusal::NoRandomness => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::BadToken => StatusCode::UNAUTHORIZED,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::NoSwarm => "no such swarm",
            Refusal::SwarmFull => "swarm is full",
            Refusal::TooManySwarms => "too many swarms",
            Refusal::BadToken => "token is not a peer's of this swarm",
            Refusal::NoPeer => "no such peer (cid)",
            Refusal::PeerTooSlow => "peer was too slow and has been disconnected",
            Refusal::NoRandomness => "no randomness available",
        }
    }
}

/// A parsed POST, ready to be checked and delivered.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    /// `None` when missing, not a string, or not shaped like a token.
    pub(crate) token: Option<Id>,
    /// The `data` value as one line of JSON; `None` when missing or null.
    pub(crate) data: Option<String>,
    pub(crate) target: Target<'a>,
}

/// Whom a signal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// No `cid` (missing, null or empty): every peer.
    All,
    /// The peer with this `cid`.
    Peer(&'a str),
    /// A `cid` that is not a string.
    Invalid,
}

/// Why a signal was not sent, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    Refused(Refusal),
    NoData,
    BadCid,
}

impl From<Refusal> for SendError {
    fn from(r: Refusal) -> Self {
        SendError::Refused(r)
    }
}

pub(crate) struct Registry {
    pub(crate) config: Config,
    /// Headers, heartbeat and queue limit of every stream, built once.
    template: DelayedResponse,
    swarms: Mutex<HashMap<Id, Arc<Swarm>>>,
}

struct Swarm {
    id: Id,
    state: Mutex<SwarmState>,
}

struct SwarmState {
    /// False once the initiator left: nobody may join or signal any more.
    open: bool,
    initiator: Id,
    peers: HashMap<Id, Peer>,
    /// token → cid: a token belongs to exactly one peer.
    tokens: HashMap<Id, Id>,
}

struct Peer {
    token: Id,
    completion: Completion,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are map updates and non-blocking writes; a panic
    // cannot leave a swarm half-updated in a way later calls trip over.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn new(config: Config) -> Self {
        let template = DelayedResponse::new()
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            )
            .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"))
            // nginx buffers proxied responses unless told not to.
            .header(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            )
            .heartbeat(Heartbeat::sse(config.keep_alive))
            .max_buffered(config.peer_queue_bytes);
        Registry {
            config,
            template,
            swarms: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn swarm_count(&self) -> usize {
        lock(&self.swarms).len()
    }

    pub(crate) fn peer_count(&self, id: &str) -> Option<usize> {
        let swarm = self.find(Id::parse(id)?)?;
        let st = lock(&swarm.state);
        st.open.then(|| st.peers.len())
    }

    fn find(&self, id: Id) -> Option<Arc<Swarm>> {
        lock(&self.swarms).get(&id).cloned()
    }

    /// Is there an open swarm with this id? (A POST checks before reading
    /// its body.)
    pub(crate) fn exists(&self, id: Id) -> bool {
        self.find(id).is_some()
    }

    /// `GET /`: a new swarm whose initiator is this stream.
    pub(crate) fn create(
        self: &Arc<Self>,
        shutdown: Option<&Shutdown>,
    ) -> Result<ResponseFuture, Refusal> {
        if self.at_swarm_limit(&lock(&self.swarms)) {
            return Err(Refusal::TooManySwarms);
        }
        let (id, cid, token) = (random()?, random()?, random()?);
        let swarm = Arc::new(Swarm {
            id,
            state: Mutex::new(SwarmState {
                open: true,
                initiator: cid,
                peers: HashMap::new(),
                tokens: HashMap::new(),
            }),
        });
        let (future, completion) =
            self.open_stream(&swarm, cid, token, StatusCode::CREATED, shutdown);
        {
            let mut st = lock(&swarm.state);
            st.tokens.insert(token, cid);
            st.peers.insert(cid, Peer { token, completion });
        }
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
    pub(crate) fn join(
        self: &Arc<Self>,
        id: Id,
        shutdown: Option<&Shutdown>,
    ) -> Result<ResponseFuture, Refusal> {
        let swarm = self.find(id).ok_or(Refusal::NoSwarm)?;
        let (cid, token) = (random()?, random()?);
        let (future, completion) = self.open_stream(&swarm, cid, token, StatusCode::OK, shutdown);
        let admitted = {
            let mut st = lock(&swarm.state);
            if !st.open {
                Err(Refusal::NoSwarm)
            } else if self
                .config
                .max_peers
                .is_some_and(|max| st.peers.len() >= max)
            {
                Err(Refusal::SwarmFull)
            } else {
                st.tokens.insert(token, cid);
                st.peers.insert(cid, Peer { token, completion });
                Ok(!st.tell_initiator(peer_event("join", id, cid)))
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
    /// commits the head: the client sees the status at once).
    fn open_stream(
        self: &Arc<Self>,
        swarm: &Arc<Swarm>,
        cid: Id,
        token: Id,
        status: StatusCode,
        shutdown: Option<&Shutdown>,
    ) -> (ResponseFuture, Completion) {
        let mut builder = self.template.clone();
        if let Some(shutdown) = shutdown {
            builder = builder.shutdown(shutdown.clone());
        }
        let registry = Arc::downgrade(self);
        let weak_swarm = Arc::downgrade(swarm);
        let (future, completion) = builder
            .status(status)
            .pending_status(status)
            // Runs exactly once, when the stream is over for any reason.
            .on_outcome(move |outcome| {
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
        let close = {
            let mut st = lock(&swarm.state);
            st.remove(swarm.id, cid, false)
        };
        if close {
            self.close(swarm);
        }
    }

    /// Ends the swarm: every remaining stream gets `close` and ends cleanly,
    /// and the id is forgotten.
    fn close(&self, swarm: &Arc<Swarm>) {
        let peers = {
            let mut st = lock(&swarm.state);
            st.open = false;
            st.tokens.clear();
            std::mem::take(&mut st.peers)
        };
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
        for peer in peers.into_values() {
            peer.completion.end(event.clone());
        }
    }

    /// `POST /{id}`: checks the token and the target, then delivers.
    pub(crate) fn send(&self, id: Id, out: Outgoing<'_>) -> Result<(), SendError> {
        let swarm = self.find(id).ok_or(Refusal::NoSwarm)?;
        let mut close = false;
        let result = {
            let mut st = lock(&swarm.state);
            st.deliver(&self.config, swarm.id, out, &mut close)
        };
        if close {
            self.close(&swarm);
        }
        result
    }
}

impl SwarmState {
    /// The sender's cid, if `token` belongs to a current peer.
    fn sender(&self, token: Option<Id>) -> Option<Id> {
        // Tokens are 128 random bits, and the map hashes with a random
        // SipHash key, so the lookup's timing gives nothing away that
        // would help guess one.
        self.tokens.get(&token?).copied()
    }

    fn deliver(
        &mut self,
        config: &Config,
        swarm_id: Id,
        out: Outgoing<'_>,
        close: &mut bool,
    ) -> Result<(), SendError> {
        if !self.open {
            return Err(Refusal::NoSwarm.into());
        }
        let from = self.sender(out.token).ok_or(Refusal::BadToken)?;
        let data = out.data.ok_or(SendError::NoData)?;
        let target = match out.target {
            Target::All => None,
            Target::Invalid => return Err(SendError::BadCid),
            Target::Peer(cid) => {
                // Only ids we issued can match: no lookup of arbitrary keys.
                let cid = Id::parse(cid)
                    .filter(|c| self.peers.contains_key(c))
                    .ok_or(Refusal::NoPeer)?;
                Some(cid)
            }
        };
        let json = if config.envelope {
            format!(r#"{{"from":"{from}","data":{data}}}"#)
        } else {
            data
        };
        let event = Event::new().event("signal").data(json).encode();
        // Peers whose write failed: (cid, too slow?). A write also fails for
        // a stream that is closing; its outcome hook may not have run yet.
        let mut failed = Vec::new();
        match target {
            Some(cid) => {
                if let Some(peer) = self.peers.get(&cid) {
                    if let Err(e) = peer.completion.write(event) {
                        failed.push((cid, e.is_limit()));
                    }
                }
            }
            None => {
                for (cid, peer) in &self.peers {
                    if !config.echo && *cid == from {
                        continue;
                    }
                    if let Err(e) = peer.completion.write(event.clone()) {
                        failed.push((*cid, e.is_limit()));
                    }
                }
            }
        }
        for &(cid, slow) in &failed {
            if self.remove(swarm_id, cid, slow) {
                *close = true;
            }
        }
        match (target, failed.first()) {
            (Some(_), Some(&(_, true))) => Err(Refusal::PeerTooSlow.into()),
            (Some(_), Some(&(_, false))) => Err(Refusal::NoPeer.into()),
            _ => Ok(()),
        }
    }

    /// Removes a peer; true when the swarm must now close (the initiator
    /// left, or cannot even be told that a peer left).
    fn remove(&mut self, swarm_id: Id, cid: Id, slow: bool) -> bool {
        let Some(peer) = self.peers.remove(&cid) else {
            return false;
        };
        self.tokens.remove(&peer.token);
        if slow {
            tracing::debug!(swarm = %swarm_id, %cid, "peer too slow; disconnected");
            peer.completion
                .fail("peer too slow: its event queue is full");
        } else {
            tracing::debug!(swarm = %swarm_id, %cid, "peer left");
        }
        if cid == self.initiator {
            return true;
        }
        !self.tell_initiator(peer_event("leave", swarm_id, cid))
    }

    /// Writes to the initiator; false if it is gone or too slow (then the
    /// swarm must close, so the initiator's stream is failed here).
    fn tell_initiator(&mut self, event: Bytes) -> bool {
        let Some(initiator) = self.peers.get(&self.initiator) else {
            return false;
        };
        match initiator.completion.write(event) {
            Ok(()) => true,
            Err(error) => {
                if error.is_limit() {
                    initiator
                        .completion
                        .fail("peer too slow: its event queue is full");
                }
                false
            }
        }
    }
}

fn peer_event(name: &str, swarm: Id, cid: Id) -> Bytes {
    Event::new()
        .event(name)
        .data(format!(r#"{{"id":"{swarm}","cid":"{cid}"}}"#))
        .encode()
}

fn random() -> Result<Id, Refusal> {
    Id::random().map_err(|error| {
        tracing::error!(%error, "the OS random number generator failed");
        Refusal::NoRandomness
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // koa-signal drew ids and tokens from Math.random; these come from the
    // OS CSPRNG (getrandom), in koa-signal's 32-lowercase-hex shape.
    #[test]
    fn ids_round_trip_as_32_lowercase_hex() {
        let id = Id::random().unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert!(Id::parse(&s) == Some(id));
    }

    #[test]
    fn ids_are_distinct() {
        assert!(Id::random().unwrap() != Id::random().unwrap());
    }

    #[test]
    fn parse_rejects_everything_but_32_lowercase_hex() {
        assert!(Id::parse("toString").is_none());
        assert!(Id::parse(&"A".repeat(32)).is_none());
        assert!(Id::parse(&"a".repeat(31)).is_none());
        assert!(Id::parse(&"g".repeat(32)).is_none());
        assert!(Id::parse(&"0".repeat(32)).is_some());
    }
}
