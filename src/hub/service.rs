//! Routing and the HTTP answers of the hub.

// The checks return the refusal to send as their error: a response is
// large, but it is built once per refused request and sent at once.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::auth::Identity;
use super::channel::{self, Publishers, RESERVED};
use super::open::{self, Ask};
use super::registry::Inner;
use super::{cursor, poll};
use crate::body::Body;
use crate::error::BoxError;
use crate::http::{method_not_allowed, text};
use crate::limit::{too_many_requests, ClientKey, Permit, RateLimit};
use crate::server::RemoteAddr;

pub use crate::http::ResponseFuture;

/// The hub's HTTP routes (see the [module docs](super)), as a hyper and a
/// tower service. Get one from [`Hub::service`](super::Hub::service); clones
/// serve the same hub. It mounts under axum with `Router::nest_service`.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Service { inner }
    }

    /// Answers one request.
    pub fn respond<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let inner = self.inner.clone();
        ResponseFuture::new(async move { respond(inner, req).await })
    }
}

crate::http::service_impls!(Service);

enum Route<'a> {
    Pub(&'a str),
    Sub(Option<&'a str>),
    Poll(Option<&'a str>),
    Presence(&'a str),
    Stats,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/sub" => Route::Sub(None),
        "/poll" => Route::Poll(None),
        "/stats" => Route::Stats,
        _ => {
            if let Some(ch) = path.strip_prefix("/pub/") {
                Route::Pub(ch)
            } else if let Some(ch) = path.strip_prefix("/sub/") {
                Route::Sub(Some(ch))
            } else if let Some(ch) = path.strip_prefix("/poll/") {
                Route::Poll(Some(ch))
            } else if let Some(ch) = path.strip_prefix("/presence/") {
                Route::Presence(ch)
            } else {
                Route::NotFound
            }
        }
    }
}

/// The query parameters the hub reads.
#[derive(Default)]
struct Query {
    channels: Vec<String>,
    last_event_id: Option<String>,
    cursor: Option<String>,
}

fn query(parts: &Parts) -> Query {
    let mut q = Query::default();
    let Some(raw) = parts.uri.query() else {
        return q;
    };
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "channel" => q.channels.push(value.into_owned()),
            "last_event_id" => q.last_event_id = Some(value.into_owned()),
            "cursor" => q.cursor = Some(value.into_owned()),
            _ => {}
        }
    }
    q
}

/// Checks channel names, removes duplicates, and sorts them.
pub(crate) fn channel_set<'a>(
    names: impl Iterator<Item = &'a str>,
    max: usize,
    multiplexed: bool,
) -> Result<Arc<[Arc<str>]>, &'static str> {
    let mut channels: Vec<Arc<str>> = Vec::new();
    for name in names {
        if !channel::valid(name) {
            return Err("bad channel name: 1-128 characters of A-Z a-z 0-9 _ . : @ -");
        }
        if multiplexed && RESERVED.contains(&name) {
            return Err("this channel name is reserved on a multiplexed stream");
        }
        channels.push(Arc::from(name));
    }
    channels.sort();
    channels.dedup();
    if channels.is_empty() {
        return Err("name at least one channel");
    }
    if channels.len() > max {
        return Err("too many channels");
    }
    Ok(channels.into())
}

async fn respond<B>(inner: Arc<Inner>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let get = matches!(parts.method, Method::GET | Method::HEAD);
    match route(&path) {
        Route::Pub(channel) if parts.method == Method::POST => {
            publish(&inner, &parts, channel, body).await
        }
        Route::Pub(_) => method_not_allowed("POST"),
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        _ if !get => method_not_allowed("GET, HEAD"),
        Route::Sub(channel) => subscribe(&inner, &parts, channel, false).await,
        Route::Poll(channel) => subscribe(&inner, &parts, channel, true).await,
        Route::Presence(channel) => presence(&inner, &parts, channel).await,
        Route::Stats => json(
            StatusCode::OK,
            serde_json::to_string(&inner.stats()).unwrap_or_default(),
        ),
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn bad_request(reason: &str) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("{reason}\n"))
}

/// A refusal: `401` when anonymous (credentials may help), else `403`.
fn refused(identity: &Identity, what: &str) -> Response<Body> {
    if identity.is_anonymous() {
        text(StatusCode::UNAUTHORIZED, format!("sign in to {what}\n"))
    } else {
        text(StatusCode::FORBIDDEN, format!("not allowed to {what}\n"))
    }
}

fn identify(inner: &Inner, parts: &Parts) -> Result<Arc<Identity>, Response<Body>> {
    match inner.config.authorizer.identify(parts) {
        Ok(mut identity) => {
            identity.addr = parts.extensions.get::<RemoteAddr>().map(|a| a.0.ip());
            identity.client = Some(ClientKey::from_extensions(&parts.extensions));
            Ok(Arc::new(identity))
        }
        Err(e) => Err(text(StatusCode::UNAUTHORIZED, format!("{e}\n"))),
    }
}

fn may_subscribe(inner: &Inner, identity: &Identity, channel: &str) -> Result<(), Response<Body>> {
    let ns = inner.config.namespace(channel);
    if identity.is_anonymous() && !ns.anonymous {
        return Err(refused(identity, &format!("subscribe to {channel}")));
    }
    if !inner.config.authorizer.can_subscribe(identity, channel) {
        return Err(refused(identity, &format!("subscribe to {channel}")));
    }
    Ok(())
}

/// Takes a token of `limit` for `key`: from the backplane's shared bucket
/// when it counts across instances, else (or when it cannot be reached)
/// from this hub's own. `Err(wait)` when there is none.
async fn take_token(
    inner: &Inner,
    limit: &RateLimit,
    name: &str,
    key: &ClientKey,
) -> Result<(), Duration> {
    if let Some(shared) = inner.config.backplane.take_token(name, key, limit.rate()) {
        match shared.await {
            Ok(None) => return Ok(()),
            Ok(Some(wait)) => return Err(wait),
            Err(error) => tracing::debug!(%error, "shared rate limit unavailable; counting here"),
        }
    }
    limit.check(key)
}

/// The connect rate and the connection cap; the slot taken.
async fn admit(inner: &Inner, identity: &Identity) -> Result<Option<Permit>, Response<Body>> {
    let key = identity.client_key();
    if let Some(rate) = &inner.connect_rate {
        if let Err(wait) = take_token(inner, rate, "connect", &key).await {
            return Err(too_many_requests(wait, "too many connects\n"));
        }
    }
    match inner.connections.try_acquire(&key) {
        Some(permit) => Ok(Some(permit)),
        None => Err(too_many_requests(
            Duration::from_secs(1),
            "too many open connections\n",
        )),
    }
}

/// `GET /sub…` and `GET /poll…`.
async fn subscribe(
    inner: &Arc<Inner>,
    parts: &Parts,
    path_channel: Option<&str>,
    long_poll: bool,
) -> Response<Body> {
    let q = query(parts);
    let multiplexed = path_channel.is_none();
    let names: Vec<&str> = match path_channel {
        Some(ch) => vec![ch],
        None => q.channels.iter().map(String::as_str).collect(),
    };
    let channels = match channel_set(
        names.into_iter(),
        inner.config.max_channels,
        multiplexed && !long_poll,
    ) {
        Ok(c) => c,
        Err(reason) => return bad_request(reason),
    };
    let header_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let raw_cursor = if long_poll {
        q.cursor
    } else {
        header_id.or(q.last_event_id)
    };
    let raw_cursor = raw_cursor.filter(|c| !c.is_empty());
    let cursor = match raw_cursor {
        Some(c) => match cursor::parse(&c, channels.len()) {
            Some(c) => Some(c),
            None => return bad_request("malformed cursor"),
        },
        None => None,
    };
    let identity = match identify(inner, parts) {
        Ok(i) => i,
        Err(res) => return res,
    };
    for ch in channels.iter() {
        if let Err(res) = may_subscribe(inner, &identity, ch) {
            return res;
        }
    }
    let new_session = !long_poll
        || !inner
            .polls
            .contains(&poll::session_key(&identity, &channels));
    let slot = if new_session {
        match admit(inner, &identity).await {
            Ok(slot) => slot,
            Err(res) => return res,
        }
    } else {
        None
    };
    let mut ask = Ask {
        identity,
        channels,
        multiplexed,
        cursor,
        slot,
    };
    if long_poll {
        if inner.poll_session(&mut ask).is_err() {
            return text(StatusCode::FORBIDDEN, "refused\n");
        }
        return poll::poll(inner, parts, ask).await;
    }
    if let Some(hook) = &inner.config.on_subscribe {
        if !hook(&ask.identity, &ask.channels) {
            // Dropping `ask` frees its slot.
            return text(StatusCode::FORBIDDEN, "refused\n");
        }
    }
    open::sse(inner, parts, ask).await
}

async fn publish<B>(inner: &Arc<Inner>, parts: &Parts, channel: &str, body: B) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !channel::valid(channel) {
        return bad_request("bad channel name: 1-128 characters of A-Z a-z 0-9 _ . : @ -");
    }
    let limit = inner.config.body_limit;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is over the limit\n",
        );
    }
    let identity = match identify(inner, parts) {
        Ok(i) => i,
        Err(res) => return res,
    };
    let allowed = match inner.config.namespace(channel).publishers {
        Publishers::Anyone => true,
        Publishers::Users => !identity.is_anonymous(),
        Publishers::Authorized => inner.config.authorizer.can_publish(&identity, channel),
    };
    if !allowed {
        return refused(&identity, &format!("publish to {channel}"));
    }
    if let Some(rate) = &inner.publish_rate {
        if let Err(wait) = take_token(inner, rate, "publish", &identity.client_key()).await {
            return too_many_requests(wait, "too many publishes\n");
        }
    }
    let data = match Limited::new(body, limit).collect().await {
        // A copy: the collected bytes may be a slice of the connection's
        // read buffer (hyper splits one frame off it without copying), and
        // history keeps a message for minutes; a slice would pin the whole
        // buffer (kilobytes for a few bytes of message) as long.
        Ok(collected) => Bytes::copy_from_slice(&collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is over the limit\n",
            )
        }
        Err(_) => return bad_request("the body was cut off"),
    };
    if std::str::from_utf8(&data).is_err() {
        return bad_request("the body must be UTF-8 text");
    }
    match inner.publish(channel, data).await {
        Ok(published) => {
            let status = if published.subscribers > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::ACCEPTED
            };
            json(
                status,
                serde_json::json!({"id": published.id, "subscribers": published.subscribers})
                    .to_string(),
            )
        }
        Err(error) if error.is_invalid() => bad_request("bad request"),
        Err(error) => {
            tracing::warn!(%error, "publish failed");
            let mut res = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the backplane is unavailable\n",
            );
            res.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            res
        }
    }
}

/// `GET /presence/{channel}`.
async fn presence(inner: &Arc<Inner>, parts: &Parts, channel: &str) -> Response<Body> {
    if !channel::valid(channel) {
        return bad_request("bad channel name: 1-128 characters of A-Z a-z 0-9 _ . : @ -");
    }
    let identity = match identify(inner, parts) {
        Ok(i) => i,
        Err(res) => return res,
    };
    if let Err(res) = may_subscribe(inner, &identity, channel) {
        return res;
    }
    if !inner.config.namespace(channel).presence {
        return text(StatusCode::NOT_FOUND, "presence is off for this channel\n");
    }
    match inner.config.backplane.presence(channel).await {
        Ok(members) => {
            let users: Vec<serde_json::Value> = members
                .into_iter()
                .map(|m| {
                    let info = m
                        .info
                        .and_then(|i| serde_json::from_slice::<serde_json::Value>(&i).ok());
                    serde_json::json!({"user": m.user, "connections": m.connections, "info": info})
                })
                .collect();
            json(
                StatusCode::OK,
                serde_json::json!({"channel": channel, "users": users}).to_string(),
            )
        }
        Err(error) => {
            tracing::warn!(%error, "presence read failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the backplane is unavailable\n",
            )
        }
    }
}
