//! The paths of the Piping mode: who waits on each, and which are busy with
//! a transfer.
//!
//! One `std::sync::Mutex` around one map; every critical section is a
//! lookup, an insert or a remove, and none spans an `.await`. Lines for a
//! waiting sender are written under the lock ([`Completion::write`] only
//! queues), so that they come out in the order the events happened.
//! Nothing is dropped under the lock: what leaves the map is handed back.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use http::Response;
use tokio::sync::oneshot;

use super::Progress;
use crate::body::Body;
use crate::delayed::Completion;
use crate::http::lock;
use crate::limit::Permit;

/// Where a receiver's response is sent once its transfer starts.
pub(crate) type Reply = oneshot::Sender<Response<Body>>;

/// The paths of one pipe. Clones share them.
#[derive(Clone)]
pub(crate) struct Paths {
    shared: Arc<Shared>,
}

/// A handle that does not keep the paths alive (for the guards of waiting
/// requests and for transfers).
#[derive(Clone)]
pub(crate) struct WeakPaths(Weak<Shared>);

struct Shared {
    map: Mutex<HashMap<String, Path>>,
    next_serial: AtomicU64,
}

enum Path {
    /// Someone waits: the sender, some receivers, or both.
    Pending(Pending),
    /// A transfer runs; the path is busy until it ends.
    Established,
}

struct Pending {
    /// How many receivers the path waits for (`?n=`).
    n: u32,
    sender: Option<WaitingSender>,
    receivers: Vec<WaitingReceiver>,
}

/// A sender that waits for its receivers.
pub(crate) struct WaitingSender {
    pub(crate) serial: u64,
    pub(crate) completion: Completion,
    pub(crate) progress: Arc<Progress>,
    /// Hands the receivers to the sender's task when the transfer starts.
    pub(crate) start: oneshot::Sender<Vec<Reply>>,
    pub(crate) _permit: Option<Permit>,
}

/// A receiver that waits for its sender or for the other receivers.
pub(crate) struct WaitingReceiver {
    pub(crate) serial: u64,
    pub(crate) reply: Reply,
    pub(crate) _permit: Option<Permit>,
}

/// Why a sender or receiver was refused (each is a `400`, but `Busy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Established,
    AnotherSender,
    /// The path waits for `expected` receivers, the request said `got`.
    Mismatch {
        expected: u32,
        got: u32,
    },
    /// All `n` receivers are there already.
    ReceiversFull,
    /// `max` paths are in use.
    Busy,
}

/// A sender that joined: the transfer's receivers, if that made the set
/// complete.
pub(crate) struct SenderJoined {
    pub(crate) start: Option<Vec<Reply>>,
}

/// A receiver that made the set complete: the sender's task to start, and
/// every receiver.
pub(crate) struct Established {
    pub(crate) start: oneshot::Sender<Vec<Reply>>,
    pub(crate) receivers: Vec<Reply>,
}

/// What a receiver's join gives back: nothing to do yet, or a transfer to
/// start; and what left the map (dropped by the caller, outside the lock).
pub(crate) type ReceiverJoined = Option<Established>;

impl Paths {
    pub(crate) fn new() -> Self {
        Paths {
            shared: Arc::new(Shared {
                map: Mutex::new(HashMap::new()),
                next_serial: AtomicU64::new(1),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakPaths {
        WeakPaths(Arc::downgrade(&self.shared))
    }

    /// A number that tells one waiting request from another.
    pub(crate) fn serial(&self) -> u64 {
        self.shared.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// How many requests wait: senders and receivers.
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.shared.map)
            .values()
            .map(|p| match p {
                Path::Pending(p) => usize::from(p.sender.is_some()) + p.receivers.len(),
                Path::Established => 0,
            })
            .sum()
    }

    /// How many paths are in use (waiting or transferring).
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared.map).len()
    }

    /// A sender for `path`, with `n` receivers. On success the sender's
    /// first lines are written (under the lock, so they come first).
    pub(crate) fn join_sender(
        &self,
        path: &str,
        n: u32,
        max_paths: usize,
        sender: WaitingSender,
    ) -> Result<SenderJoined, (Refused, WaitingSender)> {
        let mut map = lock(&self.shared.map);
        let len = map.len();
        match map.entry(path.to_owned()) {
            Entry::Vacant(v) => {
                if len >= max_paths {
                    return Err((Refused::Busy, sender));
                }
                let _ = sender.completion.write(waiting_line(n));
                v.insert(Path::Pending(Pending {
                    n,
                    sender: Some(sender),
                    receivers: Vec::new(),
                }));
                Ok(SenderJoined { start: None })
            }
            Entry::Occupied(mut o) => {
                let Path::Pending(pending) = o.get_mut() else {
                    return Err((Refused::Established, sender));
                };
                if pending.sender.is_some() {
                    return Err((Refused::AnotherSender, sender));
                }
                if pending.n != n {
                    let expected = pending.n;
                    return Err((Refused::Mismatch { expected, got: n }, sender));
                }
                let k = pending.receivers.len();
                let _ = sender.completion.write(waiting_line(n));
                let _ = sender.completion.write(connected_line(k));
                sender.progress.set_connected(k);
                if k == n as usize {
                    let _ = sender.completion.write(start_line(k));
                    let receivers = std::mem::take(&mut pending.receivers);
                    o.insert(Path::Established);
                    drop(map);
                    // Permits go back outside the lock.
                    let replies = receivers.into_iter().map(|r| r.reply).collect();
                    return Ok(SenderJoined {
                        start: Some(replies),
                    });
                }
                pending.sender = Some(sender);
                Ok(SenderJoined { start: None })
            }
        }
    }

    /// A receiver for `path`, with `n` receivers.
    pub(crate) fn join_receiver(
        &self,
        path: &str,
        n: u32,
        max_paths: usize,
        receiver: WaitingReceiver,
    ) -> Result<ReceiverJoined, (Refused, WaitingReceiver)> {
        let mut map = lock(&self.shared.map);
        let len = map.len();
        match map.entry(path.to_owned()) {
            Entry::Vacant(v) => {
                if len >= max_paths {
                    return Err((Refused::Busy, receiver));
                }
                v.insert(Path::Pending(Pending {
                    n,
                    sender: None,
                    receivers: vec![receiver],
                }));
                Ok(None)
            }
            Entry::Occupied(mut o) => {
                let Path::Pending(pending) = o.get_mut() else {
                    return Err((Refused::Established, receiver));
                };
                if pending.n != n {
                    let expected = pending.n;
                    return Err((Refused::Mismatch { expected, got: n }, receiver));
                }
                if pending.receivers.len() >= n as usize {
                    return Err((Refused::ReceiversFull, receiver));
                }
                pending.receivers.push(receiver);
                let k = pending.receivers.len();
                let Some(sender) = &pending.sender else {
                    return Ok(None);
                };
                let _ = sender
                    .completion
                    .write(&b"[INFO] A receiver was connected.\n"[..]);
                sender.progress.set_connected(k);
                if k < n as usize {
                    return Ok(None);
                }
                let _ = sender.completion.write(start_line(k));
                let Path::Pending(pending) = std::mem::replace(o.get_mut(), Path::Established)
                else {
                    return Ok(None);
                };
                drop(map);
                let Some(sender) = pending.sender else {
                    return Ok(None);
                };
                Ok(Some(Established {
                    start: sender.start,
                    receivers: pending.receivers.into_iter().map(|r| r.reply).collect(),
                }))
            }
        }
    }
}

impl WeakPaths {
    /// The waiting sender `serial` of `path` left (or timed out): it is
    /// removed, and the path with it if nobody else waits. `false` when it
    /// was not waiting there any more (its transfer has started).
    pub(crate) fn sender_left(&self, path: &str, serial: u64) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        let mut map = lock(&shared.map);
        let Some(Path::Pending(pending)) = map.get_mut(path) else {
            return false;
        };
        if pending.sender.as_ref().is_none_or(|s| s.serial != serial) {
            return false;
        }
        let sender = pending.sender.take();
        let empty = pending.receivers.is_empty();
        if empty {
            map.remove(path);
        }
        drop(map);
        drop(sender);
        true
    }

    /// The waiting receiver `serial` of `path` left (or timed out).
    pub(crate) fn receiver_left(&self, path: &str, serial: u64) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let mut map = lock(&shared.map);
        let Some(Path::Pending(pending)) = map.get_mut(path) else {
            return;
        };
        let Some(i) = pending.receivers.iter().position(|r| r.serial == serial) else {
            return;
        };
        let receiver = pending.receivers.remove(i);
        if let Some(sender) = &pending.sender {
            sender.progress.set_connected(pending.receivers.len());
        }
        let gone = if pending.sender.is_none() && pending.receivers.is_empty() {
            map.remove(path)
        } else {
            None
        };
        drop(map);
        drop((receiver, gone));
    }

    /// The transfer on `path` ended: the path is free.
    pub(crate) fn finished(&self, path: &str) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let mut map = lock(&shared.map);
        if matches!(map.get(path), Some(Path::Established)) {
            map.remove(path);
        }
    }
}

fn waiting_line(n: u32) -> String {
    format!("[INFO] Waiting for {n} receiver(s)...\n")
}

pub(crate) fn connected_line(k: usize) -> String {
    format!("[INFO] {k} receiver(s) has/have been connected.\n")
}

fn start_line(k: usize) -> String {
    format!("[INFO] Start sending to {k} receiver(s)!\n")
}
