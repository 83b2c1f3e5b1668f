//! One transfer: the upload a sender left waiting, and the receiver's body
//! that pulls from it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

use super::hooks::{Cut, Hooks, Socket, Stats};
use crate::delayed::Completion;
use crate::error::{BoxError, Error, Kind};

/// An upload body with its data type and error erased.
pub(crate) type UploadBody =
    Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>;

/// A sender waiting for its receiver, as kept in the registry.
pub(crate) struct Upload {
    pub(crate) body: UploadBody,
    /// `Some` for `multipart/form-data`: the first file part is streamed.
    pub(crate) boundary: Option<String>,
    /// The sender's held response.
    pub(crate) completion: Completion,
    pub(crate) socket: Socket,
    /// Dropped when a receiver takes the upload, which stops the watcher.
    pub(crate) tapped: oneshot::Sender<()>,
}

/// The sender's side of a running transfer. It ends the sender's response
/// exactly once: with the end line, or with a cut line — also when it is
/// dropped early, which is how a receiver that went away shows up.
pub(crate) struct Transfer {
    completion: Completion,
    socket: Socket,
    hooks: Arc<dyn Hooks>,
    /// 0: no limit.
    limit: u64,
    bytes: u64,
    started: Instant,
    done: bool,
}

impl Transfer {
    pub(crate) fn new(
        completion: Completion,
        socket: Socket,
        hooks: Arc<dyn Hooks>,
        limit: u64,
    ) -> Self {
        Transfer {
            completion,
            socket,
            hooks,
            limit,
            bytes: 0,
            started: Instant::now(),
            done: false,
        }
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    fn stats(&self) -> Stats {
        Stats {
            bytes: self.bytes,
            elapsed: self.started.elapsed(),
        }
    }

    /// The upload ended: the sender's response gets its completion line.
    pub(crate) fn finish(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            let stats = self.stats();
            tracing::debug!(id = %self.socket.id, bytes = stats.bytes, "pipe transfer done");
            self.completion.end(self.hooks.end(&self.socket, &stats));
        }
    }

    pub(crate) fn cut(&mut self, cut: Cut) {
        if !std::mem::replace(&mut self.done, true) {
            let stats = self.stats();
            tracing::debug!(id = %self.socket.id, bytes = stats.bytes, ?cut, "pipe transfer cut");
            self.completion.end(self.hooks.cut(&self.socket, &stats, cut));
        }
    }

    /// Counts `data`; `Err` when it takes the transfer over the limit.
    fn count(&mut self, data: &Bytes) -> Result<(), Error> {
        self.bytes += data.len() as u64;
        if self.limit > 0 && self.bytes > self.limit {
            self.cut(Cut::TooLarge { limit: self.limit });
            return Err(Error::with(Kind::Limit, "upload too large"));
        }
        self.hooks.progress(&self.socket, &self.stats());
        Ok(())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.cut(Cut::ReceiverGone);
    }
}

/// Where the receiver's bytes come from.
pub(crate) enum Source {
    /// A raw upload: its frames pass straight through, without copies.
    Raw(UploadBody),
    /// The first file part of a multipart upload.
    Part {
        field: multer::Field<'static>,
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

impl http_body::Body for TransferBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.transfer.done {
            return Poll::Ready(None);
        }
        loop {
            let next: Option<Result<Bytes, Error>> = match &mut this.source {
                Source::Raw(body) => match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => Some(Ok(data)),
                        // Upload trailers are not forwarded.
                        Err(_) => continue,
                    },
                    Some(Err(e)) => Some(Err(Error::body(e))),
                    None => None,
                },
                Source::Part { field, .. } => match ready!(Pin::new(field).poll_next(cx)) {
                    Some(Ok(data)) => Some(Ok(data)),
                    Some(Err(multer::Error::StreamSizeExceeded { .. })) => {
                        let limit = this.transfer.limit;
                        this.transfer.cut(Cut::TooLarge { limit });
                        return Poll::Ready(Some(Err(Error::with(
                            Kind::Limit,
                            "upload too large",
                        ))));
                    }
                    Some(Err(e)) => Some(Err(Error::body(Box::new(e)))),
                    None => None,
                },
            };
            return Poll::Ready(match next {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => match this.transfer.count(&data) {
                    Ok(()) => Some(Ok(Frame::data(data))),
                    Err(e) => Some(Err(e)),
                },
                Some(Err(e)) => {
                    tracing::debug!(id = %this.transfer.socket.id, error = %e, "upload failed");
                    this.transfer.cut(Cut::UploadFailed);
                    Some(Err(e))
                }
                None => {
                    this.transfer.finish();
                    None
                }
            });
        }
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
            match ready!(this.body.as_mut().poll_frame(cx)) {
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
