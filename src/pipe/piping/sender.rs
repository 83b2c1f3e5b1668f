//! The sender's side of the Piping mode: `POST` or `PUT` on a path. Its
//! response goes out at once (`200`, `text/plain`) with Piping Server's
//! progress lines; between them, the heartbeats say where it stands. A task
//! waits with the upload for the receivers, then moves the bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, EXPECT};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};
use http_body::{Body as _, Frame};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::body::{nudge, UploadBody};
use super::super::headers::{declared_length, is_multipart};
use super::super::hooks::{ClientLimit, Socket};
use super::super::service::Inner;
use super::answers::{cors, refuse, refused};
use super::paths::{Reply, WaitingSender, WeakPaths};
use super::transfer::{self, Head};
use super::{receivers_wanted, Progress};
use crate::body::Body;
use crate::delayed::{Completion, DelayedResponse};
use crate::error::BoxError;
use crate::http::{unbuffered, TEXT_PLAIN};
use crate::limit::ClientKey;

/// How much of an upload a waiting sender reads ahead: 16 KiB.
///
/// hyper watches a connection for the client leaving only while it is not
/// holding an unread request body. Reading a little ahead lets a small
/// upload (`echo hi | curl -T - …`, a form) be read whole, and its sender
/// seen leaving at once; a larger one is seen at the next failed heartbeat.
pub(crate) const READ_AHEAD: usize = 16 << 10;

pub(crate) const X_PIPING: HeaderName = HeaderName::from_static("x-piping");

impl Inner {
    /// `POST` or `PUT` of a path.
    pub(in crate::pipe) async fn piping_send(
        self: Arc<Self>,
        parts: Parts,
        body: UploadBody,
        path: String,
    ) -> Response<Body> {
        let hooks = self.cfg.hooks.clone();
        let n = match receivers_wanted(&parts, self.cfg.max_receivers) {
            Ok(n) => n,
            Err(message) => return refuse(message),
        };
        let content_length = match declared_length(&parts) {
            Ok(len) => len,
            Err(reason) => return cors(hooks.bad_request(reason)),
        };
        let limit = self.cfg.max_upload_bytes;
        if content_length.is_some_and(|len| limit > 0 && len > limit) {
            return cors(hooks.too_large(limit));
        }
        let content_type = parts.headers.get(CONTENT_TYPE).cloned();
        let boundary = match content_type.as_ref().and_then(|v| v.to_str().ok()) {
            Some(ct) if is_multipart(ct) => match multer::parse_boundary(ct) {
                Ok(b) => Some(b),
                Err(_) => return cors(hooks.bad_request("multipart without a boundary")),
            },
            _ => None,
        };
        let client = ClientKey::from_extensions(&parts.extensions);
        let Some(permit) = self.waiting_per_client.try_acquire(&client) else {
            tracing::debug!(%client, "pipe: client at its cap of waiting requests");
            let max = self.waiting_per_client.max();
            return cors(hooks.client_limit(ClientLimit::Waiting { max }));
        };

        let progress = Progress::new(n);
        let beat = progress.clone();
        let builder = DelayedResponse::for_parts(&parts)
            .pending_status(StatusCode::OK)
            .heartbeat(self.cfg.heartbeat.clone())
            .on_heartbeat(move |_| beat.line());
        let body = if parts.headers.get(EXPECT).is_some() {
            nudge(body).await
        } else {
            body
        };
        let (response, completion) = builder.handle();
        let serial = self.paths.serial();
        let (start_tx, start_rx) = oneshot::channel();
        let waiting = WaitingSender {
            serial,
            completion: completion.clone(),
            progress: progress.clone(),
            start: start_tx,
            _permit: Some(permit),
        };
        let max_paths = self.cfg.max_waiting;
        let start = match self.paths.join_sender(&path, n, max_paths, waiting) {
            Ok(joined) => match joined.start {
                Some(receivers) => Start::Now(receivers),
                None => Start::Later(start_rx),
            },
            Err((why, waiting)) => {
                drop(waiting);
                tracing::debug!(%path, ?why, "piping sender refused");
                return refused(&self, &why, &path);
            }
        };
        tracing::debug!(%path, n, "piping sender joined");
        let head = Head {
            content_type,
            content_length,
            content_disposition: parts.headers.get(CONTENT_DISPOSITION).cloned(),
            x_piping: parts.headers.get_all(X_PIPING).iter().cloned().collect(),
        };
        let socket = Socket {
            id: path.clone(),
            url: self.url(&parts, path.trim_start_matches('/')),
            filename: None,
            content_type: head
                .content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            content_length,
            query: parts.uri.query().map(str::to_owned),
        };
        let deadline = self.deadline();
        let sender = Sender {
            paths: self.paths.downgrade(),
            inner: self.clone(),
            path,
            serial,
            completion,
            progress,
            head,
            boundary,
            socket,
        };
        tokio::spawn(sender.wait(body, start, deadline));

        let mut res = response.await;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, TEXT_PLAIN);
        unbuffered(headers);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        cors(res)
    }
}

/// When the transfer starts: now (the receivers were all there), or when
/// the last one arrives.
enum Start {
    Now(Vec<Reply>),
    Later(oneshot::Receiver<Vec<Reply>>),
}

/// A sender between its request and its transfer.
pub(super) struct Sender {
    pub(super) paths: WeakPaths,
    pub(super) inner: Arc<Inner>,
    pub(super) path: String,
    serial: u64,
    pub(super) completion: Completion,
    pub(super) progress: Arc<Progress>,
    pub(super) head: Head,
    pub(super) boundary: Option<String>,
    pub(super) socket: Socket,
}

impl Sender {
    /// Waits for the receivers, reading a little of the upload ahead; then
    /// runs the transfer. Leaves the path at once when the sender goes, and
    /// at the TTL.
    async fn wait(self, body: UploadBody, start: Start, deadline: Instant) {
        let mut ahead = ReadAhead::new(body);
        let mut start_rx = match start {
            Start::Now(receivers) => {
                return transfer::run(self, ahead.into_body(), receivers).await
            }
            Start::Later(rx) => rx,
        };
        let mut left = false;
        let receivers = loop {
            tokio::select! {
                biased;
                receivers = &mut start_rx => match receivers {
                    Ok(receivers) => break receivers,
                    // The pipe is gone.
                    Err(_) => return,
                },
                () = self.completion.closed(), if !left => {
                    // The sender left, or the server is shutting down.
                    if self.paths.sender_left(&self.path, self.serial) {
                        tracing::debug!(path = %self.path, "piping sender left while waiting");
                        return;
                    }
                    // Its transfer is starting: it will fail at once.
                    left = true;
                }
                () = tokio::time::sleep_until(deadline), if !left => {
                    if self.paths.sender_left(&self.path, self.serial) {
                        tracing::debug!(path = %self.path, "piping sender timed out");
                        let ttl = self.inner.cfg.ttl.as_secs();
                        let _ = self.completion.write(format!(
                            "[ERROR] No receiver came within {ttl} s.\n"
                        ));
                        self.completion.fail(crate::Error::with(
                            crate::error::Kind::Timeout,
                            "no receiver came within the TTL",
                        ));
                        return;
                    }
                    left = true;
                }
                read = ahead.read(), if ahead.wants_more() => {
                    if read.is_err() && self.paths.sender_left(&self.path, self.serial) {
                        tracing::debug!(path = %self.path, "piping upload failed while waiting");
                        return;
                    }
                }
            }
        };
        transfer::run(self, ahead.into_body(), receivers).await;
    }
}

/// An upload with up to [`READ_AHEAD`] bytes read from it.
struct ReadAhead {
    held: VecDeque<Bytes>,
    held_bytes: usize,
    rest: UploadBody,
    /// The upload ended (`Some(None)`) or failed (`Some(Some(error))`).
    end: Option<Option<BoxError>>,
}

impl ReadAhead {
    fn new(rest: UploadBody) -> Self {
        let end = rest.is_end_stream().then_some(None);
        ReadAhead {
            held: VecDeque::new(),
            held_bytes: 0,
            rest,
            end,
        }
    }

    fn wants_more(&self) -> bool {
        self.end.is_none() && self.held_bytes < READ_AHEAD
    }

    /// Reads one frame. `Err` when the upload failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a frame is kept only once it is read.
    async fn read(&mut self) -> Result<(), ()> {
        let frame = std::future::poll_fn(|cx| self.rest.poll_next_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        self.held_bytes += data.len();
                        self.held.push_back(data);
                    }
                }
                if self.rest.is_end_stream() {
                    self.end = Some(None);
                }
                Ok(())
            }
            Some(Err(e)) => {
                self.end = Some(Some(e));
                Err(())
            }
            None => {
                self.end = Some(None);
                Ok(())
            }
        }
    }

    fn into_body(self) -> UploadBody {
        UploadBody::boxed(self)
    }
}

impl http_body::Body for ReadAhead {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.held.pop_front() {
            this.held_bytes -= data.len();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match &mut this.end {
            Some(None) => Poll::Ready(None),
            Some(Some(_)) => {
                // The error once; the body is over after it.
                let error = this.end.replace(None).flatten();
                Poll::Ready(error.map(Err))
            }
            None => this.rest.poll_next_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty()
            && match &self.end {
                Some(None) => true,
                Some(Some(_)) => false,
                None => self.rest.is_end_stream(),
            }
    }
}
