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
use crate::delayed::Completion;
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
}

impl Swarm {
    pub(super) fn new(id: Id, initiator: Id) -> Swarm {
        Swarm {
            id,
            state: Mutex::new(SwarmState {
                open: true,
                initiator,
                peers: HashMap::new(),
                tokens: HashMap::new(),
            }),
        }
    }
}

pub(super) struct SwarmState {
    /// False once the initiator left: nobody may join or signal any more.
    pub(super) open: bool,
    initiator: Id,
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
    pub(super) fn remove(&mut self, swarm_id: Id, cid: Id, slow: bool) -> bool {
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
    pub(super) fn tell_initiator(&mut self, event: Bytes) -> bool {
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

/// A `join` or `leave` event for the initiator.
pub(super) fn peer_event(name: &str, swarm: Id, cid: Id) -> Bytes {
    Event::new()
        .event(name)
        .data(format!(r#"{{"id":"{swarm}","cid":"{cid}"}}"#))
        .encode()
}
