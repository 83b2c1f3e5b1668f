//! The sender's side: `POST /`, `PUT /{name}`, `POST /reserve/{id}` open a
//! socket, whose held response carries the download URL at once, then
//! heartbeats until a receiver takes it, the TTL passes, or the sender
//! leaves.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::body::{Peeked, UploadBody};
use super::headers::{declared_length, expects_continue, is_multipart};
use super::hooks::Socket;
use super::registry::{Refused, State, WeakRegistry};
use super::service::Inner;
use super::transfer::Upload;
use crate::body::Body;
use crate::delayed::{AbortReason, DelayedResponse};
use crate::http::{unbuffered, TEXT_PLAIN};

/// How many fresh ids are tried before giving up (only a custom id scheme
/// can collide).
const ID_ATTEMPTS: usize = 8;

/// Why no socket was made: the answer is `busy`.
pub(super) struct Busy;

/// A socket's key in the registry, known once it is inserted.
type Key = Arc<OnceLock<(String, u64)>>;

impl Inner {
    /// Inserts `state` under a fresh id, trying again on a collision.
    /// A waiting upload learns its id and URL on each attempt.
    pub(super) fn insert_fresh(
        &self,
        parts: &Parts,
        mut state: State,
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
            if let State::Waiting(upload) = &mut state {
                upload.socket.url = self.url(parts, &id);
                upload.socket.id.clone_from(&id);
            }
            match self
                .registry
                .insert(&id, state, deadline, self.cfg.max_waiting)
            {
                Ok(serial) => return Ok((id, serial)),
                Err(Refused::Taken(back)) => state = back,
                Err(Refused::Full(state)) => {
                    // Dropped here, outside the registry's lock.
                    drop(state);
                    return Err(Busy);
                }
            }
        }
        Err(Busy)
    }

    /// Opens a socket (a fresh one, or the reservation `reserved`).
    pub(super) async fn open(
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
        let key = Key::default();
        let builder = DelayedResponse::for_parts(&parts)
            .pending_status(StatusCode::OK)
            .heartbeat(self.cfg.heartbeat.clone())
            .on_abort(sender_left(self.registry.downgrade(), key.clone()));
        let body = if expects_continue(&parts) {
            Peeked::nudge(body).await
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
        });

        let (id, serial) = match reserved {
            Some(id) => {
                upload.socket.url = self.url(&parts, &id);
                upload.socket.id.clone_from(&id);
                // Written before the socket can be taken, so the URL line is
                // always first.
                let _ = completion.write(hooks.opened(&upload.socket));
                match self.registry.open_reserved(&id, upload) {
                    Ok(serial) => (id, serial),
                    Err(_) => return hooks.not_found(),
                }
            }
            None => {
                let mut socket = upload.socket.clone();
                match self.insert_fresh(&parts, State::Waiting(upload), self.deadline()) {
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
        // No await since `handle()`: the response cannot have been dropped
        // (which is what fires the abort hook) before the key is set.
        let _ = key.set((id, serial));
        let mut res = response.await;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, TEXT_PLAIN);
        unbuffered(headers);
        // The body carries the download URL: no cache may keep it.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// The abort hook of a waiting sender's response: the heartbeat write failed
/// (the sender left) or the server is shutting down. Frees the id; dropping
/// the upload closes the sender's connection. After a receiver took the
/// socket, there is nothing left to free.
fn sender_left(registry: WeakRegistry, key: Key) -> impl Fn(AbortReason) + Send + Sync {
    move |reason| {
        let Some((id, serial)) = key.get() else {
            return;
        };
        let state = registry.remove(id, *serial);
        tracing::debug!(%id, ?reason, freed = state.is_some(), "pipe sender left");
        drop(state);
    }
}
