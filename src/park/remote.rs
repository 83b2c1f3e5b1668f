//! A [`Store`] with a [`JobBackplane`]: jobs shared across instances.
//!
//! This store is one *node*: it registers its jobs in the backplane under
//! a name of its own and renews their leases; its inbox tells it which of
//! its jobs were cancelled elsewhere. Status requests for jobs it does not
//! hold are answered from the backplane.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::answers::{accepted, lost, no_content, not_found, unreachable};
use super::store::{ParkError, WeakStore};
use super::stored::Stored;
use super::Store;
use crate::backplane::{Claim, JobBackplane, JobInbox, JobState};
use crate::body::Body;
use crate::delayed::LateWork;
use crate::error::Error;
use crate::limit::ClientKey;

/// The backplane of a store, and its node once started.
pub(super) struct Remote {
    backplane: Arc<dyn JobBackplane>,
    started: OnceCell<Started>,
}

struct Started {
    node: String,
    keeper: AbortHandle,
}

impl Remote {
    pub(super) fn new(backplane: Arc<dyn JobBackplane>) -> Remote {
        Remote {
            backplane,
            started: OnceCell::new(),
        }
    }

    /// This node's name; subscribes to its inbox and starts renewing
    /// leases at the first call.
    async fn start(&self, store: &Store) -> Result<&str, Error> {
        let started = self
            .started
            .get_or_try_init(|| async {
                let node = crate::id::random_token()?;
                let inbox = self.backplane.inbox(&node).await?;
                let keeper = tokio::spawn(keep(
                    store.downgrade(),
                    inbox,
                    self.backplane.clone(),
                    node.clone(),
                ))
                .abort_handle();
                Ok::<_, Error>(Started { node, keeper })
            })
            .await?;
        Ok(&started.node)
    }

    /// Hands a finished result to the backplane (`Ok` also when the job was
    /// cancelled or lost meanwhile: nothing is kept).
    pub(super) async fn finish(
        &self,
        id: &str,
        result: &Stored,
        ttl: Duration,
    ) -> Result<(), Error> {
        let Some(started) = self.started.get() else {
            return Ok(());
        };
        let stored = self
            .backplane
            .finish(id, &started.node, &result.to_result(), ttl)
            .await?;
        if !stored {
            tracing::debug!(%id, "result dropped: the job was cancelled or lost");
        }
        Ok(())
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(started) = self.started.get() {
            started.keeper.abort();
        }
    }
}

/// Renews the leases of the node's running jobs, and stops those cancelled
/// elsewhere (told by the inbox, or found at a renewal) or lost.
async fn keep(store: WeakStore, inbox: JobInbox, backplane: Arc<dyn JobBackplane>, node: String) {
    let every = backplane.renew_every().max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut inbox = Some(inbox);
    loop {
        tokio::select! {
            id = recv(&mut inbox) => {
                let Some(store) = store.upgrade() else { return };
                match id {
                    Some(id) => store.stop_running(&id, true),
                    // The backplane ended the inbox: renewals still find
                    // the cancelled jobs.
                    None => inbox = None,
                }
            }
            _ = tick.tick() => {
                let Some(store) = store.upgrade() else { return };
                let ids = store.running_ids();
                if ids.is_empty() {
                    continue;
                }
                match backplane.renew(&node, &ids).await {
                    Ok(gone) => {
                        for id in gone {
                            tracing::debug!(%id, "job cancelled or lost elsewhere: stopped");
                            store.stop_running(&id, true);
                        }
                    }
                    Err(e) => tracing::debug!(%e, "the leases of running jobs were not renewed"),
                }
            }
        }
    }
}

async fn recv(inbox: &mut Option<JobInbox>) -> Option<String> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

impl Store {
    /// Parks `work` as [`park`](Store::park) does, registered in the
    /// backplane first (without one, the same as `park`).
    pub(super) async fn park_shared(
        &self,
        work: LateWork,
        owner: Option<String>,
        client: ClientKey,
    ) -> Result<String, ParkError> {
        let Some(remote) = self.remote() else {
            return self.park(work, owner, client);
        };
        let (permit, id) = self.admit(&client)?;
        let unavailable = |e: Error| {
            tracing::debug!(%e, "cannot park: the backplane failed");
            ParkError::Unavailable
        };
        let node = remote.start(self).await.map_err(unavailable)?;
        let claim = Claim {
            id: &id,
            node,
            owner: owner.as_deref(),
            ttl: self.ttl(),
        };
        remote.backplane.claim(claim).await.map_err(unavailable)?;
        match self.launch(id.clone(), owner, client, permit, work) {
            Ok(id) => Ok(id),
            Err(e) => {
                let _ = remote.backplane.cancel(&id).await;
                Err(e)
            }
        }
    }
}

/// Answers a status request for a job this store does not hold.
pub(super) async fn status(
    store: &Store,
    id: &str,
    owner: Option<&str>,
    wait: Option<Duration>,
) -> Response<Body> {
    let Some(remote) = store.remote() else {
        return not_found();
    };
    let backplane = &remote.backplane;
    let mut state = match backplane.state(id, None).await {
        Ok(state) => state,
        Err(e) => return failed(store, &e),
    };
    if let (JobState::Running { .. }, Some(wait)) = (&state, wait) {
        if visible(&state, owner) {
            state = match backplane.state(id, Some(wait)).await {
                Ok(state) => state,
                Err(e) => return failed(store, &e),
            };
        }
    }
    if !visible(&state, owner) {
        return not_found();
    }
    match state {
        JobState::Missing => not_found(),
        JobState::Running { .. } => accepted(store, id),
        JobState::Finished { result, .. } => Stored::from_result(result).to_response(),
        JobState::Lost { .. } => lost(),
    }
}

/// Answers a `DELETE`: the job here, else in the backplane.
pub(super) async fn delete(store: &Store, id: &str, owner: Option<&str>) -> Response<Body> {
    let removed = store.remove(id, owner);
    let Some(remote) = store.remote() else {
        return if removed { no_content() } else { not_found() };
    };
    let backplane = &remote.backplane;
    if removed {
        // Its record too, so that no instance reports it lost.
        if let Err(e) = backplane.cancel(id).await {
            tracing::debug!(%id, %e, "cancelled here, but its record stays until its lease ends");
        }
        return no_content();
    }
    let state = match backplane.state(id, None).await {
        Ok(state) => state,
        Err(e) => return failed(store, &e),
    };
    if matches!(state, JobState::Missing) || !visible(&state, owner) {
        return not_found();
    }
    match backplane.cancel(id).await {
        Ok(true) => no_content(),
        Ok(false) => not_found(),
        Err(e) => failed(store, &e),
    }
}

/// Whether `owner` may see the job (one parked without an owner is
/// anyone's).
fn visible(state: &JobState, owner: Option<&str>) -> bool {
    state.owner().is_none_or(|o| Some(o) == owner)
}

fn failed(store: &Store, e: &Error) -> Response<Body> {
    tracing::debug!(%e, "the job backplane failed");
    unreachable(store)
}
