//! Heartbeat schedules shared by the held responses with the same interval
//! (the coalesced tick).
//!
//! A timer per response costs a timer-wheel removal and insertion per
//! heartbeat, and with 10,000 responses whose phases spread over the
//! interval the runtime wakes up to 1,000 times a second to fire them. Here a
//! response keeps a timer of its own only for its first heartbeat (exactly at
//! `initial_delay`) and for the one after a progress write (a full interval
//! later); after that it joins a *slot*: a task that fires every `interval`
//! and wakes every response in it at once.
//!
//! Each (runtime, interval) has [`SLOTS`] slots whose firings are spread
//! evenly over the interval, from an anchor: the due time of the first
//! response that joined. A response joins the slot that fires last at or
//! before its own next heartbeat, so its heartbeats stay at most one
//! interval apart (the one on joining comes at most `interval / SLOTS`
//! early), and the first response of a schedule keeps its exact times. The
//! runtime then wakes `SLOTS` times per interval for heartbeats, each time
//! for about `1 / SLOTS` of the responses, instead of once per response.
//!
//! A response registers its waker in the slot once, when it joins (again
//! only if its waker changes), and leaves when dropped; the slot wakes every
//! registered waker at each firing. Finding out whether the slot fired is
//! one atomic load: a heartbeat takes no lock and clones no waker.
//!
//! A slot's task stops when the last response in it is gone; a schedule
//! whose slots are all gone starts afresh (with a new anchor).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::{Handle, Id};
use tokio::time::Instant;

use super::time::instant_after;

/// Slots per schedule: the responses of one interval beat in this many
/// groups.
pub(super) const SLOTS: u32 = 8;

/// A response's place in a slot.
pub(super) struct Tick {
    slot: Arc<Slot>,
    /// The number of the firing this response waits for (firing `n` is
    /// at `slot.first + n * interval`).
    target: u64,
    /// Its entry in the slot's wakers, and whose waker is there.
    key: usize,
    id: WakerId,
}

struct Slot {
    first: Instant,
    interval: Duration,
    /// One more than the number of the last firing (0: none yet).
    fired: AtomicU64,
    wakers: Mutex<Wakers>,
}

/// Wakers in entries that are reused once freed.
#[derive(Default)]
struct Wakers {
    entries: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// What `Waker::will_wake` compares (its data and vtable pointers), without
/// a clone of the waker. Only compared, and only while the slot holds the
/// waker, so the addresses cannot be reused meanwhile.
#[derive(Clone, Copy, PartialEq, Eq)]
struct WakerId(usize, usize);

impl WakerId {
    fn of(waker: &Waker) -> Self {
        WakerId(
            waker.data() as usize,
            waker.vtable() as *const std::task::RawWakerVTable as usize,
        )
    }
}

struct Schedule {
    anchor: Instant,
    slots: [Weak<Slot>; SLOTS as usize],
}

type Schedules = Mutex<HashMap<(Id, Duration), Schedule>>;

fn schedules() -> &'static Schedules {
    static SCHEDULES: OnceLock<Schedules> = OnceLock::new();
    SCHEDULES.get_or_init(Default::default)
}

impl Tick {
    /// Joins the shared schedule of `interval` for a response whose next
    /// heartbeat is due at `due` (at least `interval / SLOTS` from now),
    /// registering `cx`'s waker. `None` outside a tokio runtime, or for an
    /// interval too long to share (the caller keeps its own timer then).
    pub(super) fn join(interval: Duration, due: Instant, cx: &Context<'_>) -> Option<Tick> {
        let handle = Handle::try_current().ok()?;
        let nanos = interval.as_nanos();
        if nanos == 0 || nanos > u64::MAX as u128 {
            return None;
        }
        let mut map = crate::http::lock(schedules());
        let key = (handle.id(), interval);
        let fresh = match map.get(&key) {
            Some(s) => s.slots.iter().all(|w| w.strong_count() == 0),
            None => true,
        };
        if fresh {
            // Drop the schedules nobody uses any more, so that the map holds
            // only the live ones (runtimes and intervals come and go).
            map.retain(|_, s| s.slots.iter().any(|w| w.strong_count() > 0));
            map.insert(
                key,
                Schedule {
                    anchor: due,
                    slots: Default::default(),
                },
            );
        }
        let schedule = map.get_mut(&key)?;
        // Where `due` falls in the interval, counted from the anchor.
        let signed = if due >= schedule.anchor {
            (due - schedule.anchor).as_nanos() as i128
        } else {
            -((schedule.anchor - due).as_nanos() as i128)
        };
        let phase = signed.rem_euclid(nanos as i128) as u128;
        let index = (phase * SLOTS as u128 / nanos) as usize;
        let slot_offset = nanos * index as u128 / SLOTS as u128;
        // The slot's last firing at or before `due`.
        let at = due - Duration::from_nanos((phase - slot_offset) as u64);
        let slot = match schedule.slots[index].upgrade() {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(Slot {
                    first: at,
                    interval,
                    fired: AtomicU64::new(0),
                    wakers: Mutex::default(),
                });
                schedule.slots[index] = Arc::downgrade(&slot);
                handle.spawn(drive(Arc::downgrade(&slot)));
                slot
            }
        };
        drop(map);
        // `at` is on the slot's grid, at or after its first firing.
        let target = ((at - slot.first).as_nanos() / nanos) as u64;
        let key = slot.register(None, cx.waker());
        Some(Tick {
            slot,
            target,
            key,
            id: WakerId::of(cx.waker()),
        })
    }

    /// Ready once per firing of the slot (once for several missed ones).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let id = WakerId::of(cx.waker());
        if id != self.id {
            // Polled from another task: its waker replaces the old one,
            // before the check below, so that no firing is missed.
            self.key = self.slot.register(Some(self.key), cx.waker());
            self.id = id;
        }
        let fired = self.slot.fired.load(Ordering::Acquire);
        if fired > self.target {
            self.target = fired;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Tick {
    /// Will the next firing wake this task, and has it not come yet? (Then
    /// a poll of this tick has nothing to do.)
    #[inline]
    pub(super) fn is_registered(&self, cx: &Context<'_>) -> bool {
        self.id == WakerId::of(cx.waker()) && self.slot.fired.load(Ordering::Acquire) <= self.target
    }
}

impl Slot {
    /// Puts `waker` into entry `key` (or a free one); returns the entry.
    fn register(&self, key: Option<usize>, waker: &Waker) -> usize {
        let mut wakers = crate::http::lock(&self.wakers);
        let key = match key {
            Some(key) => key,
            None => match wakers.free.pop() {
                Some(key) => key,
                None => {
                    wakers.entries.push(None);
                    wakers.entries.len() - 1
                }
            },
        };
        if let Some(entry) = wakers.entries.get_mut(key) {
            *entry = Some(waker.clone());
        }
        key
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        let mut wakers = crate::http::lock(&self.slot.wakers);
        if let Some(entry) = wakers.entries.get_mut(self.key) {
            *entry = None;
            wakers.free.push(self.key);
        }
    }
}

/// Firing `number` of a slot: `first + number * interval`, saturating at a
/// far future.
fn firing(first: Instant, interval: Duration, number: u64) -> Instant {
    let nanos = (interval.as_nanos() as u64).checked_mul(number);
    instant_after(first, nanos.map_or(Duration::MAX, Duration::from_nanos))
}

/// The task of one slot: fires every `interval` from `first` while anybody
/// is in the slot.
async fn drive(slot: Weak<Slot>) {
    let Some((first, interval)) = slot.upgrade().map(|s| (s.first, s.interval)) else {
        return;
    };
    let mut number: u64 = 0;
    loop {
        tokio::time::sleep_until(firing(first, interval, number)).await;
        let Some(slot) = slot.upgrade() else {
            return;
        };
        slot.fired.store(number + 1, Ordering::Release);
        {
            // Waking only schedules the tasks; none of them takes this lock
            // to find out that the slot fired.
            let wakers = crate::http::lock(&slot.wakers);
            for waker in wakers.entries.iter().flatten() {
                waker.wake_by_ref();
            }
        }
        drop(slot);
        // Keep the grid; after a stall, skip the firings that were missed
        // rather than burst them.
        number += 1;
        let now = Instant::now();
        let next = firing(first, interval, number);
        if next <= now {
            let behind = (now - next).as_nanos() / interval.as_nanos() + 1;
            number += u64::try_from(behind).unwrap_or(u64::MAX / 2);
        }
    }
}
