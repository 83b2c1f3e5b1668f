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
    /// The firing this response waits for.
    target: Instant,
    /// Who was put into the slot (the waker's identity: the slot holds the
    /// waker itself until its next firing), and the slot's firings then.
    registered: Option<(WakerId, u64)>,
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

struct Slot {
    interval: Duration,
    /// Firings so far: a response that registered since the last one
    /// knows without the lock that it has nothing to do.
    firings: AtomicU64,
    state: Mutex<SlotState>,
}

struct SlotState {
    /// When the slot last fired (its scheduled time), if it has.
    fired: Option<Instant>,
    /// Who to wake at the next firing.
    wakers: Vec<Waker>,
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
    /// heartbeat is due at `due` (at least `interval / SLOTS` from now).
    /// `None` outside a tokio runtime, or for an interval too long to share
    /// (the caller keeps its own timer then).
    pub(super) fn join(interval: Duration, due: Instant) -> Option<Tick> {
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
        let target = due - Duration::from_nanos((phase - slot_offset) as u64);
        let slot = match schedule.slots[index].upgrade() {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(Slot {
                    interval,
                    firings: AtomicU64::new(0),
                    state: Mutex::new(SlotState {
                        fired: None,
                        wakers: Vec::new(),
                    }),
                });
                schedule.slots[index] = Arc::downgrade(&slot);
                handle.spawn(drive(Arc::downgrade(&slot), target, interval));
                slot
            }
        };
        drop(map);
        Some(Tick {
            slot,
            target,
            registered: None,
        })
    }

    /// Ready once per firing of the slot. Either way the task is then
    /// registered for the next firing, so that a poll right after a beat
    /// finds nothing to do without taking the slot's lock.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered, and no firing since: a poll for another reason (the
        // work, a write, hyper's poll after a beat) has nothing to do here.
        if self.is_registered(cx) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        let mut state = crate::http::lock(&self.slot.state);
        let fired = state.fired.filter(|&f| f >= self.target);
        if let Some(fired) = fired {
            self.target = instant_after(fired, self.slot.interval);
        }
        state.wakers.push(waker);
        // Read under the lock, where firings are counted.
        let firings = self.slot.firings.load(Ordering::Relaxed);
        drop(state);
        self.registered = Some((WakerId::of(cx.waker()), firings));
        match fired {
            Some(_) => Poll::Ready(()),
            None => Poll::Pending,
        }
    }

    /// Will the next firing wake this task?
    #[inline]
    pub(super) fn is_registered(&self, cx: &Context<'_>) -> bool {
        matches!(self.registered, Some((id, firings))
            if id == WakerId::of(cx.waker())
                && self.slot.firings.load(Ordering::Acquire) == firings)
    }
}

/// The task of one slot: fires every `interval` from `first` while anybody
/// is in the slot.
async fn drive(slot: Weak<Slot>, first: Instant, interval: Duration) {
    let mut at = first;
    let mut waking = Vec::new();
    loop {
        tokio::time::sleep_until(at).await;
        let Some(slot) = slot.upgrade() else {
            return;
        };
        {
            let mut state = crate::http::lock(&slot.state);
            state.fired = Some(at);
            slot.firings.fetch_add(1, Ordering::Release);
            std::mem::swap(&mut state.wakers, &mut waking);
        }
        drop(slot);
        for waker in waking.drain(..) {
            waker.wake();
        }
        // Keep the grid; after a stall, skip the firings that were missed
        // rather than burst them.
        at = instant_after(at, interval);
        let now = Instant::now();
        if at <= now {
            let behind = (now - at).as_nanos() / interval.as_nanos() + 1;
            let behind = u32::try_from(behind).unwrap_or(u32::MAX);
            at = instant_after(at, interval.saturating_mul(behind));
        }
    }
}
