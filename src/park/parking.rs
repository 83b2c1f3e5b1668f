//! The `park` layer on the core: an [`OnDeadline`] hook that parks late work
//! in a [`Store`], and the [`DelayedResponse`] settings that set it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::Response;

use super::answers::{accepted, client_busy, unavailable, unreachable};
use super::store::ParkError;
use super::Store;
use crate::body::Body;
use crate::delayed::{DelayedResponse, LateWork, OnDeadline};
use crate::http::{preference_applied, Prefer, PREFERENCE_APPLIED};
use crate::limit::ClientKey;

/// Parks the work of one `wait` at its deadline.
#[derive(Clone)]
struct Parking {
    store: Store,
    owner: Option<String>,
    /// Whose running-job cap the work counts against.
    client: ClientKey,
    /// The request's preferences, read when `park` was set.
    prefer: Prefer,
}

impl Parking {
    /// The `Prefer: wait=N` this request honours: capped, and not with
    /// `respond-async`, which parks at once.
    fn honoured_wait(&self) -> Option<Duration> {
        if self.prefer.respond_async {
            return None;
        }
        self.prefer.wait.map(|w| w.min(self.store.max_wait()))
    }
}

impl Parking {
    /// The answer to a request whose work was parked, or not.
    fn answer(&self, parked: Result<String, ParkError>) -> Response<Body> {
        match parked {
            Ok(id) => {
                tracing::debug!(%id, "parked");
                let mut res = accepted(&self.store, &id);
                if let Some(v) = preference_applied(self.prefer.respond_async, self.honoured_wait())
                {
                    res.headers_mut().insert(PREFERENCE_APPLIED, v);
                }
                res
            }
            Err(ParkError::ClientBusy) => {
                tracing::debug!(client = %self.client, "cannot park: client at its cap");
                client_busy(&self.store)
            }
            Err(ParkError::Unavailable) => unreachable(&self.store),
            Err(e) => {
                tracing::debug!(?e, "cannot park");
                unavailable(&self.store)
            }
        }
    }
}

impl OnDeadline for Parking {
    fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
        if self.prefer.respond_async {
            return Some(Duration::ZERO);
        }
        self.honoured_wait().or(timeout)
    }

    fn on_deadline(&self, late: LateWork) -> Response<Body> {
        let parked = self
            .store
            .park(late, self.owner.clone(), self.client.clone());
        self.answer(parked)
    }

    fn on_deadline_async(
        &self,
        late: LateWork,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        if self.store.remote().is_none() {
            return Box::pin(std::future::ready(self.on_deadline(late)));
        }
        Box::pin(async move {
            let parked = self
                .store
                .park_shared(late, self.owner.clone(), self.client.clone())
                .await;
            self.answer(parked)
        })
    }

    fn in_time(&self, response: &mut Response<Body>) {
        if let Some(v) = preference_applied(false, self.honoured_wait()) {
            response.headers_mut().insert(PREFERENCE_APPLIED, v);
        }
    }
}

/// Async request-reply (feature `park`).
impl DelayedResponse {
    /// Async request-reply (feature `park`): at the deadline of
    /// [`wait`](Self::wait), the work keeps running in a task of its own and
    /// its result is parked in `store`; the answer is `202 Accepted` with a
    /// `Location` to poll (served by a [`park::Service`](crate::park::Service))
    /// and `Retry-After`.
    ///
    /// The job counts against `client`'s cap of running jobs
    /// ([`max_jobs_per_client`](crate::park::Builder::max_jobs_per_client));
    /// pass [`ClientKey::from_extensions`] of the request (its application
    /// key, else its peer address), or a key of your own. A client at its cap
    /// is answered `429 Too Many Requests` with `Retry-After`; when the store
    /// is full of running jobs, the answer is `503` with `Retry-After`. Either
    /// way the work is dropped.
    ///
    /// The parked result is rendered as a result in time would be: with this
    /// builder's [`status`](Self::status) and [`header`](Self::header)s (so
    /// [`json`](Self::json)) and its [`on_error`](Self::on_error) hook.
    ///
    /// The request's `Prefer` header (read by [`for_request`](Self::for_request))
    /// is honoured: `respond-async` parks at once, unless the result is already
    /// there; `wait=N` sets the deadline to N seconds, capped by
    /// [`Store::max_wait`](crate::park::Store::max_wait); the response says which
    /// were applied in `Preference-Applied`.
    ///
    /// Parking is an [`on_deadline`](Self::on_deadline) hook (it replaces
    /// one set before), so it applies to `wait`; the held modes (`start`,
    /// `poll`, `handle`) send their head before they could give a
    /// `Location`, and ignore it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use delayed_response::limit::ClientKey;
    /// use delayed_response::park::Store;
    /// use delayed_response::DelayedResponse;
    ///
    /// # async fn handler(req: http::Request<hyper::body::Incoming>, store: Store) -> http::Response<delayed_response::Body> {
    /// let client = ClientKey::from_extensions(req.extensions());
    /// DelayedResponse::for_request(&req)
    ///     .timeout(Duration::from_secs(1))
    ///     .park(store, client)
    ///     .wait(async { "slow result" })
    ///     .await
    /// # }
    /// ```
    pub fn park(self, store: Store, client: ClientKey) -> Self {
        let owner = self
            .deadline_hook::<Parking>()
            .and_then(|p| p.owner.clone());
        let prefer = self.prefer();
        self.on_deadline_typed(Parking {
            store,
            owner,
            client,
            prefer,
        })
    }

    /// Binds a parked result to `owner` (feature `park`): only status requests
    /// whose [`Service::owner`](crate::park::Service::owner) key equals it can
    /// read or cancel it. Call after [`park`](Self::park).
    pub fn park_owner(self, owner: impl Into<String>) -> Self {
        match self.deadline_hook::<Parking>() {
            Some(parking) => {
                let parking = Parking {
                    owner: Some(owner.into()),
                    ..parking.clone()
                };
                self.on_deadline_typed(parking)
            }
            None => self,
        }
    }
}
