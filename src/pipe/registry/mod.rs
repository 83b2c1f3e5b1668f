//! The sockets waiting for a receiver, and the one task that expires them.
//!
//! One `std::sync::Mutex` around the map and its expiry queue. Every critical
//! section is a lookup, an insert or a remove (O(log n) at most) and none
//! spans an `.await`: a request takes what it needs out of the map and awaits
//! outside the lock. (A pipe server that awaited the upload while holding
//! its map lock deadlocked for good when a multipart sender stalled after its
//! headers.) Nothing is dropped under the lock either: what leaves the map is
//! returned, and dropped (or ended) by the caller.
//!
//! A slot's serial names its occupant: a fresh socket, or each upload that
//! opens a reservation. An abort hook that names an occupant that has gone
//! touches nothing.
//!
//! Expiry has one owner, as in mini-redis's `db.rs`: a single sweeper task
//! per registry, started with the first socket, sleeps until the earliest
//! deadline of a queue ordered by `(deadline, serial)`, removes what is due,
//! and is woken early by a [`Notify`] when a socket with an earlier deadline
//! arrives, or when the registry is dropped (then it stops).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ids::secret_matches;
use super::transfer::Upload;
use crate::http::lock;
use crate::limit::Permit;

/// What happens to a socket whose deadline passed (called by the sweeper,
/// outside the lock).
pub(crate) type OnExpire = Box<dyn Fn(State) + Send + Sync>;

/// The map of sockets. Dropping it stops the sweeper.
pub(crate) struct Registry {
    shared: Arc<Shared>,
}

/// A handle that does not keep the registry alive (for the per-response
/// abort hooks, which live as long as hyper holds the response).
#[derive(Clone)]
pub(crate) struct WeakRegistry(Weak<Shared>);

struct Shared {
    slots: Mutex<Slots>,
    /// Wakes the sweeper: an earlier deadline arrived, or the registry was
    /// dropped.
    wake: Notify,
    on_expire: OnExpire,
}

struct Slots {
    map: HashMap<String, Slot>,
    /// Every slot of `map`, once, by `(deadline, serial)`: the sweeper's
    /// queue. The serial makes keys unique when deadlines tie.
    deadlines: BTreeMap<(Instant, u64), String>,
    next_serial: u64,
    sweeper: Sweeper,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweeper {
    NotStarted,
    Running,
    /// The registry was dropped: the sweeper exits at its next wake-up.
    Stopped,
}

struct Slot {
    /// Tells this socket from a later one that reuses its id (only possible
    /// with a custom id scheme), so a stale abort hook never removes it.
    serial: u64,
    deadline: Instant,
    /// `Some` for a reservation, for as long as it lives: opened or not, and
    /// again after a failed upload.
    ticket: Option<Ticket>,
    state: State,
}

pub(crate) enum State {
    /// `GET /reserve` made it; no upload has opened it yet.
    Reserved,
    /// A sender waits for its receiver.
    Waiting(Box<Upload>),
}

/// What a reservation holds: the secret that authorises its upload, and
/// one unit of its reserver's per-client cap.
pub(crate) struct Ticket {
    secret: String,
    _permit: Option<Permit>,
}

impl Ticket {
    pub(crate) fn new(secret: String, permit: Option<Permit>) -> Self {
        Ticket {
            secret,
            _permit: permit,
        }
    }
}

/// A reservation taken out with its upload, kept aside until the upload
/// has begun, so that an upload that fails first can give it back
/// ([`Registry::rearm`]).
pub(crate) struct Rearm {
    serial: u64,
    deadline: Instant,
    ticket: Ticket,
}

/// What became of a waiting socket whose sender left.
pub(crate) enum Left {
    /// Not there any more (taken, expired, or never inserted).
    Gone,
    /// Kept: the upload had arrived whole.
    Kept,
    /// A reservation again; the failed upload is given back to be dropped.
    Rearmed(Box<Upload>),
    /// Removed.
    Freed(Box<Upload>),
}

/// Why [`Registry::insert`] gave the state (and ticket) back.
pub(crate) enum Refused {
    /// The id is in use.
    Taken(State, Option<Ticket>),
    /// `max` sockets wait already.
    Full(State, Option<Ticket>),
}

pub(crate) enum Tapped {
    Missing,
    Reserved,
    /// The upload, and its reservation if it had one.
    Taken(Box<Upload>, Option<Rearm>),
}

impl Registry {
    pub(crate) fn new(on_expire: OnExpire) -> Self {
        Registry {
            shared: Arc::new(Shared {
                slots: Mutex::new(Slots {
                    map: HashMap::new(),
                    deadlines: BTreeMap::new(),
                    next_serial: 1,
                    sweeper: Sweeper::NotStarted,
                }),
                wake: Notify::new(),
                on_expire,
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.shared))
    }

    /// How many sockets are reserved or waiting.
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared.slots).map.len()
    }

    /// Is `id` here (reserved or waiting)?
    #[cfg(feature = "redis")]
    pub(crate) fn contains(&self, id: &str) -> bool {
        lock(&self.shared.slots).map.contains_key(id)
    }

    /// Inserts a new socket under `id` that expires at `deadline`, unless the
    /// id is taken or `max` sockets already wait. Returns its serial.
    /// A reservation comes with its `ticket`.
    ///
    /// Must be called within a tokio runtime: the first insert starts the
    /// sweeper.
    pub(crate) fn insert(
        &self,
        id: &str,
        state: State,
        ticket: Option<Ticket>,
        deadline: Instant,
        max: usize,
    ) -> Result<u64, Refused> {
        let mut slots = lock(&self.shared.slots);
        if slots.map.len() >= max {
            return Err(Refused::Full(state, ticket));
        }
        let serial = slots.next_serial;
        match slots.map.entry(id.to_owned()) {
            Entry::Occupied(_) => return Err(Refused::Taken(state, ticket)),
            Entry::Vacant(v) => {
                v.insert(Slot {
                    serial,
                    deadline,
                    ticket,
                    state,
                });
            }
        }
        slots.next_serial += 1;
        self.schedule(slots, id, deadline, serial);
        Ok(serial)
    }

    /// Puts a reservation back whose upload failed before it began, with
    /// its serial, deadline and ticket (past the global cap: it was
    /// counted before). A passed deadline expires it at once.
    pub(crate) fn rearm(&self, id: &str, rearm: Rearm) {
        let mut slots = lock(&self.shared.slots);
        let Rearm {
            serial,
            deadline,
            ticket,
        } = rearm;
        match slots.map.entry(id.to_owned()) {
            // Only a custom id scheme could have reused the id meanwhile.
            Entry::Occupied(_) => {
                drop(slots);
                drop(ticket);
                return;
            }
            Entry::Vacant(v) => {
                v.insert(Slot {
                    serial,
                    deadline,
                    ticket: Some(ticket),
                    state: State::Reserved,
                });
            }
        }
        self.schedule(slots, id, deadline, serial);
    }

    /// Queues the deadline of the slot just inserted, and starts or wakes
    /// the sweeper as needed.
    fn schedule(&self, mut slots: MutexGuard<'_, Slots>, id: &str, deadline: Instant, serial: u64) {
        let key = (deadline, serial);
        let earliest = slots
            .deadlines
            .first_key_value()
            .is_none_or(|(k, _)| key < *k);
        slots.deadlines.insert(key, id.to_owned());
        let start = slots.sweeper == Sweeper::NotStarted;
        if start {
            slots.sweeper = Sweeper::Running;
        }
        drop(slots);
        if start {
            tokio::spawn(sweep(self.shared.clone()));
        } else if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Would [`open_reserved`](Self::open_reserved) open `id` with `secret`
    /// now?
    pub(crate) fn can_open(&self, id: &str, secret: &str) -> bool {
        let slots = lock(&self.shared.slots);
        matches!(
            slots.map.get(id),
            Some(Slot {
                ticket: Some(ticket),
                state: State::Reserved,
                ..
            }) if secret_matches(&ticket.secret, secret)
        )
    }

    /// Opens the reservation `id` with `upload`, if `secret` is its upload
    /// secret (compared in constant time). Returns the socket's serial, or
    /// gives the upload back when `id` is not a reservation waiting for an
    /// upload, or the secret is wrong (the caller cannot tell which).
    ///
    /// Each upload gets a serial of its own: the abort hook of an earlier
    /// upload of a rearmed reservation must not touch a later one.
    pub(crate) fn open_reserved(
        &self,
        id: &str,
        secret: &str,
        upload: Box<Upload>,
    ) -> Result<u64, Box<Upload>> {
        let mut guard = lock(&self.shared.slots);
        let slots = &mut *guard;
        let new_serial = slots.next_serial;
        match slots.map.get_mut(id) {
            Some(Slot {
                serial,
                deadline,
                ticket: Some(ticket),
                state: state @ State::Reserved,
            }) if secret_matches(&ticket.secret, secret) => {
                *state = State::Waiting(upload);
                if let Some(id) = slots.deadlines.remove(&(*deadline, *serial)) {
                    slots.deadlines.insert((*deadline, new_serial), id);
                }
                *serial = new_serial;
                slots.next_serial += 1;
                Ok(new_serial)
            }
            _ => Err(upload),
        }
    }

    /// Takes a waiting socket out (single use). A reservation stays.
    pub(crate) fn tap(&self, id: &str) -> Tapped {
        let mut slots = lock(&self.shared.slots);
        match slots.map.get(id) {
            None => Tapped::Missing,
            Some(slot) if matches!(slot.state, State::Reserved) => Tapped::Reserved,
            Some(_) => match slots.remove(id) {
                Some(Slot {
                    serial,
                    deadline,
                    ticket,
                    state: State::Waiting(upload),
                }) => Tapped::Taken(
                    upload,
                    ticket.map(|ticket| Rearm {
                        serial,
                        deadline,
                        ticket,
                    }),
                ),
                _ => Tapped::Missing,
            },
        }
    }
}

impl WeakRegistry {
    /// The sender of the waiting socket `serial` under `id` left. `keep`
    /// looks at the upload first (under the lock: it must be quick and call
    /// no user code) and says whether it is worth keeping as it is. If not,
    /// a reservation is rearmed (its upload may be tried again until its
    /// TTL) and any other socket is removed, unless `free` is set, which
    /// removes either.
    pub(crate) fn sender_left(
        &self,
        id: &str,
        serial: u64,
        free: bool,
        keep: impl FnOnce(&mut Upload) -> bool,
    ) -> Left {
        let Some(shared) = self.0.upgrade() else {
            return Left::Gone;
        };
        let mut slots = lock(&shared.slots);
        let Some(slot) = slots.map.get_mut(id).filter(|s| s.serial == serial) else {
            return Left::Gone;
        };
        let State::Waiting(upload) = &mut slot.state else {
            return Left::Gone;
        };
        if !free && keep(upload) {
            return Left::Kept;
        }
        if !free && slot.ticket.is_some() {
            return match std::mem::replace(&mut slot.state, State::Reserved) {
                State::Waiting(upload) => Left::Rearmed(upload),
                State::Reserved => Left::Gone,
            };
        }
        match slots.remove(id) {
            Some(Slot {
                state: State::Waiting(upload),
                ..
            }) => Left::Freed(upload),
            _ => Left::Gone,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let mut slots = lock(&self.shared.slots);
        let running = slots.sweeper == Sweeper::Running;
        slots.sweeper = Sweeper::Stopped;
        drop(slots);
        if running {
            // A stored permit: the sweeper sees it even if it is busy now.
            self.shared.wake.notify_one();
        }
    }
}

impl Slots {
    /// Removes `id` and its deadline.
    fn remove(&mut self, id: &str) -> Option<Slot> {
        let slot = self.map.remove(id)?;
        self.deadlines.remove(&(slot.deadline, slot.serial));
        Some(slot)
    }
}

/// What the sweeper should do next.
enum Next {
    Sleep(Instant),
    Idle,
    Stop,
}

impl Shared {
    /// Removes every socket whose deadline has come, hands them to
    /// `on_expire` outside the lock, and says when the next one is due.
    fn purge_expired(&self) -> Next {
        let now = Instant::now();
        let mut expired = Vec::new();
        let next = {
            let mut slots = lock(&self.slots);
            if slots.sweeper == Sweeper::Stopped {
                return Next::Stop;
            }
            loop {
                let Some((&(deadline, _), _)) = slots.deadlines.first_key_value() else {
                    break Next::Idle;
                };
                if deadline > now {
                    break Next::Sleep(deadline);
                }
                if let Some((_, id)) = slots.deadlines.pop_first() {
                    if let Some(slot) = slots.map.remove(&id) {
                        expired.push(slot);
                    }
                }
            }
        };
        for slot in expired {
            (self.on_expire)(slot.state);
        }
        next
    }
}

/// The registry's sweeper (see the module docs).
async fn sweep(shared: Arc<Shared>) {
    loop {
        match shared.purge_expired() {
            Next::Sleep(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = shared.wake.notified() => {}
                }
            }
            Next::Idle => shared.wake.notified().await,
            Next::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests;
