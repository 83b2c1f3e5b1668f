//! The pipe service: its public face, and the dispatch of each request to
//! its handler (`sender.rs`, `reserve.rs`, `receiver.rs`).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;

use super::body::UploadBody;
use super::builder::{Builder, Protocol};
use super::headers::{percent_decode, url};
use super::ids::is_secret;
use super::page;
use super::piping::Paths;
use super::registry::{Registry, State};
use super::routes::Route;
use crate::body::Body;
use crate::delayed::DelayedResponse;
use crate::error::BoxError;
use crate::http::ResponseFuture;
use crate::limit::PerClient;

/// The ephemeral pipe service (see the [module docs](super)).
///
/// It is a `hyper` service and a `tower` service over `Request<B>` for any
/// body type `B`; clones share their sockets.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

/// What every request of one pipe shares.
pub(super) struct Inner {
    pub(super) cfg: Builder,
    pub(super) registry: Registry,
    /// Per-client caps, beside the registry's global one.
    pub(super) waiting_per_client: Arc<PerClient>,
    pub(super) reservations_per_client: Arc<PerClient>,
    /// The paths of the Piping mode.
    pub(super) paths: Paths,
    /// A waiting sender's response settings, made once (each sender adds
    /// its request's part and its abort hook).
    pub(super) sender_stream: DelayedResponse,
    /// The other instances, with a backplane.
    #[cfg(feature = "redis")]
    pub(super) cluster: Option<super::cluster::Cluster>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("cfg", &self.inner.cfg)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Default for Service {
    fn default() -> Self {
        Service::new()
    }
}

impl Service {
    /// A pipe with the default settings.
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// Settings, starting from the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(super) fn from_builder(cfg: Builder) -> Self {
        // The sweeper ends what expires: a reservation just goes; a waiting
        // sender's response gets its `timeout:` line (dropping the upload
        // closes its connection once that line is out).
        let hooks = cfg.hooks.clone();
        let ttl = cfg.ttl;
        let on_expire = Box::new(move |state: State| {
            if let State::Waiting(upload) = state {
                tracing::debug!(id = %upload.socket.id, "pipe socket timed out");
                upload.completion.end(hooks.timeout(&upload.socket, ttl));
            }
        });
        Service {
            inner: Arc::new(Inner {
                #[cfg(feature = "redis")]
                cluster: super::cluster::Cluster::new(&cfg),
                waiting_per_client: PerClient::new(cfg.max_waiting_per_client),
                reservations_per_client: PerClient::new(cfg.max_reservations_per_client),
                sender_stream: DelayedResponse::new()
                    .pending_status(StatusCode::OK)
                    .heartbeat(cfg.heartbeat.clone()),
                cfg,
                registry: Registry::new(on_expire),
                paths: Paths::new(),
            }),
        }
    }

    /// How many sockets are reserved or waiting for a receiver; in the
    /// Piping mode, how many requests (senders and receivers) wait.
    pub fn waiting(&self) -> usize {
        match self.inner.cfg.protocol {
            Protocol::Piping => self.inner.paths.waiting(),
            _ => self.inner.registry.len(),
        }
    }

    /// In the Piping mode, how many paths are in use: waiting, or busy
    /// with a transfer (a path is free again once its transfer ended).
    /// Always 0 in the ephemeral mode.
    pub fn paths_in_use(&self) -> usize {
        self.inner.paths.len()
    }

    /// Answers one request. This is what the `hyper` and `tower` `Service`
    /// impls call.
    pub fn respond<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let inner = self.inner.clone();
        ResponseFuture::new(async move { inner.route(req).await })
    }
}

crate::http::service_impls!(Service);

impl Inner {
    async fn route<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        #[allow(unused_mut)] // without feature `redis`
        let (mut parts, body) = req.into_parts();
        let body = UploadBody::new(body);
        if self.cfg.protocol == Protocol::Piping {
            return self.piping(parts, body).await;
        }
        #[cfg(feature = "redis")]
        let forwarded = match self.forwarded(&mut parts).await {
            Ok(forwarded) => forwarded,
            Err(res) => return res,
        };
        let hooks = &self.cfg.hooks;
        if self.cfg.page
            && (parts.method == http::Method::GET || parts.method == http::Method::HEAD)
            && parts.uri.path().trim_matches('/').is_empty()
        {
            let reservations = self.cfg.reservations;
            return page::index(page::Mode::Ephemeral { reservations });
        }
        match Route::of(&parts.method, parts.uri.path(), self.cfg.reservations) {
            Route::Open { filename } => {
                let filename = filename.map(percent_decode);
                self.clone().open(parts, body, None, filename).await
            }
            Route::OpenReserved { id, secret } => {
                if !self.cfg.ids.is_valid(id) || !is_secret(secret) {
                    return hooks.not_found();
                }
                // A reservation another instance holds gets its upload
                // there.
                #[cfg(feature = "redis")]
                let body = if forwarded {
                    body
                } else {
                    match self.open_elsewhere(&parts, id, secret, body).await {
                        Ok(res) => return res,
                        Err(body) => body,
                    }
                };
                let reserved = (id.to_owned(), secret.to_owned());
                self.clone().open(parts, body, Some(reserved), None).await
            }
            Route::Reserve => self.reserve(&parts).await,
            Route::Tap(id) => {
                let id = id.to_owned();
                // A socket another instance holds is streamed through.
                #[cfg(feature = "redis")]
                if !forwarded {
                    if let Some(res) = self.tap_elsewhere(&parts, &id).await {
                        return res;
                    }
                }
                self.tap(&id).await
            }
            Route::NotFound => hooks.not_found(),
            Route::Method(allow) => hooks.method_not_allowed(allow),
        }
    }

    /// The TTL deadline of a socket created now (a TTL too large to add,
    /// such as `Duration::MAX`, means the core's far future).
    pub(super) fn deadline(&self) -> Instant {
        crate::delayed::instant_after(Instant::now(), self.cfg.ttl)
    }

    /// The URL of `path` on this pipe.
    pub(super) fn url(&self, parts: &Parts, path: &str) -> String {
        url(self.cfg.base_url.as_deref(), parts, path)
    }
}
