//! The status URLs of parked jobs.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};

use super::answers::accepted;
use super::remote;
use super::store::Lookup;
use super::{ResponseFuture, Store};
use crate::body::Body;
use crate::http::{method_not_allowed, preference_applied, text, Prefer, PREFERENCE_APPLIED};

type OwnerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Serves the status URLs of a [`Store`]: `GET`/`HEAD` to read (long-polling
/// with `Prefer: wait=N`), `DELETE` to cancel.
///
/// | request | answer |
/// |---|---|
/// | `GET /…/{id}`, result ready | the result, with its own status and headers |
/// | `GET /…/{id}`, still running | `202 Accepted`, `Retry-After`, `Location` (after waiting up to `Prefer: wait=N`, capped by [`Store::max_wait`]) |
/// | `GET /…/{id}`, unknown, expired, or another owner's | `404 Not Found` |
/// | `DELETE /…/{id}` | `204 No Content` (the work is cancelled, or the result dropped), or `404` |
/// | `GET /…/{id}`, its instance died before it finished (with a [backplane](super::Builder::backplane)) | `500 Internal Server Error`, `job lost: the instance running it stopped` |
/// | any, the [backplane](super::Builder::backplane) unreachable | `503 Service Unavailable` with `Retry-After` |
/// | any other method | `405 Method Not Allowed` with `Allow` |
///
/// The id is the last segment of the path, so the service works mounted at
/// the store's [`base_path`](super::Builder::base_path) on a plain hyper
/// server and nested under it in axum (`Router::nest_service`). A client that
/// goes away while long-polling cancels only its wait, never the job.
///
/// It implements both `hyper::service::Service` and `tower_service::Service`,
/// for any request body type (the body is not read).
#[derive(Clone)]
pub struct Service {
    store: Store,
    owner: Option<OwnerFn>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store)
            .field("owner", &self.owner.is_some())
            .finish()
    }
}

impl Service {
    /// Serves the jobs of `store`.
    pub fn new(store: Store) -> Self {
        Service { store, owner: None }
    }

    /// Binds results to their owner: `owner` computes the caller's key from
    /// the request (a user id from a session, a hash of a token); a job parked
    /// with [`DelayedResponse::park_owner`](crate::DelayedResponse::park_owner)
    /// is visible only to requests with the same key (others get 404).
    #[must_use]
    pub fn owner<F>(mut self, owner: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.owner = Some(Arc::new(owner));
        self
    }

    /// Answers one request (the body is never read). The future never fails:
    /// every problem is an HTTP answer.
    pub fn respond<B>(&self, req: Request<B>) -> ResponseFuture {
        let (parts, body) = req.into_parts();
        drop(body);
        let store = self.store.clone();
        let owner = self.owner.as_ref().and_then(|f| f(&parts));
        ResponseFuture::new(respond(store, parts, owner))
    }
}

crate::http::service_impls!(Service);

async fn respond(store: Store, parts: Parts, owner: Option<String>) -> Response<Body> {
    let id = parts
        .uri
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    // Ids are 22 base64url characters; anything else cannot be one.
    if id.len() != 22 || !crate::id::is_base64url(id) {
        return text(StatusCode::NOT_FOUND, "no such job\n");
    }
    let id = id.to_string();
    let owner = owner.as_deref();
    match parts.method {
        Method::GET | Method::HEAD => {
            let wait = Prefer::from_headers(&parts.headers)
                .wait
                .map(|w| w.min(store.max_wait()));
            let mut lookup = store.lookup(&id, owner);
            let mut waited = false;
            if let (Lookup::Running(done), Some(wait)) = (&mut lookup, wait) {
                let mut done = done.clone();
                // `timeout` saturates a wait too long to add to now.
                let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
                lookup = store.lookup(&id, owner);
                waited = true;
            }
            let mut res = match lookup {
                // Not here: in the backplane, if there is one (its wait
                // spent here already if the job ran here).
                Lookup::Missing => {
                    let wait = wait.filter(|_| !waited);
                    remote::status(&store, &id, owner, wait).await
                }
                Lookup::Finished(stored) => stored.to_response(),
                Lookup::Running(_) => accepted(&store, &id),
            };
            if res.status() == StatusCode::NOT_FOUND {
                return res;
            }
            if let Some(v) = preference_applied(false, wait) {
                res.headers_mut().insert(PREFERENCE_APPLIED, v);
            }
            res
        }
        Method::DELETE => remote::delete(&store, &id, owner).await,
        _ => method_not_allowed("GET, HEAD, DELETE"),
    }
}
