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
//! Expiry has one owner, as in mini-redis's `db.rs`: a single sweeper task
//! per registry, started with the first socket, sleeps until the earliest
//! deadline of a queue ordered by `(deadline, serial)`, removes what is due,
//! and is woken early by a [`Notify`] when a socket with an earlier deadline
//! arrives, or when the registry is dropped (then it stops).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::transfer::Upload;
use crate::http::lock;

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
    state: State,
}

pub(crate) enum State {
    /// `GET /reserve` made it; no upload has opened it yet.
    Reserved,
    /// A sender waits for its receiver.
    Waiting(Box<Upload>),
}

/// Why [`Registry::insert`] gave the state back.
pub(crate) enum Refused {
    /// The id is in use.
    Taken(State),
    /// `max` sockets wait already.
    Full(State),
}

pub(crate) enum Tapped {
    Missing,
    Reserved,
    Taken(Box<Upload>),
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

    /// Inserts a new socket under `id` that expires at `deadline`, unless the
    /// id is taken or `max` sockets already wait. Returns its serial.
    ///
    /// Must be called within a tokio runtime: the first insert starts the
    /// sweeper.
    pub(crate) fn insert(
        &self,
        id: &str,
        state: State,
        deadline: Instant,
        max: usize,
    ) -> Result<u64, Refused> {
        let mut slots = lock(&self.shared.slots);
        if slots.map.len() >= max {
            return Err(Refused::Full(state));
        }
        let serial = slots.next_serial;
        match slots.map.entry(id.to_owned()) {
            Entry::Occupied(_) => return Err(Refused::Taken(state)),
            Entry::Vacant(v) => {
                v.insert(Slot {
                    serial,
                    deadline,
                    state,
                });
            }
        }
        slots.next_serial += 1;
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
        Ok(serial)
    }

    /// Opens the reservation `id` with `upload`. Returns the socket's serial,
    /// or gives the upload back when `id` is not an open reservation.
    pub(crate) fn open_reserved(&self, id: &str, upload: Box<Upload>) -> Result<u64, Box<Upload>> {
        let mut slots = lock(&self.shared.slots);
        match slots.map.get_mut(id) {
            Some(slot) if matches!(slot.state, State::Reserved) => {
                slot.state = State::Waiting(upload);
                Ok(slot.serial)
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
                Some(State::Waiting(upload)) => Tapped::Taken(upload),
                _ => Tapped::Missing,
            },
        }
    }
}

impl WeakRegistry {
    /// Removes the socket `serial` under `id`, if it is still there (a
    /// receiver may have taken it, or the sweeper expired it).
    pub(crate) fn remove(&self, id: &str, serial: u64) -> Option<State> {
        let shared = self.0.upgrade()?;
        let mut slots = lock(&shared.slots);
        match slots.map.get(id) {
            Some(slot) if slot.serial == serial => slots.remove(id),
            _ => None,
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
    fn remove(&mut self, id: &str) -> Option<State> {
        let slot = self.map.remove(id)?;
        self.deadlines.remove(&(slot.deadline, slot.serial));
        Some(slot.state)
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
                        expired.push(slot.state);
                    }
                }
            }
        };
        for state in expired {
            (self.on_expire)(state);
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
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// A registry whose expiries are reported on a channel, with the time
    /// each happened.
    fn registry() -> (Registry, mpsc::UnboundedReceiver<Instant>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let registry = Registry::new(Box::new(move |_state| {
            let _ = tx.send(Instant::now());
        }));
        (registry, rx)
    }

    fn alive_tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn sockets_expire_at_their_deadlines_exactly_in_deadline_order() {
        let (registry, mut expired) = registry();
        let t0 = Instant::now();
        registry
            .insert("c", State::Reserved, t0 + 30 * SEC, 10)
            .ok();
        registry
            .insert("a", State::Reserved, t0 + 10 * SEC, 10)
            .ok();
        registry
            .insert("b", State::Reserved, t0 + 20 * SEC, 10)
            .ok();
        for due in [10, 20, 30] {
            // Paused time jumps straight to the sweeper's next timer.
            assert_eq!(expired.recv().await, Some(t0 + due * SEC));
            assert_eq!(registry.len(), 3 - due as usize / 10);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_a_sleeping_sweeper() {
        let (registry, mut expired) = registry();
        let t0 = Instant::now();
        registry
            .insert("late", State::Reserved, t0 + 600 * SEC, 10)
            .ok();
        // Let the sweeper go to sleep until t0 + 600 s.
        tokio::task::yield_now().await;
        registry
            .insert("early", State::Reserved, t0 + 5 * SEC, 10)
            .ok();
        assert_eq!(expired.recv().await, Some(t0 + 5 * SEC));
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_socket_never_expires() {
        let (registry, mut expired) = registry();
        let t0 = Instant::now();
        let serial = registry
            .insert("gone", State::Reserved, t0 + SEC, 10)
            .ok()
            .unwrap();
        registry
            .insert("kept", State::Reserved, t0 + 2 * SEC, 10)
            .ok();
        assert!(registry.downgrade().remove("gone", serial).is_some());
        // A stale serial removes nothing.
        assert!(registry.downgrade().remove("kept", serial).is_none());
        assert_eq!(expired.recv().await, Some(t0 + 2 * SEC));
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_sweeper_serves_every_socket_and_stops_with_the_registry() {
        let (registry, mut expired) = registry();
        let before = alive_tasks();
        let t0 = Instant::now();
        for i in 0..100 {
            let deadline = t0 + SEC + Duration::from_millis(i);
            registry
                .insert(&i.to_string(), State::Reserved, deadline, 1000)
                .ok();
        }
        assert_eq!(alive_tasks(), before + 1);
        assert_eq!(expired.recv().await, Some(t0 + SEC));
        let weak = registry.downgrade();
        drop(registry);
        // The sweeper wakes, stops, and lets the sockets go.
        while weak.0.strong_count() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(alive_tasks(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_cap_and_taken_ids_refuse_and_give_the_state_back() {
        let (registry, _expired) = registry();
        let t0 = Instant::now();
        assert!(registry.insert("a", State::Reserved, t0 + SEC, 2).is_ok());
        assert!(matches!(
            registry.insert("a", State::Reserved, t0 + SEC, 2),
            Err(Refused::Taken(State::Reserved))
        ));
        assert!(registry.insert("b", State::Reserved, t0 + SEC, 2).is_ok());
        assert!(matches!(
            registry.insert("c", State::Reserved, t0 + SEC, 2),
            Err(Refused::Full(State::Reserved))
        ));
    }
}
