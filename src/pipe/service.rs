//! The pipe service: routing, the sender's held response, the receiver's
//! response, and the per-socket watcher.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN,
    REFERER,
};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::hooks::{DefaultHooks, Hooks, Socket};
use super::ids::{IdScheme, RandomIds};
use super::registry::{Inserted, Registry, State, Tapped};
use super::transfer::{Paced, Peeked, Source, Transfer, TransferBody, Upload, UploadBody};
use crate::body::Body;
use crate::delayed::{Completion, DelayedResponse, Heartbeat, Shutdown};
use crate::error::BoxError;

/// The default [`Builder::ttl`]: 600 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The default [`Builder::max_upload_bytes`]: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// The default [`Builder::max_waiting`]: 10 000 sockets.
pub const DEFAULT_MAX_WAITING: usize = 10_000;
/// The default heartbeat interval of a waiting sender: 15 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

const ID_ATTEMPTS: usize = 8;

/// Settings for a [`Pipe`]; see [`Pipe::builder`].
#[must_use]
#[derive(Clone)]
pub struct Builder {
    ttl: Duration,
    max_upload_bytes: u64,
    max_waiting: usize,
    reservations: bool,
    required_referer: Option<String>,
    heartbeat: Heartbeat,
    base_url: Option<String>,
    ids: Arc<dyn IdScheme>,
    hooks: Arc<dyn Hooks>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("ttl", &self.ttl)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_waiting", &self.max_waiting)
            .field("reservations", &self.reservations)
            .field("required_referer", &self.required_referer)
            .field("heartbeat", &self.heartbeat)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ttl: DEFAULT_TTL,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_waiting: DEFAULT_MAX_WAITING,
            reservations: false,
            required_referer: None,
            heartbeat: Heartbeat::every(DEFAULT_HEARTBEAT),
            base_url: None,
            ids: Arc::new(RandomIds),
            hooks: Arc::new(DefaultHooks),
        }
    }
}

impl Builder {
    /// How long a socket waits for its receiver, counted from its creation
    /// (or its reservation; opening a reservation does not renew it). A
    /// transfer in progress has no time limit. `Duration::MAX` means no TTL
    /// (in practice: a century).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most bytes an upload may carry; `0` disables the limit. A larger
    /// declared `Content-Length` gets `413` before anything is read; a
    /// chunked upload that passes it is cut (the receiver's body ends
    /// abnormally and the sender's response says why). For multipart uploads
    /// the whole request body counts.
    pub fn max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// The most sockets that may wait (reserved or opened, not yet taken) at
    /// once; past it, new ones get `503`.
    pub fn max_waiting(mut self, sockets: usize) -> Self {
        self.max_waiting = sockets;
        self
    }

    /// Turns on `GET /reserve` (a fresh id) and `POST /reserve/{id}` (opens
    /// it), for browsers that cannot read a streaming POST response.
    pub fn reservations(mut self, on: bool) -> Self {
        self.reservations = on;
        self
    }

    /// Requires this `Referer` on `GET /reserve`: the request passes when its
    /// `Referer` equals `url` exactly, or its `Origin` equals the origin
    /// (scheme, host and port) of `url`. Others get `403`.
    pub fn required_referer(mut self, url: impl Into<String>) -> Self {
        self.required_referer = Some(url.into());
        self
    }

    /// The heartbeat of a waiting sender's response. Its writes keep the
    /// response alive behind proxies, and a failed one is how a sender that
    /// left is noticed (within two intervals). Default: a space every 15 s.
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The base of download URLs, for a pipe behind a proxy or nested under
    /// a path (`https://example.com/pipe` gives `https://example.com/pipe/{id}`).
    /// Default: `http://{Host}` (`https://{Host}` for a request that came
    /// over TLS to [`server::Server`](crate::server::Server)).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.base_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// The id scheme (default [`RandomIds`]).
    pub fn ids(mut self, ids: impl IdScheme) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// The event hooks (default [`DefaultHooks`]).
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Arc::new(hooks);
        self
    }

    /// Builds the service.
    pub fn build(self) -> Pipe {
        Pipe {
            inner: Arc::new(Inner {
                cfg: self,
                registry: Registry::new(),
            }),
        }
    }
}

/// The ephemeral pipe service (see the [module docs](super)).
///
/// It is a `hyper` service and a `tower` service over `Request<B>` for any
/// body type `B`; clones share their sockets.
#[derive(Clone)]
pub struct Pipe {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe")
            .field("cfg", &self.inner.cfg)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe::new()
    }
}

impl Pipe {
    /// A pipe with the default settings.
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// Settings, starting from the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How many sockets are reserved or waiting for a receiver.
    pub fn waiting(&self) -> usize {
        self.inner.registry.len()
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        self.inner.clone().route(req).await
    }
}

/// The future of [`Pipe`]'s `Service::call`.
#[must_use = "futures do nothing unless polled"]
pub struct PipeFuture {
    inner: Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>,
}

impl fmt::Debug for PipeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PipeFuture")
    }
}

impl Future for PipeFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl<B> hyper::service::Service<Request<B>> for Pipe
where
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PipeFuture;

    fn call(&self, req: Request<B>) -> PipeFuture {
        PipeFuture {
            inner: Box::pin(self.inner.clone().route(req)),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for Pipe
where
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PipeFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> PipeFuture {
        hyper::service::Service::call(&*self, req)
    }
}

struct Inner {
    cfg: Builder,
    registry: Registry,
}

enum Route<'a> {
    Open { filename: Option<&'a str> },
    OpenReserved(&'a str),
    Reserve,
    Tap(&'a str),
    NotFound,
    Method(&'static str),
}

fn is_upload(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT
}

impl Inner {
    fn route_of<'a>(&self, method: &Method, path: &'a str) -> Route<'a> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        let get = method == Method::GET;
        if path.is_empty() {
            return if is_upload(method) {
                Route::Open { filename: None }
            } else {
                Route::Method("POST, PUT")
            };
        }
        if self.cfg.reservations {
            if path == "reserve" && get {
                return Route::Reserve;
            }
            if let Some(id) = path.strip_prefix("reserve/") {
                return if id.contains('/') {
                    Route::NotFound
                } else if is_upload(method) {
                    Route::OpenReserved(id)
                } else {
                    Route::Method("POST, PUT")
                };
            }
        }
        if path.contains('/') {
            return Route::NotFound;
        }
        if get {
            Route::Tap(path)
        } else if is_upload(method) {
            // `curl -T file http://host/` sends `PUT /file`.
            Route::Open {
                filename: Some(path),
            }
        } else {
            Route::Method("GET, POST, PUT")
        }
    }

    async fn route<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let body: UploadBody = Box::pin(
            body.map_frame(|f| f.map_data(Into::into))
                .map_err(Into::into),
        );
        let hooks = &self.cfg.hooks;
        match self.route_of(&parts.method, parts.uri.path()) {
            Route::Open { filename } => {
                let filename = filename.map(percent_decode);
                self.clone().open(parts, body, None, filename).await
            }
            Route::OpenReserved(id) => {
                if !self.cfg.ids.is_valid(id) {
                    return hooks.not_found();
                }
                let id = id.to_owned();
                self.clone().open(parts, body, Some(id), None).await
            }
            Route::Reserve => self.reserve(&parts),
            Route::Tap(id) => {
                let id = id.to_owned();
                self.tap(&id).await
            }
            Route::NotFound => hooks.not_found(),
            Route::Method(allow) => hooks.method_not_allowed(allow),
        }
    }

    /// The TTL deadline of a socket created now (a TTL too large to add,
    /// such as `Duration::MAX`, means about a century).
    fn deadline(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.cfg.ttl)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
    }

    fn url(&self, parts: &Parts, id: &str) -> String {
        if let Some(base) = &self.cfg.base_url {
            return format!("{base}/{id}");
        }
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
            .unwrap_or("localhost");
        // `server::Server` marks requests that came over TLS.
        let scheme = match parts.extensions.get::<http::uri::Scheme>() {
            Some(scheme) if *scheme == http::uri::Scheme::HTTPS => "https",
            _ => "http",
        };
        format!("{scheme}://{host}/{id}")
    }

    /// `POST /`, `PUT /{name}`, `POST /reserve/{id}`: the sender's response
    /// goes out at once with the download URL, then heartbeats until a
    /// receiver arrives, the TTL passes, or the sender leaves.
    async fn open(
        self: Arc<Self>,
        parts: Parts,
        body: UploadBody,
        reserved: Option<String>,
        filename: Option<String>,
    ) -> Response<Body> {
        let hooks = self.cfg.hooks.clone();
        let limit = self.cfg.max_upload_bytes;
        let content_length = match declared_length(&parts) {
            Ok(len) => len,
            Err(reason) => return hooks.bad_request(reason),
        };
        if let Some(len) = content_length {
            if limit > 0 && len > limit {
                return hooks.too_large(limit);
            }
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let boundary = match &content_type {
            Some(ct) if is_multipart(ct) => match multer::parse_boundary(ct) {
                Ok(b) => Some(b),
                Err(_) => return hooks.bad_request("multipart without a boundary"),
            },
            _ => None,
        };

        // The head's headers are added to the response below rather than to
        // the builder: a builder's headers live as long as the response,
        // and a waiting sender should cost as little as possible.
        let mut builder = DelayedResponse::new()
            .pending_status(StatusCode::OK)
            .heartbeat(self.cfg.heartbeat.clone());
        if let Some(shutdown) = parts.extensions.get::<Shutdown>() {
            builder = builder.shutdown(shutdown.clone());
        }
        let body = if expects_continue(&parts) {
            Peeked::nudge(body).await
        } else {
            body
        };
        let (response, completion) = builder.handle();
        let (tapped, tapped_rx) = oneshot::channel();
        let mut upload = Box::new(Upload {
            body,
            boundary,
            completion: completion.clone(),
            socket: Socket {
                id: String::new(),
                url: String::new(),
                filename,
                content_type,
                content_length,
                query: parts.uri.query().map(str::to_owned),
            },
            tapped,
        });

        let (id, serial, deadline) = match reserved {
            Some(id) => {
                upload.socket.url = self.url(&parts, &id);
                upload.socket.id = id.clone();
                // Written before the socket can be taken, so the URL line is
                // always first.
                let _ = completion.write(hooks.opened(&upload.socket));
                match self.registry.open_reserved(&id, upload) {
                    Ok((serial, deadline)) => (id, serial, deadline),
                    Err(_) => return hooks.not_found(),
                }
            }
            None => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let id = match self.cfg.ids.generate() {
                        Ok(id) => id,
                        Err(error) => {
                            tracing::warn!(%error, "pipe: no id");
                            return hooks.busy();
                        }
                    };
                    upload.socket.url = self.url(&parts, &id);
                    upload.socket.id = id.clone();
                    let socket = upload.socket.clone();
                    match self
                        .registry
                        .insert(&id, State::Waiting(upload), self.cfg.max_waiting)
                    {
                        Inserted::Ok { serial } => {
                            // A fresh id is known to nobody until this
                            // line is out, so nothing can take the socket
                            // before it is written.
                            let _ = completion.write(hooks.opened(&socket));
                            break (id, serial, self.deadline());
                        }
                        Inserted::Taken(State::Waiting(back)) if attempt < ID_ATTEMPTS => {
                            upload = back
                        }
                        Inserted::Full(state) | Inserted::Taken(state) => {
                            // Dropped outside the registry's lock.
                            drop(state);
                            return hooks.busy();
                        }
                    }
                }
            }
        };
        tracing::debug!(%id, "pipe socket opened");
        tokio::spawn(watch(
            Arc::downgrade(&self),
            id,
            serial,
            deadline,
            completion,
            tapped_rx,
        ));
        let mut res = response.await;
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            http::header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        res
    }

    /// `GET /reserve`.
    fn reserve(self: &Arc<Self>, parts: &Parts) -> Response<Body> {
        let hooks = &self.cfg.hooks;
        if let Some(required) = &self.cfg.required_referer {
            if !referer_ok(parts, required) {
                return hooks.referer_refused();
            }
        }
        for _ in 0..ID_ATTEMPTS {
            let id = match self.cfg.ids.generate() {
                Ok(id) => id,
                Err(_) => return hooks.busy(),
            };
            let deadline = self.deadline();
            match self
                .registry
                .insert(&id, State::Reserved { deadline }, self.cfg.max_waiting)
            {
                Inserted::Ok { serial } => {
                    let url = self.url(parts, &id);
                    tracing::debug!(%id, "pipe socket reserved");
                    let res = hooks.reserved(&id, &url);
                    tokio::spawn(expire_reservation(
                        Arc::downgrade(self),
                        id,
                        serial,
                        deadline,
                    ));
                    return res;
                }
                Inserted::Taken(_) => continue,
                Inserted::Full(_) => return hooks.busy(),
            }
        }
        hooks.busy()
    }

    /// `GET /{id}`: takes the socket (single use) and streams the upload.
    async fn tap(self: Arc<Self>, id: &str) -> Response<Body> {
        let hooks = self.cfg.hooks.clone();
        if !self.cfg.ids.is_valid(id) {
            return hooks.not_found();
        }
        let upload = match self.registry.tap(id) {
            Tapped::Missing => return hooks.not_found(),
            Tapped::Reserved => return hooks.not_ready(id),
            Tapped::Taken(upload) => upload,
        };
        let Upload {
            body,
            boundary,
            completion,
            socket,
            tapped,
        } = *upload;
        drop(tapped);
        // The transfer is the sender's result: a shutdown lets it finish.
        completion.begin_result();
        tracing::debug!(%id, "pipe socket connected");
        hooks.connected(&socket);
        let mut transfer =
            Transfer::new(completion, socket, hooks.clone(), self.cfg.max_upload_bytes);

        let mut res = Response::new(Body::empty());
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        let (source, content_type, filename) = match boundary {
            None => {
                if body.is_end_stream() {
                    // An empty upload: hyper would not poll an empty body.
                    transfer.finish();
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
                    set_download_headers(
                        headers,
                        raw_content_type(transfer.socket().content_type.as_deref()).as_deref(),
                        transfer.socket().filename.as_deref(),
                    );
                    return res;
                }
                if let Some(len) = transfer.socket().content_length {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                }
                let socket = transfer.socket();
                (
                    Source::Raw(body),
                    raw_content_type(socket.content_type.as_deref()),
                    socket.filename.clone(),
                )
            }
            Some(boundary) => {
                let constraints = multer::Constraints::new().size_limit(
                    multer::SizeLimit::new().whole_stream(match self.cfg.max_upload_bytes {
                        0 => u64::MAX,
                        n => n,
                    }),
                );
                let mut multipart =
                    multer::Multipart::with_constraints(Paced::new(body), boundary, constraints);
                // Awaits the sender's part headers; no lock is held. If the
                // receiver leaves meanwhile, dropping `transfer` tells the
                // sender.
                let field = loop {
                    match multipart.next_field().await {
                        Ok(Some(field)) if field.file_name().is_some() => break field,
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => {
                            transfer.cut(super::hooks::Cut::UploadFailed);
                            return hooks.upload_failed(transfer.socket());
                        }
                    }
                };
                let content_type = field.content_type().map(|m| m.to_string());
                let filename = field.file_name().map(str::to_owned);
                // Later hooks (progress, end, cut) see the part's metadata.
                let socket = transfer.socket_mut();
                socket.content_type.clone_from(&content_type);
                socket.filename.clone_from(&filename);
                (
                    Source::Part {
                        field: Box::new(field),
                        _multipart: multipart,
                    },
                    content_type,
                    filename,
                )
            }
        };
        set_download_headers(
            res.headers_mut(),
            content_type.as_deref(),
            filename.as_deref(),
        );
        *res.body_mut() = Body::new(TransferBody::new(source, transfer));
        res
    }
}

/// Ends a reservation when its TTL passes (an opened one has its own
/// watcher with the same deadline; whichever runs first removes it).
async fn expire_reservation(inner: Weak<Inner>, id: String, serial: u64, deadline: Instant) {
    tokio::time::sleep_until(deadline).await;
    let Some(inner) = inner.upgrade() else { return };
    if let Some(State::Waiting(upload)) = inner.registry.remove(&id, serial) {
        let line = inner.cfg.hooks.timeout(&upload.socket, inner.cfg.ttl);
        upload.completion.end(line);
    }
}

/// Watches one waiting socket until a receiver takes it, its sender leaves,
/// or its TTL passes.
async fn watch(
    inner: Weak<Inner>,
    id: String,
    serial: u64,
    deadline: Instant,
    completion: Completion,
    tapped: oneshot::Receiver<()>,
) {
    tokio::select! {
        _ = tapped => {}
        reason = completion.aborted() => {
            let Some(inner) = inner.upgrade() else { return };
            // The heartbeat write failed (or the server is shutting down):
            // free the id. Dropping the upload closes its connection.
            let state = inner.registry.remove(&id, serial);
            tracing::debug!(%id, ?reason, freed = state.is_some(), "pipe sender left");
            drop(state);
        }
        () = tokio::time::sleep_until(deadline) => {
            let Some(inner) = inner.upgrade() else { return };
            if let Some(State::Waiting(upload)) = inner.registry.remove(&id, serial) {
                tracing::debug!(%id, "pipe socket timed out");
                let line = inner.cfg.hooks.timeout(&upload.socket, inner.cfg.ttl);
                upload.completion.end(line);
            }
        }
    }
}

/// The download's type for a raw upload: the upload's, except the form type
/// `curl --data-binary` sends when told nothing, which says nothing about
/// the file (`application/octet-stream` is used then).
fn raw_content_type(declared: Option<&str>) -> Option<String> {
    declared
        .filter(|ct| {
            !ct.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
        .map(str::to_owned)
}

fn expects_continue(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn is_multipart(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn declared_length(parts: &Parts) -> Result<Option<u64>, &'static str> {
    match parts.headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or("malformed Content-Length"),
    }
}

/// Does the request carry the required `Referer` (exactly) or its `Origin`?
fn referer_ok(parts: &Parts, required: &str) -> bool {
    let referer = parts.headers.get(REFERER).and_then(|v| v.to_str().ok());
    if referer == Some(required) {
        return true;
    }
    let origin = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, origin_of(required)) {
        (Some(origin), Some(required)) => origin.eq_ignore_ascii_case(required),
        _ => false,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme_end + end])
}

fn set_download_headers(
    headers: &mut http::HeaderMap,
    content_type: Option<&str>,
    filename: Option<&str>,
) {
    let content_type = content_type
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    let disposition = content_disposition(filename);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
}

/// `attachment` with the file's base name, quoted (RFC 6266), and in
/// `filename*` (RFC 5987) when it is not plain ASCII.
pub(crate) fn content_disposition(filename: Option<&str>) -> String {
    let Some(name) = filename
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
        .filter(|f| !f.is_empty() && *f != "." && *f != "..")
    else {
        return "attachment".to_owned();
    };
    // Control characters have no business in a file name.
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_empty() {
        return "attachment".to_owned();
    }
    let mut fallback = String::with_capacity(name.len() + 2);
    let mut ascii = true;
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            ' '..='~' => fallback.push(c),
            _ => {
                ascii = false;
                fallback.push('_');
            }
        }
    }
    if ascii {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Decodes `%XX` escapes; malformed escapes stay as they are, invalid UTF-8
/// becomes U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_quotes_and_escapes() {
        assert_eq!(content_disposition(None), "attachment");
        assert_eq!(
            content_disposition(Some("a b.txt")),
            "attachment; filename=\"a b.txt\""
        );
        assert_eq!(
            content_disposition(Some("we\"ird.txt")),
            "attachment; filename=\"we\\\"ird.txt\""
        );
        // A Windows path (old browsers sent one) keeps its base name only.
        assert_eq!(
            content_disposition(Some("C:\\Users\\me\\a.txt")),
            "attachment; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition(Some("../../etc/passwd")),
            "attachment; filename=\"passwd\""
        );
        assert_eq!(
            content_disposition(Some("résumé.pdf")),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        assert_eq!(
            content_disposition(Some("a\r\nb")),
            "attachment; filename=\"ab\""
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://h:9/x?y"), Some("http://h:9"));
        assert_eq!(origin_of("http://h"), Some("http://h"));
        assert_eq!(origin_of("nope"), None);
    }
}
