//! The response body every module of this crate returns.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::error::{BoxError, Error};

type BoxBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = Error> + Send + 'static>>;

/// A response body: its data frames are [`Bytes`], its error is [`Error`].
///
/// It implements [`http_body::Body`], so hyper, axum and anything tower-based
/// take it as it is. An error returned from a body ends the response
/// *abnormally*: HTTP/1.1 closes the connection without the final chunk (curl
/// reports exit code 18), HTTP/2 resets the stream. This is how a response that
/// already sent `202 Accepted` tells its client that the work failed.
///
/// # Examples
///
/// ```
/// use delayed_response::Body;
///
/// let body = Body::from("hello");
/// let empty = Body::empty();
/// let streamed = Body::from_stream(futures_util::stream::iter([
///     Ok::<_, std::io::Error>("a"),
///     Ok("b"),
/// ]));
/// # let _ = (body, empty, streamed);
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Boxed(BoxBody),
}

impl Body {
    /// A body with no data.
    pub const fn empty() -> Self {
        Body { kind: Kind::Empty }
    }

    /// Wraps any [`http_body::Body`] whose data converts into [`Bytes`].
    ///
    /// Its errors become [`Error`]s for which [`Error::is_body`] is true
    /// (an `Error` passed through keeps its own kind).
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        // A `Body` handed to `Body::new` must not be boxed twice.
        let mut slot = Some(body);
        if let Some(slot) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
            if let Some(body) = slot.take() {
                return body;
            }
        }
        let Some(body) = slot else {
            return Body::empty();
        };
        Body {
            kind: Kind::Boxed(Box::pin(
                body.map_frame(|f| f.map_data(Into::into))
                    .map_err(|e| Error::body(e.into())),
            )),
        }
    }

    /// A body that streams the items of `stream`, each as one data frame.
    ///
    /// An `Err` item ends the body abnormally (see the type's docs).
    pub fn from_stream<S, T, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        let frames = stream
            .map_ok(|chunk| Frame::data(chunk.into()))
            .map_err(|e| Error::body(e.into()));
        Body {
            kind: Kind::Boxed(Box::pin(http_body_util::StreamBody::new(frames))),
        }
    }

    pub(crate) fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
    {
        Body::pinned(Box::pin(body))
    }

    /// A body already in a box of its own (a held response's state, which
    /// is pinned from its start and becomes its body without moving).
    pub(crate) fn pinned<B>(body: Pin<Box<B>>) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
    {
        Body {
            kind: Kind::Boxed(body),
        }
    }

    /// Collects the whole body into one buffer (a convenience for tests and
    /// small bodies; it does not limit the size).
    ///
    /// # Errors
    ///
    /// The first error the body yields.
    pub async fn collect_bytes(self) -> Result<Bytes, Error> {
        Ok(BodyExt::collect(self).await?.to_bytes())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Boxed(_) => "streaming",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Boxed(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        if data.is_empty() {
            return Body::empty();
        }
        Body {
            kind: Kind::Full(Some(data)),
        }
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn full_body_has_exact_size_and_yields_once() {
        let body = Body::from("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert_eq!(body.collect_bytes().await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn body_new_does_not_rebox_a_body() {
        let body = Body::new(Body::from("x"));
        assert!(matches!(body.kind, Kind::Full(_)));
    }

    #[tokio::test]
    async fn stream_error_is_a_body_error() {
        let body = Body::from_stream(futures_util::stream::iter([
            Ok::<_, std::io::Error>("a"),
            Err(std::io::Error::other("cut")),
        ]));
        let err = body.collect_bytes().await.unwrap_err();
        assert!(err.is_body());
    }
}
