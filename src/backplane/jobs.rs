//! [`JobBackplane`]: where `park`'s jobs live across instances.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

use super::BoxFuture;
use crate::error::Error;

/// A finished job's response, kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// What the backplane knows of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Unknown: never parked, expired, or cancelled.
    Missing,
    /// Running on a node that holds its lease.
    Running {
        /// Whom the job belongs to
        /// ([`DelayedResponse::park_owner`](crate::DelayedResponse::park_owner)).
        owner: Option<String>,
    },
    /// Finished, with its result.
    Finished {
        /// Whom the job belongs to.
        owner: Option<String>,
        /// The result.
        result: JobResult,
    },
    /// The job's lease ran out before it finished: its node died (or lost
    /// the backplane for a whole lease). It will never finish.
    Lost {
        /// Whom the job belongs to.
        owner: Option<String>,
    },
}

impl JobState {
    /// Whom the job belongs to, if it is known.
    pub fn owner(&self) -> Option<&str> {
        match self {
            JobState::Missing => None,
            JobState::Running { owner }
            | JobState::Finished { owner, .. }
            | JobState::Lost { owner } => owner.as_deref(),
        }
    }
}

/// A running job, as a node claims it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The job's id.
    pub id: &'a str,
    /// The node that runs it (whose [inbox](JobBackplane::inbox) gets its
    /// cancellation).
    pub node: &'a str,
    /// Whom the job belongs to.
    pub owner: Option<&'a str>,
    /// How long its result will be kept; a lost job is reported as lost for
    /// that long after its lease ran out.
    pub ttl: Duration,
}

/// A node's inbox: the ids of its jobs cancelled elsewhere. Messages may be
/// lost (when the backplane's connection drops), so a node also learns of a
/// cancellation at its next [`renew`](JobBackplane::renew).
pub struct JobInbox {
    rx: mpsc::UnboundedReceiver<String>,
}

impl JobInbox {
    /// An inbox fed by `rx` (for a backplane's implementation).
    pub fn new(rx: mpsc::UnboundedReceiver<String>) -> Self {
        JobInbox { rx }
    }

    /// The next cancelled job's id; `None` once the backplane is gone.
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }
}

impl fmt::Debug for JobInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobInbox").finish_non_exhaustive()
    }
}

/// Where parked jobs live so that every instance of a service answers
/// their status URLs.
///
/// Without a backplane a [`park::Store`](crate::park::Store) keeps its jobs
/// in memory, and only the instance that parked a job answers its status
/// URL. With one (set by
/// [`park::Builder::backplane`](crate::park::Builder::backplane)), every
/// instance answers it:
///
/// - A running job belongs to the instance (the *node*) that runs it: the
///   node [claims](Self::claim) it with a lease, and
///   [renews](Self::renew) the lease while the job runs.
/// - A finished result is [stored](Self::finish) in the backplane
///   with its TTL, and any instance reads it ([`state`](Self::state)).
/// - A long-poll on another instance is woken when the job finishes.
/// - A [`cancel`](Self::cancel) on any instance reaches the owner
///   through its [inbox](Self::inbox).
/// - A job whose lease ran out before it finished (its node died, or could
///   not reach the backplane for a whole lease) is [`JobState::Lost`] for
///   as long as its result would have been kept, then unknown.
///
/// `RedisBackplane` (feature `redis`) implements it.
///
/// A node is a [`park::Store`](crate::park::Store) in one process: it makes
/// up its own random name. Every operation may fail ([`Error::is_io`]: the
/// status URL then answers `503` with `Retry-After`).
pub trait JobBackplane: Send + Sync + 'static {
    /// Subscribes to `node`'s inbox; returns once messages sent after it
    /// returns are received.
    fn inbox<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<JobInbox, Error>>;

    /// Registers a running job with a fresh lease held by `claim.node`.
    fn claim<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, Result<(), Error>>;

    /// Renews the leases of `node`'s running jobs `ids` (each with the TTL
    /// it was claimed with); returns the ids whose lease `node` no longer
    /// holds (cancelled elsewhere, or lost): the node stops them.
    fn renew<'a>(
        &'a self,
        node: &'a str,
        ids: &'a [(String, Duration)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;

    /// How often a node must [`renew`](Self::renew) its leases.
    fn renew_every(&self) -> Duration;

    /// Stores a finished job's result for `ttl` and wakes the long-polls of
    /// every instance. `false` (and nothing stored) when `node` no longer
    /// holds the job's lease: it was cancelled or lost meanwhile.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        node: &'a str,
        result: &'a JobResult,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// What is known of a job. With `wait`, a running job is waited for
    /// that long at most (woken when it finishes, is cancelled or is lost).
    fn state<'a>(
        &'a self,
        id: &'a str,
        wait: Option<Duration>,
    ) -> BoxFuture<'a, Result<JobState, Error>>;

    /// Drops a job: a result is deleted; a running job is forgotten and its
    /// node told to stop it. `false` when there was no such job.
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>>;
}
