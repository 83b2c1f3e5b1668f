//! `GET /reserve`: a download URL to share, and an upload URL that carries
//! a secret, for browsers that cannot read a streaming POST response.
//!
//! The download id and the upload secret are separate: anyone who has seen
//! the download link can download (once), but only the reserver, who alone
//! got the secret, can upload. The secret is 128 bits from the OS CSPRNG,
//! compared in constant time.

use std::sync::Arc;

use http::header::ACCEPT;
use http::request::Parts;
use http::Response;

use super::headers::referer_ok;
use super::hooks::{ClientLimit, Reservation};
use super::ids::new_secret;
use super::registry::{State, Ticket};
use super::sender::Busy;
use super::service::Inner;
use crate::body::Body;
use crate::limit::ClientKey;

impl Inner {
    /// `GET /reserve`.
    pub(super) async fn reserve(self: &Arc<Self>, parts: &Parts) -> Response<Body> {
        let hooks = &self.cfg.hooks;
        if let Some(required) = &self.cfg.required_referer {
            if !referer_ok(parts, required) {
                return hooks.referer_refused();
            }
        }
        let client = ClientKey::from_extensions(&parts.extensions);
        let Some(permit) = self.reservations_per_client.try_acquire(&client) else {
            tracing::debug!(%client, "pipe: client at its cap of reservations");
            let max = self.reservations_per_client.max();
            return hooks.client_limit(ClientLimit::Reservations { max });
        };
        let secret = match new_secret() {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(%error, "pipe: no upload secret");
                return hooks.busy();
            }
        };
        let upload_path = |id: &str| format!("reserve/{id}/{secret}");
        let ticket = Ticket::new(secret.clone(), Some(permit));
        match self
            .insert_fresh(parts, State::Reserved, Some(ticket), self.deadline())
            .await
        {
            Ok((id, _serial)) => {
                tracing::debug!(%id, "pipe socket reserved");
                hooks.reserved(&Reservation {
                    url: self.url(parts, &id),
                    upload_url: self.url(parts, &upload_path(&id)),
                    json: wants_json(parts),
                    id,
                })
            }
            Err(Busy) => hooks.busy(),
        }
    }
}

/// Does the request's `Accept` name `application/json`?
fn wants_json(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
}
