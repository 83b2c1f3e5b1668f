//! [`Builder`]: the settings of a [`Store`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Store;
use crate::backplane::JobBackplane;

/// Settings of a [`Store`]; see the [module docs](super) for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    pub(super) ttl: Duration,
    pub(super) max_entries: usize,
    pub(super) max_result_bytes: usize,
    pub(super) max_stored_bytes: usize,
    pub(super) max_stored_bytes_per_client: usize,
    pub(super) max_jobs_per_client: usize,
    pub(super) max_wait: Duration,
    pub(super) retry_after: Duration,
    pub(super) base_path: String,
    pub(super) backplane: Option<Shared>,
}

/// A backplane, in a [`Builder`].
#[derive(Clone)]
pub(super) struct Shared(pub(super) Arc<dyn JobBackplane>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobBackplane")
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ttl: Duration::from_secs(600),
            max_entries: 10_000,
            max_result_bytes: 1 << 20,
            max_stored_bytes: 64 << 20,
            max_stored_bytes_per_client: 16 << 20,
            max_jobs_per_client: 100,
            max_wait: Duration::from_secs(25),
            retry_after: Duration::from_secs(1),
            base_path: "/jobs/".to_string(),
            backplane: None,
        }
    }
}

impl Builder {
    /// How long a finished result is kept (counted from when it finished).
    /// A TTL too long to count (`Duration::MAX`) keeps it until it is
    /// fetched away or evicted.
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
    /// `500` whose body says so. A result is also never kept larger than
    /// [`max_stored_bytes`](Self::max_stored_bytes) or
    /// [`max_stored_bytes_per_client`](Self::max_stored_bytes_per_client).
    pub fn max_result_bytes(mut self, n: usize) -> Self {
        self.max_result_bytes = n;
        self
    }

    /// The most bytes of result bodies kept at once, all clients together.
    /// Storing a result that would pass it evicts the oldest finished
    /// results first (their status URLs then answer `404`); running jobs
    /// hold no bytes, so a result always finds room.
    pub fn max_stored_bytes(mut self, n: usize) -> Self {
        self.max_stored_bytes = n;
        self
    }

    /// The most bytes of result bodies kept at once for one client (the
    /// [`ClientKey`](crate::limit::ClientKey) the job was parked with).
    /// Storing a result that would pass it evicts that client's own oldest
    /// results first, so one client cannot push out everyone else's.
    pub fn max_stored_bytes_per_client(mut self, n: usize) -> Self {
        self.max_stored_bytes_per_client = n;
        self
    }

    /// How many parked jobs one client (the
    /// [`ClientKey`](crate::limit::ClientKey) given to
    /// [`DelayedResponse::park`](crate::DelayedResponse::park)) may have
    /// running at once (at least 1). At the cap, its next request is
    /// answered `429 Too Many Requests` with `Retry-After` and its work is
    /// dropped; other clients park as before. Finished results do not count.
    pub fn max_jobs_per_client(mut self, n: usize) -> Self {
        self.max_jobs_per_client = n.max(1);
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
    /// the id is appended to it. Serve a [`Service`](super::Service) there.
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// Where the jobs live across instances (default: in this store only).
    ///
    /// With a backplane (`RedisBackplane`, feature `redis`), every instance
    /// that shares it answers every status URL:
    ///
    /// - A job runs where it was parked, under a lease in the backplane
    ///   (`RedisBuilder::lease`, default 15 s) that this store renews every
    ///   third of it while the job runs. Parking waits for the
    ///   backplane to register it; a backplane that cannot be reached
    ///   answers `503` with `Retry-After` (the work is dropped).
    /// - Its result goes to the backplane with its [`ttl`](Self::ttl), and
    ///   is read from there by any instance; a long-poll (`Prefer: wait`)
    ///   on another instance is woken when it finishes.
    /// - A `DELETE` on any instance cancels the work where it runs.
    /// - A job whose instance died (its lease ran out before it finished)
    ///   answers `500 Internal Server Error` with the body `job lost: the
    ///   instance running it stopped`, for as long as its result would have
    ///   been kept (then `404`): it will never finish, and a 5xx other
    ///   than `503` tells clients not to retry.
    /// - When the backplane cannot be reached, a status URL not served from
    ///   this store's memory answers `503` with `Retry-After`.
    ///
    /// A result is still kept up to [`max_result_bytes`](Self::max_result_bytes)
    /// (a larger one becomes the same `500`). The caps on running jobs
    /// count the jobs of this store; the byte
    /// caps count the results this store keeps in memory, which with a
    /// backplane are only those the backplane failed to take (the result
    /// is then served by this instance alone, and the others report the
    /// job lost once its lease runs out). [`Store::len`], [`Store::running`]
    /// and [`Store::stored_bytes`] count this store's memory only.
    pub fn backplane(mut self, backplane: Arc<dyn JobBackplane>) -> Self {
        self.backplane = Some(Shared(backplane));
        self
    }

    /// Builds the store.
    pub fn build(self) -> Store {
        Store::from_builder(self)
    }
}
