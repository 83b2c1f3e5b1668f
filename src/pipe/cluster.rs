//! Several instances of one pipe (feature `redis`): which instance holds
//! each socket, in a [`PipeBackplane`], and the requests streamed through
//! to it.
//!
//! An instance that makes a socket holds its id in the backplane before the
//! socket exists anywhere (so two instances never hand out one id), and
//! one task per pipe renews all its holds every third of the lease, in one
//! round trip, dropping those whose socket is gone (taken, expired, its
//! sender left). A `GET` (or a reservation's upload) whose id is not here
//! asks the backplane for its owner and streams through to it; the owner's
//! registry is the one place where a socket is taken, under its lock, so
//! two `GET`s on two instances can never both take one socket.
//!
//! The forwarded request carries the instances' shared secret (from the
//! backplane) in [`FORWARD`]; the owner answers it from its registry only,
//! never forwarding again, and trusts the client key ([`CLIENT`]),
//! `Host` and scheme it carries. A request with a wrong secret gets `403`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::UploadBody;
use super::builder::Builder;
use super::forward::{forward, Owner, FORWARD};
use super::headers::host;
use super::ids::secret_matches;
use super::service::Inner;
use crate::backplane::PipeBackplane;
use crate::body::Body;
use crate::http::{lock, text};
use crate::limit::ClientKey;

/// The client's key ([`ClientKey::to_wire`]) in a forwarded request, so
/// that the owner's per-client caps count the client, not the instance.
const CLIENT: HeaderName = HeaderName::from_static("x-pipe-client");
/// `https` when the client's request came over TLS.
const SCHEME: HeaderName = HeaderName::from_static("x-pipe-scheme");

/// What one pipe keeps for the other instances.
pub(super) struct Cluster {
    backplane: Arc<dyn PipeBackplane>,
    /// This instance's advertised URL; `None`: its sockets are not held in
    /// the backplane (it only forwards).
    me: Option<String>,
    forward_timeout: Duration,
    /// The ids this instance holds, renewed while their socket lives.
    held: Mutex<HashSet<String>>,
    renewing: AtomicBool,
    /// The shared secret as last read, and when.
    secret: Mutex<Option<(String, std::time::Instant)>>,
}

impl Cluster {
    pub(super) fn new(cfg: &Builder) -> Option<Cluster> {
        Some(Cluster {
            backplane: cfg.backplane.clone()?,
            me: cfg.advertise.clone(),
            forward_timeout: cfg.forward_timeout,
            held: Mutex::new(HashSet::new()),
            renewing: AtomicBool::new(false),
            secret: Mutex::new(None),
        })
    }

    /// The shared secret: as last read when that is less than `max_age`
    /// ago, else read from the backplane.
    async fn secret(&self, max_age: Duration) -> Result<String, crate::Error> {
        if let Some((secret, at)) = lock(&self.secret).as_ref() {
            if at.elapsed() < max_age {
                return Ok(secret.clone());
            }
        }
        let fresh = self.backplane.secret().await?;
        *lock(&self.secret) = Some((fresh.clone(), std::time::Instant::now()));
        Ok(fresh)
    }

    /// Is `given` the shared secret? On a mismatch the secret is read again
    /// (the store may have lost and remade it), but at most once per
    /// [`SECRET_FRESH`]: wrong secrets cost no Redis call each.
    async fn verify(&self, given: &str) -> Result<bool, crate::Error> {
        if secret_matches(&self.secret(Duration::MAX).await?, given) {
            return Ok(true);
        }
        Ok(secret_matches(&self.secret(SECRET_FRESH).await?, given))
    }
}

/// How long a secret read from the backplane is used before it is read
/// again (for sending), and how often a wrong one makes it read again.
const SECRET_FRESH: Duration = Duration::from_secs(1);

fn bad_gateway() -> Response<Body> {
    text(
        StatusCode::BAD_GATEWAY,
        "the instance that holds this pipe did not answer\n",
    )
}

fn empty() -> UploadBody {
    UploadBody::boxed(http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}))
}

impl Inner {
    /// Whether the request was forwarded by another instance (then it is
    /// answered from this registry only, with the client's key, host and
    /// scheme it carries); a wrong secret is answered `403`.
    pub(super) async fn forwarded(&self, parts: &mut Parts) -> Result<bool, Response<Body>> {
        let (Some(cluster), Some(given)) = (&self.cluster, parts.headers.get(&FORWARD)) else {
            return Ok(false);
        };
        let given = given.to_str().unwrap_or("").to_owned();
        match cluster.verify(&given).await {
            Ok(true) => {}
            Ok(false) => return Err(text(StatusCode::FORBIDDEN, "bad forward secret\n")),
            Err(error) => {
                tracing::warn!(%error, "pipe: no forward secret");
                return Err(self.cfg.hooks.busy());
            }
        }
        let client = parts
            .headers
            .get(&CLIENT)
            .and_then(|v| v.to_str().ok())
            .and_then(ClientKey::from_wire);
        if let Some(client) = client {
            parts.extensions.insert(client);
        }
        if parts.headers.get(&SCHEME).is_some_and(|v| v == "https") {
            parts.extensions.insert(http::uri::Scheme::HTTPS);
        }
        Ok(true)
    }

    /// Holds a fresh `id` for this instance: `Ok(false)` when another
    /// instance holds it.
    pub(super) async fn hold(&self, id: &str) -> Result<bool, crate::Error> {
        let Some((cluster, me)) = self
            .cluster
            .as_ref()
            .and_then(|c| Some((c, c.me.as_ref()?)))
        else {
            return Ok(true);
        };
        let ids = [id.to_owned()];
        let lease = cluster.backplane.lease();
        Ok(cluster.backplane.hold(&ids, me, lease).await? == 1)
    }

    /// The socket `id` (held by [`hold`](Self::hold)) is in the registry:
    /// renew its hold while it stays there.
    pub(super) fn held(self: &Arc<Self>, id: &str) {
        let Some(cluster) = self.cluster.as_ref().filter(|c| c.me.is_some()) else {
            return;
        };
        lock(&cluster.held).insert(id.to_owned());
        if !cluster.renewing.swap(true, Ordering::Relaxed) {
            tokio::spawn(renew(Arc::downgrade(self), cluster.backplane.lease()));
        }
    }

    /// The socket `id` left the registry for good (taken): release its
    /// hold now rather than at the next renewal.
    pub(super) fn forget(&self, id: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let Some(me) = cluster.me.clone() else {
            return;
        };
        if !lock(&cluster.held).remove(id) {
            return;
        }
        let backplane = cluster.backplane.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = backplane.release(&id, &me).await {
                tracing::debug!(%error, %id, "pipe: release failed; the hold expires");
            }
        });
    }

    /// The instance that holds `id`, when it is another one.
    async fn owner_elsewhere(
        &self,
        cluster: &Cluster,
        id: &str,
    ) -> Result<Option<Owner>, Response<Body>> {
        let owner = match cluster.backplane.owner(id).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(%error, %id, "pipe: owner lookup failed");
                return Err(self.cfg.hooks.busy());
            }
        };
        if cluster.me.as_ref() == Some(&owner) {
            return Ok(None);
        }
        match Owner::parse(&owner) {
            Some(owner) => Ok(Some(owner)),
            None => {
                tracing::warn!(%owner, %id, "pipe: the owner's URL is not usable");
                Err(bad_gateway())
            }
        }
    }

    /// The headers of a request streamed through to an owner.
    async fn forward_headers(
        &self,
        cluster: &Cluster,
        parts: &Parts,
        upload: bool,
    ) -> Result<HeaderMap, Response<Body>> {
        let secret = match cluster.secret(SECRET_FRESH).await {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(%error, "pipe: no forward secret");
                return Err(self.cfg.hooks.busy());
            }
        };
        let mut headers = HeaderMap::new();
        let Ok(secret) = HeaderValue::from_str(&secret) else {
            return Err(bad_gateway());
        };
        headers.insert(FORWARD, secret);
        if let Ok(host) = HeaderValue::from_str(host(parts)) {
            headers.insert(HOST, host);
        }
        if parts.extensions.get::<http::uri::Scheme>() == Some(&http::uri::Scheme::HTTPS) {
            headers.insert(SCHEME, HeaderValue::from_static("https"));
        }
        let client = ClientKey::from_extensions(&parts.extensions).to_wire();
        if let Ok(client) = HeaderValue::from_str(&client) {
            headers.insert(CLIENT, client);
        }
        if upload {
            for name in [CONTENT_TYPE, CONTENT_LENGTH] {
                if let Some(value) = parts.headers.get(&name) {
                    headers.insert(name, value.clone());
                }
            }
        }
        Ok(headers)
    }

    async fn relay(
        &self,
        cluster: &Cluster,
        owner: &Owner,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: UploadBody,
    ) -> Response<Body> {
        match forward(owner, method, path, headers, body, cluster.forward_timeout).await {
            Ok(res) => res,
            Err(error) => {
                tracing::debug!(%error, owner = %owner.url, "pipe: owner unreachable");
                bad_gateway()
            }
        }
    }

    /// `GET /{id}` of a socket another instance holds: its answer,
    /// streamed through. `None`: answer here.
    pub(super) async fn tap_elsewhere(&self, parts: &Parts, id: &str) -> Option<Response<Body>> {
        let cluster = self.cluster.as_ref()?;
        if !self.cfg.ids.is_valid(id) || self.registry.contains(id) {
            return None;
        }
        let owner = match self.owner_elsewhere(cluster, id).await {
            Ok(owner) => owner?,
            Err(res) => return Some(res),
        };
        let headers = match self.forward_headers(cluster, parts, false).await {
            Ok(headers) => headers,
            Err(res) => return Some(res),
        };
        let path = format!("/{id}");
        Some(
            self.relay(cluster, &owner, Method::GET, &path, headers, empty())
                .await,
        )
    }

    /// The upload of a reservation another instance holds: the owner's
    /// answer, streamed through, the upload streamed there. `Err` gives
    /// the upload back, to be answered here.
    pub(super) async fn open_elsewhere(
        &self,
        parts: &Parts,
        id: &str,
        secret: &str,
        body: UploadBody,
    ) -> Result<Response<Body>, UploadBody> {
        let Some(cluster) = &self.cluster else {
            return Err(body);
        };
        if self.registry.contains(id) {
            return Err(body);
        }
        let owner = match self.owner_elsewhere(cluster, id).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return Err(body),
            Err(res) => return Ok(res),
        };
        let headers = match self.forward_headers(cluster, parts, true).await {
            Ok(headers) => headers,
            Err(res) => return Ok(res),
        };
        let path = format!("/reserve/{id}/{secret}");
        let method = parts.method.clone();
        Ok(self
            .relay(cluster, &owner, method, &path, headers, body)
            .await)
    }
}

/// Renews the holds of a pipe's live sockets every third of the lease, and
/// releases those of sockets that are gone; stops with the pipe.
async fn renew(inner: Weak<Inner>, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some((cluster, me)) = inner
            .cluster
            .as_ref()
            .and_then(|c| Some((c, c.me.clone()?)))
        else {
            return;
        };
        let ids: Vec<String> = lock(&cluster.held).iter().cloned().collect();
        let (live, mut gone): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| inner.registry.contains(id));
        {
            // A socket may have come back meanwhile (a rearmed reservation).
            let mut held = lock(&cluster.held);
            gone.retain(|id| !inner.registry.contains(id) && held.remove(id));
        }
        if !live.is_empty() {
            if let Err(error) = cluster.backplane.hold(&live, &me, lease).await {
                tracing::warn!(%error, sockets = live.len(), "pipe: renewing holds failed");
            }
        }
        for id in gone {
            if let Err(error) = cluster.backplane.release(&id, &me).await {
                tracing::debug!(%error, %id, "pipe: release failed; the hold expires");
            }
        }
    }
}
