//! Parking: a job enters the [`Store`] as running, its work goes on in a
//! task of its own, and its result is kept (here, or in the backplane).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::store::{drop_finished, purge, Entry, Id, Job, ParkError};
use super::stored::Stored;
use super::Store;
use crate::delayed::LateWork;
use crate::limit::{ClientKey, Permit};

impl Store {
    /// Parks `work` for `client`: it goes on in a task of its own, and its
    /// result, rendered as the core renders any result, is kept for `ttl`
    /// after it finishes. (Without a backplane; see [`Store::park_shared`].)
    pub(super) fn park(
        &self,
        work: LateWork,
        owner: Option<String>,
        client: ClientKey,
    ) -> Result<Id, ParkError> {
        let (permit, id) = self.admit(&client)?;
        self.launch(id, owner, client, permit, work)
    }

    /// The client's running-job unit and a new id.
    pub(super) fn admit(&self, client: &ClientKey) -> Result<(Permit, Id), ParkError> {
        // The per-client cap first: a client at its cap is told so (429)
        // even when the store is full for everyone (503).
        let permit = self
            .inner
            .running_per_client
            .try_acquire(client)
            .ok_or(ParkError::ClientBusy)?;
        let id = crate::id::random_token().map_err(|_| ParkError::NoEntropy)?;
        Ok((permit, id))
    }

    /// Enters job `id` as running and starts its task.
    pub(super) fn launch(
        &self,
        id: Id,
        owner: Option<String>,
        client: ClientKey,
        permit: Permit,
        work: LateWork,
    ) -> Result<Id, ParkError> {
        let (notify, done) = watch::channel(false);
        {
            let mut st = self.lock();
            purge(&mut st, Instant::now());
            if st.entries.len() >= self.inner.cfg.max_entries {
                // Evict the oldest finished result; refuse if none is left.
                let Some((_, oldest)) = st.expiries.first().cloned() else {
                    return Err(ParkError::Full);
                };
                drop_finished(&mut st, &oldest);
            }
            st.running += 1;
            st.entries.insert(
                id.clone(),
                Entry {
                    owner,
                    client,
                    job: Job::Running {
                        done,
                        notify,
                        abort: None,
                        _permit: permit,
                    },
                },
            );
        }
        let store = self.clone();
        let task_id = id.clone();
        let cfg = &self.inner.cfg;
        // A result larger than a byte cap could never be kept whole.
        let max = cfg
            .max_result_bytes
            .min(cfg.max_stored_bytes)
            .min(cfg.max_stored_bytes_per_client);
        let task = tokio::spawn(async move {
            let mut guard = Unfinished(Some((store, task_id)));
            let response = work.into_response().await;
            let stored = Stored::collect(response, max).await;
            if let Some((store, id)) = guard.0.clone() {
                store.complete(&id, stored).await;
                guard.0 = None;
            }
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

    /// The job finished: its result goes to the backplane (if any; kept
    /// here when the backplane fails), else into this store.
    async fn complete(&self, id: &str, result: Stored) {
        if let Some(remote) = self.remote() {
            match remote.finish(id, &result, self.inner.cfg.ttl).await {
                // Stored, or cancelled or lost meanwhile: nothing to keep.
                Ok(()) => {
                    self.stop_running(id, false);
                    return;
                }
                Err(e) => tracing::debug!(%id, %e, "result kept here: the backplane failed"),
            }
        }
        self.finish(id, result);
    }

    /// The ids of the running jobs, with the TTL their results will have.
    pub(super) fn running_ids(&self) -> Vec<(Id, Duration)> {
        let ttl = self.inner.cfg.ttl;
        self.lock()
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.job, Job::Running { .. }))
            .map(|(id, _)| (id.clone(), ttl))
            .collect()
    }

    /// Forgets the running job `id` (its long-polls here look again),
    /// and cancels its work if `abort`.
    pub(super) fn stop_running(&self, id: &str, abort: bool) {
        let mut st = self.lock();
        if !matches!(
            st.entries.get(id),
            Some(Entry {
                job: Job::Running { .. },
                ..
            })
        ) {
            return;
        }
        if let Some(Entry {
            job:
                Job::Running {
                    notify,
                    abort: task,
                    ..
                },
            ..
        }) = st.entries.remove(id)
        {
            st.running -= 1;
            let _ = notify.send(true);
            if let (true, Some(task)) = (abort, task) {
                task.abort();
            }
        }
    }
}

/// Finishes a parked job as failed when its task ends without a result (the
/// work panicked, or the runtime shut down), so that it does not hold its
/// client's running-job unit and a place in the store for ever. A job
/// cancelled by `DELETE` is gone already, and `finish` ignores it.
struct Unfinished(Option<(Store, Id)>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((store, id)) = self.0.take() {
            store.finish(&id, Stored::failed());
        }
    }
}
