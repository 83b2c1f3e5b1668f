//! The sockets waiting for a receiver.
//!
//! One `std::sync::Mutex` around a map. Every critical section is O(1) — a
//! lookup, an insert or a remove — and none spans an `.await`: a request
//! takes what it needs out of the map and awaits outside the lock. (A pipe
//! server that awaited the upload while holding its map lock deadlocked for
//! good when a multipart sender stalled after its headers.)

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::transfer::Upload;

pub(crate) struct Registry {
    slots: Mutex<HashMap<String, Slot>>,
    next_serial: AtomicU64,
}

struct Slot {
    /// Tells this socket from a later one that reuses its id (only possible
    /// with a custom id scheme), so a stale timer never removes it.
    serial: u64,
    state: State,
}

pub(crate) enum State {
    Reserved { deadline: Instant },
    Waiting(Box<Upload>),
}

pub(crate) enum Inserted {
    Ok { serial: u64 },
    Taken(State),
    Full(State),
}

pub(crate) enum Tapped {
    Missing,
    Reserved,
    Taken(Box<Upload>),
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry {
            slots: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // Critical sections are single map operations: a panic cannot leave
        // the map half-updated, so poisoning is ignored.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sockets are reserved or waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Inserts a new socket under `id`, unless the id is taken or `max`
    /// sockets already wait.
    pub(crate) fn insert(&self, id: &str, state: State, max: usize) -> Inserted {
        let mut slots = self.lock();
        if slots.len() >= max {
            return Inserted::Full(state);
        }
        match slots.entry(id.to_owned()) {
            Entry::Occupied(_) => Inserted::Taken(state),
            Entry::Vacant(v) => {
                let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
                v.insert(Slot { serial, state });
                Inserted::Ok { serial }
            }
        }
    }

    /// Opens a reservation with `upload`. Returns the reservation's serial and
    /// deadline, or gives the upload back when `id` is not an open reservation.
    pub(crate) fn open_reserved(
        &self,
        id: &str,
        upload: Box<Upload>,
    ) -> Result<(u64, Instant), Box<Upload>> {
        let mut slots = self.lock();
        match slots.get_mut(id) {
            Some(slot) => match slot.state {
                State::Reserved { deadline } => {
                    slot.state = State::Waiting(upload);
                    Ok((slot.serial, deadline))
                }
                State::Waiting(_) => Err(upload),
            },
            None => Err(upload),
        }
    }

    /// Takes a waiting socket out (single use). A reservation stays.
    pub(crate) fn tap(&self, id: &str) -> Tapped {
        let mut slots = self.lock();
        let Entry::Occupied(entry) = slots.entry(id.to_owned()) else {
            return Tapped::Missing;
        };
        if matches!(entry.get().state, State::Reserved { .. }) {
            return Tapped::Reserved;
        }
        match entry.remove().state {
            State::Waiting(upload) => Tapped::Taken(upload),
            State::Reserved { .. } => Tapped::Reserved,
        }
    }

    /// Removes the socket `serial` under `id`, if it is still there.
    pub(crate) fn remove(&self, id: &str, serial: u64) -> Option<State> {
        let mut slots = self.lock();
        match slots.get(id) {
            Some(slot) if slot.serial == serial => slots.remove(id).map(|s| s.state),
            _ => None,
        }
    }
}
