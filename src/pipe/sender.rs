//! The sender's side: `POST /`, `PUT /{name}`, `POST /reserve/{id}` open a
//! socket, whose held response carries the download URL at once, then
//! heartbeats until a receiver takes it, the TTL passes, or the sender
//! leaves.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::Response;
use tokio::time::Instant;

use super::body::{nudge, salvage, UploadBody};
use super::headers::{declared_length, expects_continue, is_multipart};
use super::hooks::{ClientLimit, Socket};
use super::registry::{Left, Refused, State, Ticket, WeakRegistry};
use super::service::Inner;
use super::transfer::Upload;
use crate::body::Body;
use crate::delayed::{AbortReason, DelayedResponse};
use crate::http::{TEXT_PLAIN, X_ACCEL_BUFFERING};
use crate::limit::ClientKey;

/// How many fresh ids are tried before giving up (only a custom id scheme
/// can collide).
const ID_ATTEMPTS: usize = 8;

/// Why no socket was made: the answer is `busy`.
pub(super) struct Busy;

/// A socket's key in the registry, known once it is inserted.
type Key = Arc<OnceLock<(String, u64)>>;

impl Inner {
    /// Inserts `state` (with a reservation's `ticket`) under a fresh id,
    /// trying again on a collision. A waiting upload learns its id and URL
    /// on each attempt.
    pub(super) async fn insert_fresh(
        self: &Arc<Self>,
        parts: &Parts,
        mut state: State,
        mut ticket: Option<Ticket>,
        deadline: Instant,
    ) -> Result<(String, u64), Busy> {
        for _ in 0..ID_ATTEMPTS {
            let id = match self.cfg.ids.generate() {
                Ok(id) => id,
                Err(error) => {
                    tracing::warn!(%error, "pipe: no id");
                    return Err(Busy);
                }
            };
            // With a backplane, the id is held for this instance first:
            // nothing is in the registry while that is awaited.
            #[cfg(feature = "redis")]
            match self.hold(&id).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(%error, "pipe: cannot hold an id in the backplane");
                    return Err(Busy);
                }
            }
            if let State::Waiting(upload) = &mut state {
                upload.socket.url = self.url(parts, &id);
                upload.socket.id.clone_from(&id);
            }
            let max = self.cfg.max_waiting;
            match self
                .registry
                .insert(&id, state, ticket.take(), deadline, max)
            {
                Ok(serial) => {
                    #[cfg(feature = "redis")]
                    self.held(&id);
                    return Ok((id, serial));
                }
                Err(Refused::Taken(back, t)) => (state, ticket) = (back, t),
                Err(Refused::Full(state, ticket)) => {
                    // Dropped here, outside the registry's lock.
                    drop((state, ticket));
                    #[cfg(feature = "redis")]
                    {
                        self.held(&id);
                        self.forget(&id);
                    }
                    return Err(Busy);
                }
            }
        }
        Err(Busy)
    }

    /// Opens a socket: a fresh one, or the reservation `reserved` (its id
    /// and the upload secret the request gave).
    pub(super) async fn open(
        self: Arc<Self>,
        parts: Parts,
        body: UploadBody,
        reserved: Option<(String, String)>,
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
        let client = ClientKey::from_extensions(&parts.extensions);
        let Some(permit) = self.waiting_per_client.try_acquire(&client) else {
            tracing::debug!(%client, "pipe: client at its cap of waiting uploads");
            let max = self.waiting_per_client.max();
            return hooks.client_limit(ClientLimit::Waiting { max });
        };

        // The head's headers are added to the response below rather than to
        // the builder: a builder's headers live as long as the response,
        // and a waiting sender should cost as little as possible.
        let key = Key::default();
        let builder = self
            .sender_stream
            .clone()
            .with_request_of(&DelayedResponse::for_parts(&parts))
            .on_abort(sender_left(self.registry.downgrade(), key.clone()));
        let body = if expects_continue(&parts) {
            nudge(body).await
        } else {
            body
        };
        let (response, completion) = builder.handle();
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
            permit: Some(permit),
        });

        let (id, serial) = match reserved {
            Some((id, secret)) => {
                // No reservation waits for an upload under this id and
                // secret; which of the two is wrong is not said.
                if !self.registry.can_open(&id, &secret) {
                    return hooks.not_found();
                }
                upload.socket.url = self.url(&parts, &id);
                upload.socket.id.clone_from(&id);
                // Written before the socket can be taken, so the URL line is
                // always first.
                let _ = completion.write(hooks.opened(&upload.socket));
                match self.registry.open_reserved(&id, &secret, upload) {
                    Ok(serial) => (id, serial),
                    // Another upload opened it just now.
                    Err(_) => return hooks.not_found(),
                }
            }
            None => {
                let mut socket = upload.socket.clone();
                let fresh = self
                    .insert_fresh(&parts, State::Waiting(upload), None, self.deadline())
                    .await;
                match fresh {
                    Ok((id, serial)) => {
                        // A fresh id is known to nobody until this line is
                        // out, so nothing can take the socket before it is
                        // written.
                        socket.url = self.url(&parts, &id);
                        socket.id.clone_from(&id);
                        let _ = completion.write(hooks.opened(&socket));
                        (id, serial)
                    }
                    Err(Busy) => return hooks.busy(),
                }
            }
        };
        tracing::debug!(%id, "pipe socket opened");
        // No await since the socket went into the registry: the response
        // cannot have been dropped (which is what fires the abort hook)
        // between the insert and the key's setting. (A drop while
        // `insert_fresh` awaits the backplane leaves nothing inserted.)
        let _ = key.set((id, serial));
        let mut res = response.await;
        let headers = res.headers_mut();
        // hyper keeps a response's header map for the connection's next
        // response: room for exactly these three headers costs half of what
        // the map's default growth takes (≈310 bytes per waiting sender).
        // Each insert checks for room first, even one that replaces a
        // value, so no header is inserted twice.
        headers.reserve(3);
        headers.insert(CONTENT_TYPE, TEXT_PLAIN);
        // The body carries the download URL: no cache may keep it.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
        res
    }
}

/// The abort hook of a sender's response, which fires when the sender left
/// (a heartbeat write failed, or hyper saw the connection close) or the
/// server is shutting down. A waiting upload that had arrived whole is kept
/// for its receiver (a sender that half-closes after its body, as `nc -N`
/// does, is gone for hyper); any other is dropped, which closes its
/// connection, and its id is freed, or its reservation rearmed for another
/// try. On shutdown everything goes. After a receiver took the socket there
/// is nothing left to do here.
fn sender_left(registry: WeakRegistry, key: Key) -> impl Fn(AbortReason) + Send + Sync {
    move |reason| {
        let Some((id, serial)) = key.get() else {
            return;
        };
        let shutdown = reason == AbortReason::Shutdown;
        let mut spent = None;
        let left = registry.sender_left(id, *serial, shutdown, |upload| {
            match salvage(&mut upload.body, upload.socket.content_length) {
                Some(whole) => {
                    spent = Some(std::mem::replace(&mut upload.body, whole));
                    true
                }
                None => false,
            }
        });
        drop(spent);
        // What the registry gives back is dropped here, outside its lock;
        // dropping the upload closes the sender's connection.
        match left {
            Left::Gone => {}
            Left::Kept => tracing::debug!(%id, "pipe sender left; its whole upload is kept"),
            Left::Rearmed(upload) => {
                tracing::debug!(%id, ?reason, "pipe sender left; reservation rearmed");
                drop(upload);
            }
            Left::Freed(upload) => {
                tracing::debug!(%id, ?reason, "pipe sender left; id freed");
                drop(upload);
            }
        }
    }
}
