//! An upload body as the pipe keeps it: hyper's own body as it is, with no
//! adapter on the path of each frame, and room for one frame read ahead and
//! put back.
//!
//! Every frame of a transfer passes through here once (a curl upload makes
//! about 20,000 frames per GiB), so the path is kept short: no box and no
//! dynamic call for hyper's body, and the frame is not re-wrapped.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::BoxError;

/// An upload whose data type and error are the pipe's.
pub(crate) struct UploadBody {
    /// A frame read ahead and put back (the upload's first data, or what a
    /// peek read; `Some(None)`: the upload had ended).
    first: Option<Option<Result<Frame<Bytes>, BoxError>>>,
    inner: Inner,
}

enum Inner {
    /// hyper's request body, polled directly.
    Hyper(Incoming),
    /// Any other body (a `tower` stack's, a test's, a salvaged upload).
    Boxed(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + 'static>>),
}

impl UploadBody {
    /// The upload of a request with body `body`.
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        if let Some(hyper) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Incoming>>() {
            if let Some(hyper) = hyper.take() {
                return UploadBody {
                    first: None,
                    inner: Inner::Hyper(hyper),
                };
            }
        }
        match slot {
            Some(body) => UploadBody::boxed(
                body.map_frame(|f| f.map_data(Into::into))
                    .map_err(Into::into),
            ),
            // Taken above only when it was hyper's.
            None => UploadBody::boxed(http_body_util::Empty::new().map_err(|e| match e {})),
        }
    }

    /// `body`, boxed.
    pub(crate) fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        UploadBody {
            first: None,
            inner: Inner::Boxed(Box::pin(body)),
        }
    }

    /// Puts `frame` back in front: the next poll gives it.
    pub(crate) fn put_back(self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Self {
        if self.first.is_none() {
            return UploadBody {
                first: Some(frame),
                ..self
            };
        }
        // Its slot is taken (not done by the pipe): one more layer.
        UploadBody {
            first: Some(frame),
            inner: Inner::Boxed(Box::pin(self)),
        }
    }

    /// `poll_frame` without pinning at the call site.
    #[inline]
    pub(crate) fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(self).poll_frame(cx)
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(first);
        }
        match &mut this.inner {
            Inner::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Boxed(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.first {
            Some(first) => first.is_none(),
            None => match &self.inner {
                Inner::Hyper(body) => body.is_end_stream(),
                Inner::Boxed(body) => body.is_end_stream(),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.first, &self.inner) {
            (None, Inner::Hyper(body)) => body.size_hint(),
            (None, Inner::Boxed(body)) => body.size_hint(),
            (Some(_), _) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_put_back_comes_first_then_the_rest() {
        let rest = http_body_util::Full::new(Bytes::from_static(b"rest"));
        let mut body = UploadBody::new(rest).put_back(Some(Ok(Frame::data("first".into()))));
        assert!(!body.is_end_stream());
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, ["first", "rest"]);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_second_frame_put_back_comes_before_the_first() {
        let mut body = UploadBody::new(http_body_util::Empty::<Bytes>::new())
            .put_back(Some(Ok(Frame::data("b".into()))))
            .put_back(Some(Ok(Frame::data("a".into()))));
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, ["a", "b"]);
    }

    #[tokio::test]
    async fn an_end_put_back_is_the_end() {
        let body = UploadBody::new(http_body_util::Empty::<Bytes>::new()).put_back(None);
        assert!(body.is_end_stream());
    }
}
