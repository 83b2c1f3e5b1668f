//! The receiver's response body, which pulls the upload through, and the
//! upload-side adapters it reads through.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body as _, Frame, SizeHint};

use super::hooks::Cut;
use super::transfer::Transfer;
use crate::error::{BoxError, Error, Kind};

pub(crate) use super::upload::UploadBody;

/// Where the receiver's bytes come from.
pub(crate) enum Source {
    /// A raw upload: its frames pass straight through, without copies.
    Raw(UploadBody),
    /// The first file part of a multipart upload.
    Part {
        field: Box<multer::Field<'static>>,
        // Kept so the parser state outlives the field, whatever multer does.
        _multipart: multer::Multipart<'static>,
    },
}

/// The receiver's response body. hyper polls it only when the receiver's
/// connection can take more, and only then is the upload read, so a slow
/// receiver slows the sender through TCP backpressure; what is in flight is
/// bounded by hyper's own buffers on both connections.
pub(crate) struct TransferBody {
    source: Source,
    transfer: Transfer,
}

impl TransferBody {
    pub(crate) fn new(source: Source, transfer: Transfer) -> Self {
        TransferBody { source, transfer }
    }
}

/// Why a [`Source`] stopped early.
pub(crate) enum SourceError {
    /// The multipart parser passed the upload limit.
    TooLarge,
    /// The upload failed: the sender went away, or sent a malformed body.
    Failed(Error),
}

impl Source {
    /// The next data of the upload, and whether it is the last: with a
    /// `Content-Length`, hyper stops polling a response body once it has
    /// written that many bytes, so the last frame must say so itself.
    /// Empty frames and upload trailers are skipped.
    #[inline]
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Bytes, bool), SourceError>>> {
        loop {
            return Poll::Ready(match self {
                Source::Raw(body) => match ready!(body.poll_next_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            let last = body.is_end_stream();
                            if data.is_empty() && !last {
                                continue;
                            }
                            Some(Ok((data, last)))
                        }
                        // Upload trailers are not forwarded.
                        Err(_) => continue,
                    },
                    Some(Err(e)) => Some(Err(SourceError::Failed(Error::body(e)))),
                    None => None,
                },
                Source::Part { field, .. } => match ready!(Pin::new(&mut **field).poll_next(cx)) {
                    Some(Ok(data)) if data.is_empty() => continue,
                    Some(Ok(data)) => Some(Ok((data, false))),
                    Some(Err(multer::Error::StreamSizeExceeded { .. })) => {
                        Some(Err(SourceError::TooLarge))
                    }
                    Some(Err(e)) => Some(Err(SourceError::Failed(Error::body(Box::new(e))))),
                    None => None,
                },
            });
        }
    }
}

/// What reading a [`Source`] reports to: the sender's side of the
/// transfer it feeds, which ends the sender's response.
pub(crate) trait Meter {
    /// Counts `data`; `Err` when it takes the upload over the limit (the
    /// meter has cut the transfer then).
    fn count(&mut self, data: &Bytes) -> Result<(), Error>;
    /// The whole upload was read.
    fn finish(&mut self);
    /// The upload cannot go on.
    fn cut(&mut self, cut: Cut);
    /// The upload limit (0: none).
    fn limit(&self) -> u64;
}

impl Source {
    /// [`poll_data`](Self::poll_data), told to `meter`: data is counted,
    /// the end (the last data, or none left) finishes the transfer, and a
    /// failed or too large upload cuts it and comes back as the error for
    /// the receiver.
    pub(crate) fn poll_metered(
        &mut self,
        cx: &mut Context<'_>,
        meter: &mut impl Meter,
    ) -> Poll<Option<Result<(Bytes, bool), Error>>> {
        Poll::Ready(match ready!(self.poll_data(cx)) {
            Some(Ok((data, last))) => {
                if let Err(e) = meter.count(&data) {
                    return Poll::Ready(Some(Err(e)));
                }
                if last {
                    meter.finish();
                }
                Some(Ok((data, last)))
            }
            Some(Err(SourceError::TooLarge)) => {
                let limit = meter.limit();
                meter.cut(Cut::TooLarge { limit });
                Some(Err(Error::with(Kind::Limit, "upload too large")))
            }
            Some(Err(SourceError::Failed(e))) => {
                tracing::debug!(error = %e, "upload failed");
                meter.cut(Cut::UploadFailed);
                Some(Err(e))
            }
            None => {
                meter.finish();
                None
            }
        })
    }
}

/// A receiver's response frame of what [`Source::poll_metered`] read: the
/// last data may be empty, and then there is no frame.
#[inline]
pub(crate) fn data_frame(
    next: Option<Result<(Bytes, bool), Error>>,
) -> Option<Result<Frame<Bytes>, Error>> {
    match next? {
        Ok((data, _)) if data.is_empty() => None,
        Ok((data, _)) => Some(Ok(Frame::data(data))),
        Err(e) => Some(Err(e)),
    }
}

impl http_body::Body for TransferBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.transfer.done {
            // Finished (then nothing is left) or cut (the error was returned).
            return Poll::Ready(None);
        }
        let next = ready!(this.source.poll_metered(cx, &mut this.transfer));
        Poll::Ready(data_frame(next))
    }

    fn is_end_stream(&self) -> bool {
        self.transfer.done
    }

    fn size_hint(&self) -> SizeHint {
        // The Content-Length header (when known) is set by the service; an
        // exact hint here could disagree with a short upload.
        SizeHint::default()
    }
}

/// Hands multer one upload frame per poll: it buffers everything a stream
/// has ready, and this keeps that to one frame (bounded memory).
pub(crate) struct Paced {
    body: UploadBody,
    yielded: bool,
}

impl Paced {
    pub(crate) fn new(body: UploadBody) -> Self {
        Paced {
            body,
            yielded: false,
        }
    }
}

impl Stream for Paced {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if std::mem::replace(&mut this.yielded, false) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            match ready!(this.body.poll_next_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.yielded = true;
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// Polls `body` once, so that hyper sees the upload wanted: for a request
/// with `Expect: 100-continue` it then sends `100 Continue` — only while the
/// response head has not gone out, so this runs before the head. What the
/// poll read is put back in front.
pub(crate) async fn nudge(mut body: UploadBody) -> UploadBody {
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(match body.poll_next_frame(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await;
    // Let the connection task run its read side once, with the head still
    // unwritten.
    tokio::task::yield_now().await;
    match first {
        None => body,
        Some(first) => body.put_back(first),
    }
}

/// How a raw upload began.
pub(crate) enum Start {
    /// With data: the body, its first frame put back in front.
    Data(UploadBody),
    /// It ended without any data.
    Empty,
    /// It failed before its first byte.
    Failed(BoxError),
}

/// Waits for the upload's first data, so that the receiver is answered
/// `200` only once there is some, and `502` when the upload fails first.
///
/// # Cancel safety
///
/// Not cancel safe: a frame read before the future is dropped is lost (the
/// upload is dropped with it, as the caller does).
pub(crate) async fn start(mut body: UploadBody) -> Start {
    if body.is_end_stream() {
        return Start::Empty;
    }
    loop {
        match std::future::poll_fn(|cx| body.poll_next_frame(cx)).await {
            None => return Start::Empty,
            Some(Err(e)) => return Start::Failed(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => {
                    return Start::Data(body.put_back(Some(Ok(Frame::data(data)))))
                }
                // Empty frames, or trailers (which only end a body).
                Ok(_) | Err(_) => continue,
            },
        }
    }
}

/// The whole of an upload whose sender is gone, if all of it had arrived
/// already: what hyper had read is still in its body channel. `None` when
/// any part is missing, the body failed, or its length is not `declared`
/// (the upload's `Content-Length`, when it had one). Never waits.
///
/// The frames it read are gone from `body` either way: call it only on an
/// upload that is dropped when it gives `None`.
pub(crate) fn salvage(body: &mut UploadBody, declared: Option<u64>) -> Option<UploadBody> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = Vec::new();
    let mut total = 0u64;
    // hyper's body channel holds a frame or two; the cap keeps a body that
    // is always ready (not hyper's) from running on.
    for _ in 0..64 {
        match body.poll_next_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len() as u64;
                    frames.push(Ok(Frame::data(data)));
                }
            }
            Poll::Ready(None) => {
                if declared.is_some_and(|len| len != total) {
                    return None;
                }
                let rest = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                return Some(UploadBody::boxed(rest));
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => return None,
        }
    }
    None
}
