//! One swarm: its peers, their tokens, and the delivery of one signal.
//!
//! Everything here runs under the swarm's own lock (see the registry), so
//! every method is O(1) or O(peers) and never awaits.

use std::collections::hash_map::IntoValues;
use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::builder::Config;
use super::id::Id;
use super::registry::Refusal;
use crate::backplane::Listening;
use crate::delayed::Completion;
use crate::limit::Permit;
use crate::sse::Event;

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

pub(super) struct Swarm {
    pub(super) id: Id,
    pub(super) state: Mutex<SwarmState>,
    /// With a backplane: this instance's subscription to the swarm's
    /// events, taken by its first local peer and dropped with the swarm.
    pub(super) listening: tokio::sync::OnceCell<Listening>,
}

impl Swarm {
    /// `initiator`: its cid, when its stream is here. `permit`: one unit of
    /// the creator's `max_swarms_per_client`.
    pub(super) fn new(id: Id, initiator: Option<Id>, permit: Option<Permit>) -> Swarm {
        Swarm {
            id,
            state: Mutex::new(SwarmState {
                open: true,
                permit,
                initiator,
                pending: 0,
                peers: HashMap::new(),
                tokens: HashMap::new(),
            }),
            listening: tokio::sync::OnceCell::new(),
        }
    }
}

pub(super) struct SwarmState {
    /// False once the initiator left: nobody may join or signal any more.
    pub(super) open: bool,
    /// The creator's swarm permit, given back when the swarm closes.
    permit: Option<Permit>,
    /// The initiator's cid, if its stream is here (with a backplane, it may
    /// be on another instance).
    initiator: Option<Id>,
    /// With a backplane: joins on their way (the swarm is kept while there
    /// are some, even without peers here).
    pub(super) pending: usize,
    peers: HashMap<Id, Peer>,
    /// token → cid: a token belongs to exactly one peer.
    tokens: HashMap<Id, Id>,
}

pub(super) struct Peer {
    token: Id,
    pub(super) completion: Completion,
}

impl SwarmState {
    /// How many peers are connected, while the swarm is open.
    pub(super) fn peer_count(&self) -> Option<usize> {
        self.open.then_some(self.peers.len())
    }

    pub(super) fn add(&mut self, cid: Id, token: Id, completion: Completion) {
        self.tokens.insert(token, cid);
        self.peers.insert(cid, Peer { token, completion });
    }

    /// Marks the swarm closed and hands out its peers, whose streams the
    /// caller ends outside the lock.
    pub(super) fn close(&mut self) -> IntoValues<Id, Peer> {
        self.open = false;
        // Its lock is a leaf: nothing is locked while it is held.
        drop(self.permit.take());
        self.tokens.clear();
        std::mem::take(&mut self.peers).into_values()
    }

    /// The sender's cid, if `token` belongs to a current peer.
    fn sender(&self, token: Option<Id>) -> Option<Id> {
        // Tokens are 128 random bits, and the map hashes with a random
        // SipHash key, so the lookup's timing gives nothing away that
        // would help guess one.
        self.tokens.get(&token?).copied()
    }

    /// Checks a POST and writes its `signal` event to the target peers.
    /// Sets `close` when the swarm must now close (its initiator failed).
    pub(super) fn deliver(
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
        let failed = self.write_signal(config, from, target, data);
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

    /// Writes a `signal` event from `from` to `target` (or every peer here);
    /// returns the peers whose write failed: (cid, too slow?). A write also
    /// fails for a stream that is closing; its outcome hook may not have run
    /// yet.
    pub(super) fn write_signal(
        &self,
        config: &Config,
        from: Id,
        target: Option<Id>,
        data: String,
    ) -> Vec<(Id, bool)> {
        let json = if config.envelope {
            format!(r#"{{"from":"{from}","data":{data}}}"#)
        } else {
            data
        };
        let event = Event::new().event("signal").data(json).encode();
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
        failed
    }

    /// Is nobody here, and nobody on the way? (With a backplane the swarm
    /// is then forgotten here.)
    pub(super) fn unused(&self) -> bool {
        self.peers.is_empty() && self.pending == 0
    }

    /// The cids of the peers here.
    pub(super) fn cids(&self) -> Vec<Id> {
        self.peers.keys().copied().collect()
    }

    /// Removes a peer; true when the swarm must now close (the initiator
    /// left, or cannot even be told that a peer left).
    pub(super) fn remove(&mut self, swarm_id: Id, cid: Id, slow: bool) -> bool {
        match self.take(swarm_id, cid, slow) {
            None => false,
            Some(true) => true,
            Some(false) => !self.tell_initiator(peer_event("leave", swarm_id, cid)),
        }
    }

    /// Removes a peer and tells nobody; `Some(initiator?)` if it was here.
    pub(super) fn take(&mut self, swarm_id: Id, cid: Id, slow: bool) -> Option<bool> {
        let peer = self.peers.remove(&cid)?;
        self.tokens.remove(&peer.token);
        if slow {
            tracing::debug!(swarm = %swarm_id, %cid, "peer too slow; disconnected");
            peer.completion
                .fail("peer too slow: its event queue is full");
        } else {
            tracing::debug!(swarm = %swarm_id, %cid, "peer left");
        }
        Some(self.initiator == Some(cid))
    }

    /// Writes to the initiator; false if it is gone or too slow (then the
    /// swarm must close, so the initiator's stream is failed here).
    pub(super) fn tell_initiator(&mut self, event: Bytes) -> bool {
        let Some(initiator) = self.initiator.and_then(|cid| self.peers.get(&cid)) else {
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

/// A `join` or `leave` event for the initiator.
pub(super) fn peer_event(name: &str, swarm: Id, cid: Id) -> Bytes {
    Event::new()
        .event(name)
        .data(format!(r#"{{"id":"{swarm}","cid":"{cid}"}}"#))
        .encode()
}
