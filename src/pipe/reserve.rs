//! `GET /reserve`: a fresh id that a later upload opens, for browsers that
//! cannot read a streaming POST response.

use http::request::Parts;
use http::Response;

use super::headers::referer_ok;
use super::registry::State;
use super::sender::Busy;
use super::service::Inner;
use crate::body::Body;

impl Inner {
    /// `GET /reserve`.
    pub(super) fn reserve(&self, parts: &Parts) -> Response<Body> {
        let hooks = &self.cfg.hooks;
        if let Some(required) = &self.cfg.required_referer {
            if !referer_ok(parts, required) {
                return hooks.referer_refused();
            }
        }
        match self.insert_fresh(parts, State::Reserved, self.deadline()) {
            Ok((id, _serial)) => {
                tracing::debug!(%id, "pipe socket reserved");
                hooks.reserved(&id, &self.url(parts, &id))
            }
            Err(Busy) => hooks.busy(),
        }
    }
}
