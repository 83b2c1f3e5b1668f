//! [`Stored`]: a finished result, kept as bytes.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;

use crate::backplane::JobResult;
use crate::body::Body;

/// A finished result, kept as bytes so it can be served more than once.
#[derive(Clone)]
pub(super) struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Stored {
    /// Keeps `res` whole when its body has at most `max` bytes; a larger
    /// or failing body is kept as a `500` that says so.
    pub(super) async fn collect(res: Response<Body>, max: usize) -> Stored {
        let (parts, body) = res.into_parts();
        match http_body_util::Limited::new(body, max).collect().await {
            Ok(collected) => Stored {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Stored::error("result too large to keep\n")
            }
            Err(_) => Stored::failed(),
        }
    }

    /// The `500` kept for work that failed without a response.
    pub(super) fn failed() -> Stored {
        Stored::error("the work failed\n")
    }

    fn error(body: &'static str) -> Stored {
        Stored {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    /// The body's size, which the store's byte caps count.
    pub(super) fn len(&self) -> usize {
        self.body.len()
    }

    /// The result as a backplane keeps it.
    pub(super) fn to_result(&self) -> JobResult {
        JobResult {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    /// A result a backplane kept.
    pub(super) fn from_result(result: JobResult) -> Stored {
        Stored {
            status: result.status,
            headers: result.headers,
            body: result.body,
        }
    }

    pub(super) fn to_response(&self) -> Response<Body> {
        let mut res = Response::new(Body::from(self.body.clone()));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}
