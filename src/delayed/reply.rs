//! What the work produces, and how it is rendered.

use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};

use super::config::Config;
use crate::body::Body;
use crate::error::{BoxError, Error};

/// The result of the work, ready to be rendered into a response.
///
/// Work futures return anything that implements [`IntoReply`]; `Reply` is
/// what they all turn into. The rendering rules:
///
/// | the work returns | the response gets |
/// |---|---|
/// | `()`, `None` | an empty body |
/// | `Bytes`, `String`, `&'static str`, `Vec<u8>` | those bytes, as they are |
/// | [`Reply::stream`], a [`Body`] | the stream, frame by frame |
/// | [`Json`](crate::Json) (feature `json`) | the value as JSON, `Content-Type: application/json` |
/// | `http::Response<B>` | its status, headers and body |
/// | `Err(e)` | an error: see [`DelayedResponse::on_error`](crate::DelayedResponse::on_error) |
///
/// A status or header set on the reply applies only while the head has not
/// gone out yet (see [`DelayedResponse`](crate::DelayedResponse) on head timing);
/// after that, only the body is written.
#[derive(Debug)]
#[must_use]
pub struct Reply {
    pub(crate) inner: Result<Rendered, Error>,
}

#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) status: Option<StatusCode>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
}

impl Reply {
    /// A reply with this body.
    pub fn new(body: impl Into<Body>) -> Self {
        Reply {
            inner: Ok(Rendered {
                status: None,
                headers: HeaderMap::new(),
                body: body.into(),
            }),
        }
    }

    /// An empty reply.
    pub fn empty() -> Self {
        Reply::new(Body::empty())
    }

    /// A reply that streams `stream` as the body; an `Err` item ends the body
    /// abnormally.
    pub fn stream<S, T, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        Reply::new(Body::from_stream(stream))
    }

    /// A failed result.
    pub fn error(error: impl Into<BoxError>) -> Self {
        Reply {
            inner: Err(Error::work(error.into())),
        }
    }

    /// A JSON reply: `value` serialized, with `Content-Type: application/json`.
    ///
    /// A value that fails to serialize becomes an error reply.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => Reply::new(v).header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            Err(e) => Reply::error(e),
        }
    }

    /// Sets the status used when the reply is rendered before the head went
    /// out (default: the builder's [`status`](crate::DelayedResponse::status)).
    pub fn status(mut self, status: StatusCode) -> Self {
        if let Ok(r) = &mut self.inner {
            r.status = Some(status);
        }
        self
    }

    /// Sets a header, replacing any value the builder set for the same name.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if let Ok(r) = &mut self.inner {
            r.headers.insert(name, value);
        }
        self
    }

    /// Is this a failed result?
    pub fn is_error(&self) -> bool {
        self.inner.is_err()
    }

    pub(crate) fn from_error(error: Error) -> Self {
        Reply { inner: Err(error) }
    }
}

/// Conversion into a [`Reply`]: what a work future may return.
///
/// See [`Reply`] for the rendering rules.
pub trait IntoReply {
    /// Converts `self` into a reply.
    fn into_reply(self) -> Reply;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::empty()
    }
}

impl IntoReply for Body {
    fn into_reply(self) -> Reply {
        Reply::new(self)
    }
}

macro_rules! into_reply_via_body {
    ($($t:ty),*) => {$(
        impl IntoReply for $t {
            fn into_reply(self) -> Reply {
                Reply::new(Body::from(self))
            }
        }
    )*};
}

into_reply_via_body!(Bytes, String, &'static str, Vec<u8>, &'static [u8]);

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        match self {
            Some(v) => v.into_reply(),
            None => Reply::empty(),
        }
    }
}

impl<T: IntoReply, E: Into<BoxError>> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(v) => v.into_reply(),
            Err(e) => Reply::error(e),
        }
    }
}

impl<B> IntoReply for Response<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    fn into_reply(self) -> Reply {
        let (parts, body) = self.into_parts();
        Reply {
            inner: Ok(Rendered {
                status: Some(parts.status),
                headers: parts.headers,
                body: Body::new(body),
            }),
        }
    }
}

/// A value rendered as JSON (feature `json`).
///
/// # Examples
///
/// ```
/// use delayed_response::{DelayedResponse, Json};
///
/// # async fn handler() -> http::Response<delayed_response::Body> {
/// DelayedResponse::new()
///     .wait(async { Json(serde_json::json!({ "ok": true })) })
///     .await
/// # }
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Reply {
        Reply::json(&self.0)
    }
}

/// Renders a result that comes before the head went out: a reply with the
/// builder's status and headers under its own, an error through the error
/// hook. The one rendering of a whole result, whether it came in time or
/// late (an [`OnDeadline`](super::OnDeadline) hook's
/// [`LateWork`](super::LateWork)).
pub(crate) fn render(cfg: &Config, reply: Reply) -> Response<Body> {
    match reply.inner {
        Ok(rendered) => respond(cfg.status, &cfg.headers, rendered),
        Err(error) => match &cfg.hooks.on_error {
            Some(hook) => hook(&error),
            None => default_error_response(),
        },
    }
}

/// `500`, showing nothing of the error.
pub(crate) fn default_error_response() -> Response<Body> {
    let mut res = Response::new(Body::from("internal server error\n"));
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}

/// The answer at the deadline of a `wait`, or of a held response whose head
/// is not out yet.
pub(crate) fn timeout_response(cfg: &Config) -> Response<Body> {
    match &cfg.hooks.on_timeout {
        Some(hook) => hook(),
        None => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::ACCEPTED;
            merge_headers(res.headers_mut(), &cfg.headers, http::HeaderMap::new());
            res
        }
    }
}

/// `503` when the server shuts down before the head went out.
pub(crate) fn shutdown_response() -> Response<Body> {
    let mut res = Response::new(Body::from("server shutting down\n"));
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// Builds a response from the builder's settings and a rendered reply.
pub(crate) fn respond(
    status: StatusCode,
    base_headers: &HeaderMap,
    rendered: Rendered,
) -> Response<Body> {
    let Rendered {
        status: own,
        headers,
        body,
    } = rendered;
    let mut res = Response::new(body);
    *res.status_mut() = own.unwrap_or(status);
    merge_headers(res.headers_mut(), base_headers, headers);
    res
}

/// The builder's headers, then the reply's, a reply's value replacing the
/// builder's for the same name.
pub(crate) fn merge_headers(dst: &mut HeaderMap, base: &HeaderMap, own: HeaderMap) {
    if !base.is_empty() {
        dst.clone_from(base);
    }
    if own.is_empty() {
        return;
    }
    let mut last: Option<HeaderName> = None;
    for (name, value) in own {
        match name {
            Some(name) => {
                dst.insert(name.clone(), value);
                last = Some(name);
            }
            None => {
                if let Some(name) = &last {
                    dst.append(name.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    #[test]
    fn reply_headers_override_builder_headers() {
        let mut base = HeaderMap::new();
        base.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        base.insert("x-a", HeaderValue::from_static("1"));
        let rendered = Reply::new("x")
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .inner
            .unwrap();
        let res = respond(StatusCode::OK, &base, rendered);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(res.headers()["x-a"], "1");
    }

    #[test]
    fn err_becomes_error_reply() {
        let r: Result<&'static str, std::io::Error> = Err(std::io::Error::other("x"));
        assert!(r.into_reply().is_error());
    }
}
