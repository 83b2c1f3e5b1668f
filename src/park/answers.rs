//! The plain answers of the park service.

use http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use http::{Response, StatusCode};

use super::Store;
use crate::body::Body;
use crate::http::text;

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

/// `429` when the client has `max_jobs_per_client` jobs running.
pub(super) fn client_busy(store: &Store) -> Response<Body> {
    crate::limit::too_many_requests(
        store.retry_after_time(),
        "too many running jobs for this client; retry later\n",
    )
}

pub(super) fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "no such job\n")
}

pub(super) fn no_content() -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

/// `500` for a job whose instance died before it finished.
pub(super) fn lost() -> Response<Body> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "job lost: the instance running it stopped\n",
    )
}

/// `503` + `Retry-After` when the backplane cannot be reached.
pub(super) fn unreachable(store: &Store) -> Response<Body> {
    let mut res = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the job store is unreachable; retry later\n",
    );
    res.headers_mut().insert(RETRY_AFTER, store.retry_after());
    res
}
