//! The [`Store`]: running jobs and their finished results, until they are
//! fetched or expire.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Builder;
use crate::body::Body;
use crate::delayed::{instant_after, LateWork};

/// A parked job's id: 128 random bits, base64url (22 characters).
type Id = String;

/// Where parked jobs and their results live until they are fetched or expire.
///
/// Cheap to clone (shared). Every operation holds a `std::sync::Mutex` for a
/// few map updates (O(log n)), never across an `.await`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Builder,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Id, Entry>,
    /// Finished results by expiry: the first is the oldest.
    expiries: BTreeSet<(Instant, Id)>,
    running: usize,
}

struct Entry {
    owner: Option<String>,
    job: Job,
}

enum Job {
    Running {
        done: watch::Receiver<bool>,
        /// Kept so the receivers see `true` once it is sent.
        notify: watch::Sender<bool>,
        abort: Option<AbortHandle>,
    },
    Finished {
        result: Stored,
        expires: Instant,
    },
}

/// A finished result, kept as bytes so it can be served more than once.
#[derive(Clone)]
pub(super) struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Why a job could not be parked.
#[derive(Debug)]
pub(super) enum ParkError {
    /// Only running jobs are left and the store is full.
    Full,
    /// No id could be made.
    NoEntropy,
}

impl Store {
    pub(super) fn from_builder(cfg: Builder) -> Self {
        Store {
            inner: Arc::new(Inner {
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
        let (entries, running) = {
            let st = self.lock();
            (st.entries.len(), st.running)
        };
        f.debug_struct("Store")
            .field("settings", &self.inner.cfg)
            .field("entries", &entries)
            .field("running", &running)
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

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::http::lock(&self.inner.state)
    }

    pub(super) fn location(&self, id: &str) -> String {
        format!("{}{}", self.inner.cfg.base_path, id)
    }

    pub(super) fn retry_after(&self) -> HeaderValue {
        HeaderValue::from(self.inner.cfg.retry_after.as_secs().max(1))
    }

    /// Parks `work`: it goes on in a task of its own, and its result,
    /// rendered as the core renders any result, is kept for `ttl` after it
    /// finishes.
    pub(super) fn park(&self, work: LateWork, owner: Option<String>) -> Result<Id, ParkError> {
        let id = crate::id::random_bytes::<16>()
            .map(|b| crate::id::base64url(&b))
            .map_err(|_| ParkError::NoEntropy)?;
        let (notify, done) = watch::channel(false);
        {
            let mut st = self.lock();
            let now = Instant::now();
            purge(&mut st, now);
            if st.entries.len() >= self.inner.cfg.max_entries {
                // Evict the oldest finished result; refuse if none is left.
                let Some(oldest) = st.expiries.pop_first() else {
                    return Err(ParkError::Full);
                };
                st.entries.remove(&oldest.1);
            }
            st.running += 1;
            st.entries.insert(
                id.clone(),
                Entry {
                    owner,
                    job: Job::Running {
                        done,
                        notify,
                        abort: None,
                    },
                },
            );
        }
        let store = self.clone();
        let task_id = id.clone();
        let max = self.inner.cfg.max_result_bytes;
        let task = tokio::spawn(async move {
            let response = work.into_response().await;
            let stored = Stored::collect(response, max).await;
            store.finish(&task_id, stored);
        });
        let mut st = self.lock();
        match st.entries.get_mut(&id) {
            Some(Entry {
                job: Job::Running { abort, .. },
                ..
            }) => *abort = Some(task.abort_handle()),
            // Finished already: nothing to cancel any more.
            Some(_) => {}
            // Deleted before the task handle was stored: cancel it now.
            None => task.abort(),
        }
        Ok(id)
    }

    fn finish(&self, id: &str, result: Stored) {
        let mut st = self.lock();
        // A TTL too long to add to now keeps the result until it is
        // fetched away (or evicted).
        let expires = instant_after(Instant::now(), self.inner.cfg.ttl);
        let Some(entry) = st.entries.get_mut(id) else {
            return;
        };
        if let Job::Running { notify, .. } = &entry.job {
            let _ = notify.send(true);
            entry.job = Job::Finished { result, expires };
            st.running -= 1;
            st.expiries.insert((expires, id.to_string()));
        }
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
        match st.entries.remove(id).map(|e| e.job) {
            Some(Job::Running { abort, .. }) => {
                st.running -= 1;
                if let Some(abort) = abort {
                    abort.abort();
                }
            }
            Some(Job::Finished { expires, .. }) => {
                st.expiries.remove(&(expires, id.to_string()));
            }
            None => {}
        }
        true
    }
}

/// Drops the results that expired by `now`.
fn purge(st: &mut State, now: Instant) {
    while let Some((expires, _)) = st.expiries.first() {
        if *expires > now {
            break;
        }
        if let Some((_, id)) = st.expiries.pop_first() {
            st.entries.remove(&id);
        }
    }
}

impl Stored {
    /// Keeps the first `max` bytes of `res`; a larger or failing body is
    /// kept as a `500` that says so.
    async fn collect(res: Response<Body>, max: usize) -> Stored {
        let (parts, body) = res.into_parts();
        match http_body_util::Limited::new(body, max).collect().await {
            Ok(collected) => Stored {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) => {
                let too_large = e.is::<http_body_util::LengthLimitError>();
                Stored {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    headers: HeaderMap::new(),
                    body: Bytes::from(if too_large {
                        "result too large to keep\n"
                    } else {
                        "the work failed\n"
                    }),
                }
            }
        }
    }

    pub(super) fn to_response(&self) -> Response<Body> {
        let mut res = Response::new(Body::from(self.body.clone()));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

/// `202 Accepted` pointing at the status URL of `id`.
pub(super) fn accepted(store: &Store, id: &str) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::ACCEPTED;
    if let Ok(loc) = HeaderValue::from_str(&store.location(id)) {
        res.headers_mut().insert(LOCATION, loc);
    }
    res.headers_mut().insert(RETRY_AFTER, store.retry_after());
    res
}

/// `503` when nothing can be parked.
pub(super) fn unavailable(store: &Store) -> Response<Body> {
    let mut res = crate::http::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many pending jobs; retry later\n",
    );
    res.headers_mut().insert(RETRY_AFTER, store.retry_after());
    res
}
