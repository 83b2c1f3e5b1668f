//! Async request-reply: when the work misses its deadline, park it and answer
//! `202 Accepted` with a `Location` to poll, instead of dropping the result.
//!
//! ```text
//! POST /reports            → (work runs past the deadline)
//! 202 Accepted
//! Location: /jobs/Qx3…
//! Retry-After: 1
//!
//! GET /jobs/Qx3…           → 202 + Retry-After while it runs (long-polls with Prefer: wait=N)
//! GET /jobs/Qx3…           → the result, with its real status, once it is ready
//! DELETE /jobs/Qx3…        → 204: the work is cancelled (or the result dropped)
//! ```
//!
//! A [`Store`] keeps the running jobs and their finished results; a
//! [`StatusService`] serves the status URLs; [`DelayedResponse::park`](crate::DelayedResponse::park) connects
//! a delayed response to a store. The original request also honours `Prefer`
//! (RFC 7240): `respond-async` answers 202 at once, `wait=N` sets this request's
//! deadline (capped by [`Store::max_wait`]); `Preference-Applied` says which
//! were honoured.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::park::{StatusService, Store};
//! use delayed_response::DelayedResponse;
//!
//! # async fn handler(req: http::Request<hyper::body::Incoming>) -> http::Response<delayed_response::Body> {
//! let store = Store::builder().base_path("/jobs/").build();
//! let status = StatusService::new(store.clone()); // serve it under /jobs/
//! DelayedResponse::for_request(&req)
//!     .timeout(Duration::from_secs(1))
//!     .park(store)
//!     .wait(async { "slow result" })
//!     .await
//! # }
//! ```
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`ttl`](StoreBuilder::ttl) of a finished result | 10 min |
//! | [`max_entries`](StoreBuilder::max_entries) (running + finished) | 10,000 |
//! | [`max_result_bytes`](StoreBuilder::max_result_bytes) | 1 MiB |
//! | [`max_wait`](StoreBuilder::max_wait) (cap of `Prefer: wait`) | 25 s (under Heroku's 30 s and GCP's 30 s) |
//! | [`retry_after`](StoreBuilder::retry_after) | 1 s |
//! | [`base_path`](StoreBuilder::base_path) | `/jobs/` |
//!
//! When the store is full, the oldest finished results are evicted first; when
//! only running jobs remain, new parking is refused: the original request then
//! gets `503 Service Unavailable` with `Retry-After`, and its work is dropped.

mod prefer;
mod service;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use prefer::Prefer;
pub use service::StatusService;

use crate::body::Body;
use crate::delayed::Reply;

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
    cfg: StoreBuilder,
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
pub(crate) struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Why a job could not be parked.
#[derive(Debug)]
pub(crate) enum ParkError {
    /// Only running jobs are left and the store is full.
    Full,
    /// No id could be made.
    NoEntropy,
}

/// Settings of a [`Store`]; see the [module docs](self) for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    ttl: Duration,
    max_entries: usize,
    max_result_bytes: usize,
    max_wait: Duration,
    retry_after: Duration,
    base_path: String,
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            ttl: Duration::from_secs(600),
            max_entries: 10_000,
            max_result_bytes: 1 << 20,
            max_wait: Duration::from_secs(25),
            retry_after: Duration::from_secs(1),
            base_path: "/jobs/".to_string(),
        }
    }
}

impl StoreBuilder {
    /// How long a finished result is kept (counted from when it finished).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many jobs, running or finished, the store holds at most (at least 1).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// The largest result body kept; a larger one is replaced by a
    /// `500` whose body says so.
    pub fn max_result_bytes(mut self, n: usize) -> Self {
        self.max_result_bytes = n;
        self
    }

    /// The longest a request may wait, by `Prefer: wait=N` on the original
    /// request or on a status URL.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// The `Retry-After` sent with every 202 (whole seconds, at least 1).
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d.max(Duration::from_secs(1));
        self
    }

    /// The path prefix of the status URLs in `Location` (default `/jobs/`);
    /// the id is appended to it. Serve a [`StatusService`] there.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// Builds the store.
    pub fn build(self) -> Store {
        Store {
            inner: Arc::new(Inner {
                cfg: self,
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        StoreBuilder::default().build()
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
pub(crate) enum Lookup {
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
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
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
        // Critical sections are a few map updates; a panic cannot leave them
        // half done, so a poisoned lock is still consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn location(&self, id: &str) -> String {
        format!("{}{}", self.inner.cfg.base_path, id)
    }

    pub(crate) fn retry_after(&self) -> HeaderValue {
        HeaderValue::from(self.inner.cfg.retry_after.as_secs().max(1))
    }

    /// Parks `work`: it goes on in a task of its own, and its result is kept
    /// for `ttl` after it finishes. `on_error` renders a failed result.
    pub(crate) fn park(
        &self,
        work: Pin<Box<dyn Future<Output = Reply> + Send>>,
        owner: Option<String>,
        on_error: impl Fn(&crate::Error) -> Response<Body> + Send + Sync + 'static,
    ) -> Result<Id, ParkError> {
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
            let reply = work.await;
            let stored = Stored::collect(reply, max, &on_error).await;
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
        let expires = Instant::now() + self.inner.cfg.ttl;
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
    pub(crate) fn lookup(&self, id: &str, owner: Option<&str>) -> Lookup {
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
    pub(crate) fn remove(&self, id: &str, owner: Option<&str>) -> bool {
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
    async fn collect(
        reply: Reply,
        max: usize,
        on_error: &(dyn Fn(&crate::Error) -> Response<Body> + Send + Sync),
    ) -> Stored {
        let res = match reply.inner {
            Ok(rendered) => {
                let mut res = Response::new(rendered.body);
                *res.status_mut() = rendered.status.unwrap_or(StatusCode::OK);
                *res.headers_mut() = rendered.headers;
                res
            }
            Err(e) => on_error(&e),
        };
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

    pub(crate) fn to_response(&self) -> Response<Body> {
        let mut res = Response::new(Body::from(self.body.clone()));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

/// `202 Accepted` pointing at the status URL of `id`.
pub(crate) fn accepted(store: &Store, id: &str) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::ACCEPTED;
    if let Ok(loc) = HeaderValue::from_str(&store.location(id)) {
        res.headers_mut().insert(LOCATION, loc);
    }
    res.headers_mut().insert(RETRY_AFTER, store.retry_after());
    res
}

/// `503` when nothing can be parked.
pub(crate) fn unavailable(store: &Store) -> Response<Body> {
    let mut res = Response::new(Body::from("too many pending jobs; retry later\n"));
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res.headers_mut().insert(RETRY_AFTER, store.retry_after());
    res
}

pub(crate) use prefer::{applied, PREFERENCE_APPLIED};
