//! The receiver's side of the Piping mode: `GET` of a path. A receiver
//! that comes first is held, without a head, until its sender and the other
//! receivers are there: its head must carry the sender's headers, so no
//! heartbeat can go out before it (as in Piping Server). A receiver that
//! leaves while it waits frees its place at once.

use std::sync::Arc;

use http::header::HeaderName;
use http::request::Parts;
use http::{Response, StatusCode};
use tokio::sync::oneshot;

use super::super::hooks::ClientLimit;
use super::super::service::Inner;
use super::answers::{cors, refuse, refused};
use super::paths::{WaitingReceiver, WeakPaths};
use super::receivers_wanted;
use crate::body::Body;
use crate::delayed::Shutdown;
use crate::http::text;
use crate::limit::ClientKey;

const SERVICE_WORKER: HeaderName = HeaderName::from_static("service-worker");

impl Inner {
    /// `GET` of a path.
    pub(in crate::pipe) async fn piping_receive(
        self: Arc<Self>,
        parts: Parts,
        path: String,
    ) -> Response<Body> {
        // A pipe must not register a service worker on the server's origin.
        if parts
            .headers
            .get(SERVICE_WORKER)
            .is_some_and(|v| v.as_bytes() == b"script")
        {
            return refuse("[ERROR] Service Worker registration is rejected.\n".to_owned());
        }
        let n = match receivers_wanted(&parts, self.cfg.max_receivers) {
            Ok(n) => n,
            Err(message) => return refuse(message),
        };
        let client = ClientKey::from_extensions(&parts.extensions);
        let Some(permit) = self.waiting_per_client.try_acquire(&client) else {
            tracing::debug!(%client, "pipe: client at its cap of waiting requests");
            let max = self.waiting_per_client.max();
            return cors(self.cfg.hooks.client_limit(ClientLimit::Waiting { max }));
        };
        let serial = self.paths.serial();
        let (reply, answer) = oneshot::channel();
        let waiting = WaitingReceiver {
            serial,
            reply,
            _permit: Some(permit),
        };
        match self
            .paths
            .join_receiver(&path, n, self.cfg.max_waiting, waiting)
        {
            Err((why, waiting)) => {
                drop(waiting);
                tracing::debug!(%path, ?why, "piping receiver refused");
                return refused(&self, &why, &path);
            }
            Ok(Some(established)) => {
                // If the sender's task is gone, the replies are dropped and
                // every receiver hears that the sender went away.
                let _ = established.start.send(established.receivers);
            }
            Ok(None) => tracing::debug!(%path, n, "piping receiver waits"),
        }
        // Dropped when this future ends or is dropped (the client left).
        let _leave = Leave {
            paths: self.paths.downgrade(),
            path: path.clone(),
            serial,
        };
        let shutdown = parts.extensions.get::<Shutdown>().cloned();
        let shutting_down = async move {
            match shutdown {
                Some(s) => s.triggered().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            answer = answer => match answer {
                Ok(res) => res,
                Err(_) => cors(text(
                    StatusCode::BAD_GATEWAY,
                    "[ERROR] The sender went away before the transfer began.\n",
                )),
            },
            () = shutting_down => cors(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "[ERROR] The server is shutting down.\n",
            )),
            () = tokio::time::sleep_until(self.deadline()) => cors(text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "[ERROR] Nothing was sent to '{path}' within {} s.\n",
                    self.cfg.ttl.as_secs()
                ),
            )),
        }
    }
}

/// Takes a waiting receiver off its path when its request ends, however
/// it ends (a no-op once its transfer has started).
struct Leave {
    paths: WeakPaths,
    path: String,
    serial: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.paths.receiver_left(&self.path, self.serial);
    }
}
