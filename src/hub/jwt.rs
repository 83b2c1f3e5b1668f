//! [`JwtAuthorizer`]: HS256 tokens in a bearer header or a cookie.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{Authorizer, Identity, Unauthorized};
use crate::error::{Error, Kind};

/// The cookie [`JwtAuthorizer`] reads by default: `hub_token`.
pub const DEFAULT_COOKIE: &str = "hub_token";

/// An [`Authorizer`] for HS256 JSON Web Tokens, sent as
/// `Authorization: Bearer <token>` or in a cookie (`hub_token` by default).
///
/// The claims: `sub` is the user id, `exp` is required, and a `hub` object
/// holds the grants and the presence info, as Mercure's `mercure` claim
/// does:
///
/// ```json
/// {"sub": "ann", "exp": 1767225600,
///  "hub": {"subscribe": ["private:team-*"], "publish": ["chat.*"], "info": {"name": "Ann"}}}
/// ```
///
/// A request without a token is anonymous; one with a token that does not
/// verify (bad signature, expired, wrong algorithm) gets `401`. The
/// signature check is `jsonwebtoken`'s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use delayed_response::hub::{Hub, Identity, JwtAuthorizer};
///
/// let auth = JwtAuthorizer::hs256(b"a secret of at least 32 bytes....");
/// let token = auth
///     .sign(&Identity::user("ann").publish(["chat.*"]), Duration::from_secs(3600))
///     .unwrap();
/// let hub = Hub::builder().authorizer(auth).build();
/// # let _ = (hub, token);
/// ```
#[derive(Clone)]
pub struct JwtAuthorizer {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    cookie: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    hub: Grants,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Grants {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subscribe: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    publish: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<Value>,
}

impl JwtAuthorizer {
    /// Verifies (and [signs](Self::sign)) with the HMAC-SHA256 key
    /// `secret`.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        JwtAuthorizer {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            cookie: DEFAULT_COOKIE.to_string(),
        }
    }

    /// Reads the token from this cookie when there is no bearer header.
    #[must_use]
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = name.into();
        self
    }

    /// A token for `identity` (its user, grants and info), valid for `ttl`.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid`] if the claims cannot be encoded.
    pub fn sign(&self, identity: &Identity, ttl: Duration) -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            sub: identity.user.clone(),
            exp: (now + ttl).as_secs(),
            hub: Grants {
                subscribe: identity.subscribe.clone(),
                publish: identity.publish.clone(),
                info: identity.info.clone(),
            },
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::with(Kind::Invalid, e))
    }

    fn token<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        if let Some(auth) = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let (scheme, token) = auth.trim().split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
        }
        parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == self.cookie).then_some(value)
            })
    }
}

impl fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthorizer")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl Authorizer for JwtAuthorizer {
    fn identify(&self, parts: &Parts) -> Result<Identity, Unauthorized> {
        let Some(token) = self.token(parts) else {
            return Ok(Identity::anonymous());
        };
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Unauthorized::new("invalid or expired token"))?;
        let claims = data.claims;
        Ok(Identity {
            user: claims.sub,
            info: claims.hub.info,
            addr: None,
            client: None,
            subscribe: claims.hub.subscribe,
            publish: claims.hub.publish,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(header: (&str, &str)) -> Parts {
        let (parts, ()) = http::Request::builder()
            .header(header.0, header.1)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn a_signed_token_round_trips_by_bearer_and_cookie() {
        let auth = JwtAuthorizer::hs256("k".repeat(32));
        let ann = Identity::user("ann")
            .publish(["chat.*"])
            .subscribe(["private:x"])
            .info(serde_json::json!({"n": 1}));
        let token = auth.sign(&ann, Duration::from_secs(60)).unwrap();
        let by_bearer = auth
            .identify(&parts(("authorization", &format!("Bearer {token}"))))
            .unwrap();
        assert_eq!(by_bearer, ann);
        let by_cookie = auth
            .identify(&parts(("cookie", &format!("a=b; hub_token={token}"))))
            .unwrap();
        assert_eq!(by_cookie, ann);
    }

    #[test]
    fn bad_signatures_and_garbage_are_unauthorized_and_no_token_is_anonymous() {
        let auth = JwtAuthorizer::hs256("k".repeat(32));
        let other = JwtAuthorizer::hs256("x".repeat(32));
        let token = other
            .sign(&Identity::user("ann"), Duration::from_secs(60))
            .unwrap();
        let bearer = |t: &str| parts(("authorization", &format!("Bearer {t}")));
        assert!(auth.identify(&bearer(&token)).is_err());
        assert!(auth.identify(&bearer("garbage")).is_err());
        assert!(auth.identify(&parts(("x", "y"))).unwrap().is_anonymous());
    }
}
