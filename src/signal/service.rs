//! The service: routing and the HTTP answers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    VARY,
};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::builder::Builder;
use super::id::Id;
use super::params;
use super::registry::{Refusal, Registry};
use super::swarm::SendError;
use crate::body::Body;
use crate::delayed::DelayedResponse;
use crate::error::BoxError;
use crate::http::{method_not_allowed, service_impls, text, unbuffered, ResponseFuture};
use crate::limit::{too_many_requests, ClientKey};

/// The `Content-Type` of every stream.
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream; charset=utf-8");

/// The `Retry-After` of a client at its cap of streams or swarms: when one
/// of its own streams ends is up to the client, so this is only a pace.
const CLIENT_CAP_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The signalling service: one registry of swarms, shared by its clones.
///
/// It is a `hyper::service::Service` and a `tower_service::Service` for
/// `Request<B>` with any body `B` whose chunks turn into [`Bytes`]; see the
/// [module docs](super) for the protocol. Cloning is cheap and every clone
/// serves the same swarms.
#[derive(Clone)]
pub struct Service {
    registry: Arc<Registry>,
}

impl Service {
    /// A service with the default settings.
    pub fn new() -> Self {
        Service::builder().build()
    }

    /// A builder for the settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(super) fn from_registry(registry: Arc<Registry>) -> Self {
        Service { registry }
    }

    /// How many swarms are open.
    pub fn swarm_count(&self) -> usize {
        self.registry.swarm_count()
    }

    /// How many peers swarm `id` has, if it is open.
    pub fn peer_count(&self, id: &str) -> Option<usize> {
        self.registry.peer_count(id)
    }

    /// Answers one request (what the `Service` impls call). The future never
    /// fails: every problem is an HTTP answer.
    pub fn respond<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        ResponseFuture::new(respond(self.registry.clone(), req))
    }
}

service_impls!(Service);

impl Default for Service {
    fn default() -> Self {
        Service::new()
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.registry.config)
            .field("swarms", &self.swarm_count())
            .finish()
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
        _ => method_not_allowed("GET, POST"),
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
            "this endpoint sends text/event-stream\n",
        );
    }
    // The request's shutdown signal (from `server::serve`) ends the stream.
    let base = DelayedResponse::for_parts(req);
    let client = ClientKey::from_extensions(&req.extensions);
    let stream = match route {
        Route::Root => registry.create(base, &client).await,
        Route::Swarm(id) => registry.join(base, id, &client).await,
        Route::Unknown => Err(Refusal::NoSwarm),
        Route::Stray => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    match stream {
        Ok(stream) => {
            // Resolves at once, with the head: the `connect` event is
            // queued. The head has not gone out yet, so headers set here
            // reach the client; setting them per response rather than on
            // the builder keeps each peer's builder on the shared default
            // headers.
            let mut res = stream.await;
            let headers = res.headers_mut();
            // hyper keeps a response's header map for the connection's next
            // response: room for exactly these headers costs half of what
            // the map's default growth takes (≈300 bytes per held peer).
            let cors = if registry.config.allow_origin.is_some() {
                2
            } else {
                0
            };
            headers.reserve(3 + cors);
            headers.insert(CONTENT_TYPE, EVENT_STREAM);
            unbuffered(headers);
            res
        }
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

async fn send<B>(registry: &Arc<Registry>, route: Route, req: &Parts, body: B) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let client = ClientKey::from_extensions(&req.extensions);
    if let Err(wait) = registry.check_signal_rate(&client) {
        tracing::debug!(%client, "signal: client over its signal rate");
        return too_many_requests(wait, "too many signals from this client; slow down\n");
    }
    let id = match route {
        Route::Swarm(id) => match registry.exists(id).await {
            Ok(true) => id,
            Ok(false) => return refused(Refusal::NoSwarm),
            Err(refusal) => return refused(refusal),
        },
        Route::Unknown => return refused(Refusal::NoSwarm),
        Route::Root | Route::Stray => return text(StatusCode::NOT_FOUND, "not found\n"),
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
            "send application/json or application/x-www-form-urlencoded\n",
        );
    };
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body was cut off\n"),
    };
    let Some(parsed) = params::parse(format, &body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object or array\n",
        );
    };
    match registry.send(id, params::outgoing(&parsed)).await {
        Ok(()) => text(StatusCode::OK, "OK"),
        Err(SendError::Refused(refusal)) => refused(refusal),
        Err(SendError::NoData) => text(StatusCode::BAD_REQUEST, "no data\n"),
        Err(SendError::BadCid) => text(StatusCode::BAD_REQUEST, "cid must be a string\n"),
    }
}

fn too_large() -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is over the limit\n",
    )
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal.status() {
        StatusCode::TOO_MANY_REQUESTS => {
            too_many_requests(CLIENT_CAP_RETRY_AFTER, refusal.reason())
        }
        status if refusal == Refusal::Unavailable => {
            let mut res = text(status, refusal.reason());
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        status => text(status, refusal.reason()),
    }
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
