//! Who a client is, and what it may do: [`Identity`] and [`Authorizer`].

use std::fmt;
use std::net::IpAddr;

use http::request::Parts;
use serde_json::Value;

use super::channel::{self, Kind};
use crate::limit::ClientKey;

/// Who a request comes from: a user id or nobody (anonymous), what the
/// authorizer attached to them (`info`, shown in presence), the channel
/// patterns they were granted, and their address.
///
/// Grants are glob patterns (`*` matches any run of characters):
/// `subscribe` patterns open `private:` channels (and others' `user:`
/// channels) to the holder, `publish` patterns let them publish where the
/// namespace asks for authorization ([`Publishers::Authorized`](super::Publishers)).
///
/// # Examples
///
/// ```
/// use delayed_response::hub::Identity;
///
/// let ann = Identity::user("ann")
///     .info(serde_json::json!({"name": "Ann"}))
///     .subscribe(["private:team-*"])
///     .publish(["chat.*"]);
/// assert_eq!(ann.user_id(), Some("ann"));
/// assert!(Identity::anonymous().user_id().is_none());
/// ```
#[derive(Clone, Default, PartialEq)]
#[must_use]
pub struct Identity {
    pub(crate) user: Option<String>,
    pub(crate) info: Option<Value>,
    pub(crate) addr: Option<IpAddr>,
    /// The request's [`ClientKey`] (its extension, else the peer address),
    /// set by the service.
    pub(crate) client: Option<ClientKey>,
    pub(crate) subscribe: Vec<String>,
    pub(crate) publish: Vec<String>,
}

impl Identity {
    /// Nobody in particular.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// User `id`.
    pub fn user(id: impl Into<String>) -> Self {
        Identity {
            user: Some(id.into()),
            ..Identity::default()
        }
    }

    /// Attaches JSON about the user (shown by presence).
    pub fn info(mut self, info: Value) -> Self {
        self.info = Some(info);
        self
    }

    /// Adds channel patterns the holder may subscribe to.
    pub fn subscribe<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscribe.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Adds channel patterns the holder may publish to.
    pub fn publish<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.publish.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// The user id; `None` when anonymous.
    pub fn user_id(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Is nobody identified?
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// What the authorizer attached.
    pub fn info_value(&self) -> Option<&Value> {
        self.info.as_ref()
    }

    /// The client's IP address, when the server told it.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// Whom the limits count against: the user, else the request's
    /// [`ClientKey`] (an application's key, else the IP address; else one
    /// key shared by all).
    pub(crate) fn client_key(&self) -> ClientKey {
        match &self.user {
            Some(user) => ClientKey::new(format!("user:{user}")),
            None => self.client.clone().unwrap_or_else(ClientKey::unknown),
        }
    }

    /// Does a `subscribe` grant match `channel`?
    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.subscribe.iter().any(|p| channel::matches(p, channel))
    }

    /// Does a `publish` grant match `channel`?
    pub fn may_publish(&self, channel: &str) -> bool {
        self.publish.iter().any(|p| channel::matches(p, channel))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("addr", &self.addr)
            .field("subscribe", &self.subscribe)
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

/// A request that carried credentials the authorizer does not accept:
/// answered `401` with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized(pub(crate) String);

impl Unauthorized {
    /// A refusal with a short reason (sent to the client).
    pub fn new(reason: impl Into<String>) -> Self {
        Unauthorized(reason.into())
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unauthorized {}

/// Turns a request into an [`Identity`] and rules on each subscribe and
/// publish.
///
/// The hub asks [`identify`](Self::identify) once per request; then
/// [`can_subscribe`](Self::can_subscribe) for every channel of a subscribe
/// and [`can_publish`](Self::can_publish) for a publish in a namespace with
/// [`Publishers::Authorized`](super::Publishers). Namespaces decide the rest
/// (anonymous subscribers, open publishing). A refusal is `401` for an
/// anonymous client (credentials may help) and `403` for an identified one.
///
/// The default rules use the identity's grants: a public channel is open;
/// `user:{id}` is open to user `id`; everything else needs a matching
/// `subscribe` or `publish` pattern.
pub trait Authorizer: Send + Sync + 'static {
    /// Who sent this request.
    ///
    /// # Errors
    ///
    /// [`Unauthorized`] when it carries credentials that are not valid
    /// (answered `401`); no credentials at all is an anonymous identity.
    fn identify(&self, parts: &Parts) -> Result<Identity, Unauthorized>;

    /// May `identity` subscribe to `channel`?
    fn can_subscribe(&self, identity: &Identity, channel: &str) -> bool {
        match channel::kind(channel) {
            Kind::Public => true,
            Kind::User(user) => identity.user_id() == Some(user) || identity.may_subscribe(channel),
            Kind::Private => identity.may_subscribe(channel),
        }
    }

    /// May `identity` publish to `channel` (where the namespace asks)?
    fn can_publish(&self, identity: &Identity, channel: &str) -> bool {
        identity.may_publish(channel)
    }
}

/// The authorizer of a hub built without one: every client is anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl Authorizer for Anonymous {
    fn identify(&self, _parts: &Parts) -> Result<Identity, Unauthorized> {
        Ok(Identity::anonymous())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_open_public_and_own_user_channels_only() {
        let a = Anonymous;
        let ann = Identity::user("ann").subscribe(["private:ann-*"]);
        assert!(a.can_subscribe(&Identity::anonymous(), "chat"));
        assert!(a.can_subscribe(&ann, "user:ann"));
        assert!(!a.can_subscribe(&ann, "user:bob"));
        assert!(!a.can_subscribe(&Identity::anonymous(), "user:ann"));
        assert!(a.can_subscribe(&ann, "private:ann-1"));
        assert!(!a.can_subscribe(&ann, "private:bob-1"));
        assert!(!a.can_publish(&ann, "chat"));
        assert!(a.can_publish(&Identity::user("x").publish(["*"]), "chat"));
    }
}
