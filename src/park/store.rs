//! The [`Store`]: running jobs and their finished results, until they are
//! fetched or expire.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::header::HeaderValue;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::remote::Remote;
use super::stored::Stored;
use super::Builder;
use crate::delayed::instant_after;
use crate::limit::{ClientKey, PerClient, Permit};

/// A parked job's id: 128 random bits, base64url (22 characters).
pub(super) type Id = String;

/// Where parked jobs and their results live until they are fetched or expire.
///
/// Cheap to clone (shared). Every operation holds a `std::sync::Mutex` for a
/// few map updates (O(log n) each; making room evicts as many results as it
/// must), never across an `.await`.
///
/// # Limits
///
/// Each global cap has a per-client one beside it, keyed by the
/// [`ClientKey`] given to [`DelayedResponse::park`](crate::DelayedResponse::park):
///
/// | what | global cap | per-client cap | when a cap is reached |
/// |---|---|---|---|
/// | running jobs | [`max_entries`](Builder::max_entries) (running + finished) | [`max_jobs_per_client`](Builder::max_jobs_per_client) | `503` (global, only running jobs left) or `429` (per client), both with `Retry-After`; the work is dropped |
/// | finished results | [`max_entries`](Builder::max_entries) | — | the oldest finished result is evicted |
/// | bytes of finished results | [`max_stored_bytes`](Builder::max_stored_bytes) | [`max_stored_bytes_per_client`](Builder::max_stored_bytes_per_client) | the client's own oldest results are evicted past its cap, then the oldest of anyone past the total |
///
/// An evicted result's status URL answers `404`, as an expired one does.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) cfg: Builder,
    /// Running jobs per client; a job's [`Permit`] lives in its entry.
    pub(super) running_per_client: Arc<PerClient>,
    state: Mutex<State>,
    /// The backplane, when jobs are shared across instances.
    remote: Option<Remote>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) entries: HashMap<Id, Entry>,
    /// Finished results by expiry: the first is the oldest.
    pub(super) expiries: BTreeSet<(Instant, Id)>,
    pub(super) running: usize,
    /// Bytes of the finished results' bodies.
    stored_bytes: usize,
    /// Finished results per client, for the per-client byte cap; a client
    /// is removed with its last result.
    clients: HashMap<ClientKey, Holding>,
}

/// The finished results of one client.
#[derive(Default)]
struct Holding {
    bytes: usize,
    /// By expiry, as [`State::expiries`].
    results: BTreeSet<(Instant, Id)>,
}

pub(super) struct Entry {
    pub(super) owner: Option<String>,
    pub(super) client: ClientKey,
    pub(super) job: Job,
}

pub(super) enum Job {
    Running {
        done: watch::Receiver<bool>,
        /// Kept so the receivers see `true` once it is sent.
        notify: watch::Sender<bool>,
        abort: Option<AbortHandle>,
        /// The client's running-job unit, given back when the job finishes
        /// or is cancelled (when this variant is dropped).
        _permit: Permit,
    },
    Finished {
        result: Stored,
        expires: Instant,
    },
}

/// Why a job could not be parked.
#[derive(Debug)]
pub(super) enum ParkError {
    /// Only running jobs are left and the store is full.
    Full,
    /// The client has `max_jobs_per_client` jobs running.
    ClientBusy,
    /// No id could be made.
    NoEntropy,
    /// The backplane could not register the job.
    Unavailable,
}

impl Store {
    pub(super) fn from_builder(cfg: Builder) -> Self {
        Store {
            inner: Arc::new(Inner {
                running_per_client: PerClient::new(cfg.max_jobs_per_client),
                remote: cfg.backplane.clone().map(|b| Remote::new(b.0)),
                cfg,
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Builder::default().build()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, running, stored_bytes) = {
            let st = self.lock();
            (st.entries.len(), st.running, st.stored_bytes)
        };
        f.debug_struct("Store")
            .field("settings", &self.inner.cfg)
            .field("entries", &entries)
            .field("running", &running)
            .field("stored_bytes", &stored_bytes)
            .finish()
    }
}

/// What a lookup found.
pub(super) enum Lookup {
    Missing,
    Running(watch::Receiver<bool>),
    Finished(Stored),
}

impl Store {
    /// A store with the defaults.
    pub fn new() -> Self {
        Store::default()
    }

    /// Settings for a store.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The cap on `Prefer: wait`.
    pub fn max_wait(&self) -> Duration {
        self.inner.cfg.max_wait
    }

    /// How many jobs are parked (running or finished, not yet expired).
    pub fn len(&self) -> usize {
        let mut st = self.lock();
        purge(&mut st, Instant::now());
        st.entries.len()
    }

    /// Is the store empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many parked jobs are still running.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// How many parked jobs of `client` are still running.
    pub fn running_for(&self, client: &ClientKey) -> usize {
        self.inner.running_per_client.held(client)
    }

    /// How many bytes of result bodies are kept (finished, not yet expired).
    pub fn stored_bytes(&self) -> usize {
        let mut st = self.lock();
        purge(&mut st, Instant::now());
        st.stored_bytes
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        crate::http::lock(&self.inner.state)
    }

    pub(super) fn location(&self, id: &str) -> String {
        format!("{}{}", self.inner.cfg.base_path, id)
    }

    /// The `Retry-After` of every 202, 429 and 503.
    pub(super) fn retry_after_time(&self) -> Duration {
        self.inner.cfg.retry_after
    }

    pub(super) fn retry_after(&self) -> HeaderValue {
        HeaderValue::from(self.inner.cfg.retry_after.as_secs().max(1))
    }

    /// How long a finished result is kept.
    pub(super) fn ttl(&self) -> Duration {
        self.inner.cfg.ttl
    }

    /// A handle that does not keep the store alive.
    pub(super) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// The backplane, if jobs are shared across instances.
    pub(super) fn remote(&self) -> Option<&Remote> {
        self.inner.remote.as_ref()
    }

    pub(super) fn finish(&self, id: &str, result: Stored) {
        let cfg = &self.inner.cfg;
        let mut st = self.lock();
        let now = Instant::now();
        purge(&mut st, now);
        let client = match st.entries.get(id) {
            Some(Entry {
                client,
                job: Job::Running { .. },
                ..
            }) => client.clone(),
            // Cancelled meanwhile: nothing to keep.
            _ => return,
        };
        let bytes = result.len();
        // Room within the client's own cap, from its own oldest results...
        while st.clients.get(&client).map_or(0, |h| h.bytes) + bytes
            > cfg.max_stored_bytes_per_client
        {
            let oldest = st
                .clients
                .get(&client)
                .and_then(|h| h.results.first().cloned());
            let Some((_, oldest)) = oldest else { break };
            drop_finished(&mut st, &oldest);
        }
        // ...then within the total, from the oldest results of anyone.
        // `collect` kept the body within both caps, so the loops end with
        // room (the few bytes of a "too large" 500 aside, under caps that
        // small).
        while st.stored_bytes + bytes > cfg.max_stored_bytes {
            let Some((_, oldest)) = st.expiries.first().cloned() else {
                break;
            };
            drop_finished(&mut st, &oldest);
        }
        // A TTL too long to add to now keeps the result until it is
        // fetched away (or evicted).
        let expires = instant_after(now, cfg.ttl);
        let Some(entry) = st.entries.get_mut(id) else {
            return;
        };
        let running = std::mem::replace(&mut entry.job, Job::Finished { result, expires });
        if let Job::Running { notify, .. } = running {
            let _ = notify.send(true);
        }
        st.running -= 1;
        st.stored_bytes += bytes;
        st.expiries.insert((expires, id.to_string()));
        let holding = st.clients.entry(client).or_default();
        holding.bytes += bytes;
        holding.results.insert((expires, id.to_string()));
    }

    /// Finds a job, if `owner` may see it.
    pub(super) fn lookup(&self, id: &str, owner: Option<&str>) -> Lookup {
        let mut st = self.lock();
        purge(&mut st, Instant::now());
        match st.entries.get(id) {
            Some(e) if e.owner.as_deref().is_none_or(|o| Some(o) == owner) => match &e.job {
                Job::Running { done, .. } => Lookup::Running(done.clone()),
                Job::Finished { result, .. } => Lookup::Finished(result.clone()),
            },
            _ => Lookup::Missing,
        }
    }

    /// Cancels a running job or drops a finished result. `false` when there
    /// was nothing (visible to `owner`) to remove.
    pub(super) fn remove(&self, id: &str, owner: Option<&str>) -> bool {
        let mut st = self.lock();
        purge(&mut st, Instant::now());
        let visible = st
            .entries
            .get(id)
            .is_some_and(|e| e.owner.as_deref().is_none_or(|o| Some(o) == owner));
        if !visible {
            return false;
        }
        if drop_finished(&mut st, id) {
            return true;
        }
        if let Some(Entry {
            job: Job::Running { abort, .. },
            ..
        }) = st.entries.remove(id)
        {
            st.running -= 1;
            if let Some(abort) = abort {
                abort.abort();
            }
        }
        true
    }
}

/// A [`Store`] that does not keep it alive.
pub(super) struct WeakStore(Weak<Inner>);

impl WeakStore {
    pub(super) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

/// Drops the results that expired by `now`.
pub(super) fn purge(st: &mut State, now: Instant) {
    while let Some((expires, id)) = st.expiries.first() {
        if *expires > now {
            break;
        }
        let id = id.clone();
        drop_finished(st, &id);
    }
}

/// Drops the finished result `id` and its accounting; `false` (and nothing
/// changed) when `id` is not a finished result.
pub(super) fn drop_finished(st: &mut State, id: &str) -> bool {
    if !matches!(
        st.entries.get(id),
        Some(Entry {
            job: Job::Finished { .. },
            ..
        })
    ) {
        return false;
    }
    let Some(Entry {
        client,
        job: Job::Finished { result, expires },
        ..
    }) = st.entries.remove(id)
    else {
        return false;
    };
    let key = (expires, id.to_string());
    st.expiries.remove(&key);
    st.stored_bytes -= result.len();
    if let Some(holding) = st.clients.get_mut(&client) {
        holding.bytes -= result.len();
        holding.results.remove(&key);
        if holding.results.is_empty() {
            st.clients.remove(&client);
        }
    }
    true
}
