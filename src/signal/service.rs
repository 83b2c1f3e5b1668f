//! Routing and the HTTP answers of the signal service.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::params;
use super::registry::{Id, Refusal, Registry, SendError};
use super::Signal;
use crate::body::Body;
use crate::delayed::Shutdown;
use crate::error::BoxError;

/// The future of a [`Signal`] service call. It never fails: every problem
/// is an HTTP answer.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl<B> hyper::service::Service<Request<B>> for Signal
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<B>) -> ResponseFuture {
        ResponseFuture {
            inner: Box::pin(respond(self.registry.clone(), req)),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for Signal
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        hyper::service::Service::call(&*self, req)
    }
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/` (or `//`…): a new swarm.
    Root,
    /// `/{id}`: an id we may have issued.
    Swarm(Id),
    /// `/{lowercase alphanumerics}` that is no id of ours: no such swarm.
    Unknown,
    /// Anything else.
    Stray,
}

fn route(path: &str) -> Route {
    let name = path.trim_start_matches('/');
    if name.is_empty() {
        return Route::Root;
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Route::Stray;
    }
    Id::parse(name).map_or(Route::Unknown, Route::Swarm)
}

async fn respond<B>(registry: Arc<Registry>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let route = route(req.uri().path());
    let (parts, body) = req.into_parts();
    let allow_origin = registry.config.allow_origin.clone();
    let mut res = match parts.method {
        Method::GET => listen(&registry, route, &parts).await,
        Method::POST => send(&registry, route, &parts, body).await,
        Method::OPTIONS if allow_origin.is_some() => preflight(),
        _ => {
            let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            res
        }
    };
    if let Some(origin) = allow_origin {
        // A stream's head has not gone out yet: hyper sends it after this.
        let headers = res.headers_mut();
        if origin != "*" {
            headers.insert(VARY, HeaderValue::from_static("origin"));
        }
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    res
}

/// The answer to a CORS preflight (only with `allow_origin`).
fn preflight() -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let headers = res.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    res
}

async fn listen(registry: &Arc<Registry>, route: Route, req: &Parts) -> Response<Body> {
    if !accepts_event_stream(&req.headers) {
        return text(
            StatusCode::NOT_ACCEPTABLE,
            "this endpoint sends text/event-stream",
        );
    }
    let shutdown = req.extensions.get::<Shutdown>();
    let stream = match route {
        Route::Root => registry.create(shutdown),
        Route::Swarm(id) => registry.join(id, shutdown),
        Route::Unknown => Err(Refusal::NoSwarm),
        Route::Stray => return text(StatusCode::NOT_FOUND, "not found"),
    };
    match stream {
        // Resolves at once: the `connect` event is queued.
        Ok(stream) => stream.await,
        Err(refusal) => refused(refusal),
    }
}

/// `Accept` refuses the stream only when it is present and names no media
/// range that covers `text/event-stream` (with a `q` above zero).
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    let mut present = false;
    for value in headers.get_all(ACCEPT) {
        present = true;
        let Ok(value) = value.to_str() else {
            continue;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if !refused && matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*") {
                return true;
            }
        }
    }
    !present
}

async fn send<B>(registry: &Registry, route: Route, req: &Parts, body: B) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let id = match route {
        Route::Swarm(id) if registry.exists(id) => id,
        Route::Swarm(_) | Route::Unknown => return refused(Refusal::NoSwarm),
        Route::Root | Route::Stray => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let limit = registry.config.body_limit;
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large();
    }
    let Some(format) = params::format(req.headers.get(CONTENT_TYPE).map(|v| v.as_bytes())) else {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or application/x-www-form-urlencoded",
        );
    };
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body was cut off"),
    };
    let Some(value) = params::parse(format, &body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object or array",
        );
    };
    match registry.send(id, params::outgoing(&value)) {
        Ok(()) => {
            let mut res = Response::new(Body::from(Bytes::from_static(b"OK")));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res
        }
        Err(SendError::Refused(refusal)) => refused(refusal),
        Err(SendError::NoData) => text(StatusCode::BAD_REQUEST, "no data"),
        Err(SendError::BadCid) => text(StatusCode::BAD_REQUEST, "cid must be a string"),
    }
}

fn too_large() -> Response<Body> {
    text(StatusCode::PAYLOAD_TOO_LARGE, "the body is over the limit")
}

fn refused(refusal: Refusal) -> Response<Body> {
    text(refusal.status(), refusal.reason())
}

/// A one-line `text/plain` answer.
fn text(status: StatusCode, reason: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{reason}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(route("/"), Route::Root);
        assert_eq!(route("//"), Route::Root);
        assert!(matches!(route(&format!("/{id}")), Route::Swarm(_)));
        assert!(matches!(route(&format!("//{id}")), Route::Swarm(_)));
        assert_eq!(route("/555"), Route::Unknown);
        assert_eq!(route("/tostring"), Route::Unknown);
        assert_eq!(route("/toString"), Route::Stray);
        assert_eq!(route("/foo/bar"), Route::Stray);
        assert_eq!(route(&format!("/{id}/")), Route::Stray);
        assert_eq!(route("/a-b"), Route::Stray);
    }

    fn accept(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        accepts_event_stream(&h)
    }

    #[test]
    fn accept_refuses_only_when_present_and_excluding_event_streams() {
        assert!(accept(&[]));
        assert!(accept(&["text/event-stream"]));
        assert!(accept(&["*/*"]));
        assert!(accept(&["text/*;q=0.5"]));
        assert!(accept(&["application/json", "Text/Event-Stream"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&["text/event-stream;q=0"]));
        assert!(!accept(&["text/html, application/xhtml+xml"]));
    }
}
