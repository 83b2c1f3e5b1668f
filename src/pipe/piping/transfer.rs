//! A running transfer of the Piping mode.
//!
//! One receiver reads the upload straight through, as the ephemeral mode
//! does: its response body polls the upload, so TCP backpressure paces the
//! sender and nothing is copied. Several receivers are fed by a pump task:
//! it waits until every receiver's channel has room, reads one chunk, and
//! hands each a clone of it (the bytes are shared, not copied). The slowest
//! receiver sets the pace, and at most [`FAN_DEPTH`] chunks wait per
//! receiver.
//!
//! A transfer cut anywhere is cut everywhere, visibly: receivers' bodies
//! end with an error (HTTP/1.1: no final chunk, or short of the
//! `Content-Length`; HTTP/2: `RST_STREAM`), and the sender's response gets
//! a line saying why, then ends the same way.
//!
//! (A little over 500 lines: the two bodies and the pump share `Run`'s
//! private state, and read best side by side.)

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{select_all, try_join_all};
use http::header::{
    HeaderValue, ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH,
    CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderName, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::mpsc;

use super::super::body::{data_frame, Meter, Paced, Source, UploadBody};
use super::super::hooks::{Cut, Hooks, Socket, Stats};
use super::answers::cors;
use super::paths::{Reply, WeakPaths};
use super::sender::{Sender, X_PIPING};
use super::Progress;
use crate::body::Body;
use crate::delayed::Completion;
use crate::error::{Error, Kind};
use crate::http::lock;

/// How many chunks may wait for each receiver of a fanned-out transfer.
pub(crate) const FAN_DEPTH: usize = 4;

const X_ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");

/// What the receivers are told about the upload.
pub(super) struct Head {
    pub(super) content_type: Option<HeaderValue>,
    pub(super) content_length: Option<u64>,
    pub(super) content_disposition: Option<HeaderValue>,
    pub(super) x_piping: Vec<HeaderValue>,
}

impl Head {
    fn response(&self, body: Body) -> Response<Body> {
        let mut res = cors(Response::new(body));
        let h = res.headers_mut();
        if let Some(ct) = &self.content_type {
            h.insert(CONTENT_TYPE, no_html(ct));
        }
        if let Some(len) = self.content_length {
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        if let Some(cd) = &self.content_disposition {
            h.insert(CONTENT_DISPOSITION, cd.clone());
        }
        for v in &self.x_piping {
            h.append(X_PIPING, v.clone());
        }
        if !self.x_piping.is_empty() {
            h.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Piping"),
            );
        }
        h.insert(X_ROBOTS_TAG, HeaderValue::from_static("none"));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// `text/html` (with its parameters) becomes `text/plain`: a pipe must not
/// serve a page on the server's origin. Read as bytes, since a value may
/// carry bytes beyond ASCII (which `HeaderValue::to_str` refuses), and item
/// by item, since a browser takes the last type of a list
/// (`text/plain, text/html` is HTML to it); such a list becomes plain
/// `text/plain`.
fn no_html(ct: &HeaderValue) -> HeaderValue {
    let bytes = ct.as_bytes();
    let is_html = |item: &[u8]| {
        let essence = item.split(|&b| b == b';').next().unwrap_or(item);
        essence.trim_ascii().eq_ignore_ascii_case(b"text/html")
    };
    if !bytes.split(|&b| b == b',').any(is_html) {
        return ct.clone();
    }
    let plain = match bytes.iter().position(|&b| b == b';') {
        Some(at) if !bytes.contains(&b',') => [&b"text/plain"[..], &bytes[at..]].concat(),
        _ => b"text/plain".to_vec(),
    };
    HeaderValue::from_bytes(&plain).unwrap_or(HeaderValue::from_static("text/plain"))
}

/// Runs the transfer of `sender` to `receivers` (whose responses have not
/// been sent yet).
pub(super) async fn run(mut sender: Sender, body: UploadBody, receivers: Vec<Reply>) {
    sender.completion.begin_result();
    sender.progress.start();
    let hooks = sender.inner.cfg.hooks.clone();
    hooks.connected(&sender.socket);
    tracing::debug!(path = %sender.path, receivers = receivers.len(), "piping transfer starts");
    let limit = sender.inner.cfg.max_upload_bytes;
    let run = Arc::new(Run {
        completion: sender.completion.clone(),
        progress: sender.progress.clone(),
        paths: sender.paths.clone(),
        path: sender.path.clone(),
        hooks,
        socket: sender.socket.clone(),
        limit,
        started: Instant::now(),
        state: Mutex::new(RunState {
            ended: false,
            cut: false,
            sent: false,
            receivers: receivers.len(),
            received: 0,
        }),
    });
    let source = match sender.boundary.take() {
        None => Source::Raw(body),
        Some(boundary) => {
            let whole = if limit == 0 { u64::MAX } else { limit };
            let constraints =
                multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole));
            let mut multipart =
                multer::Multipart::with_constraints(Paced::new(body), boundary, constraints);
            // The first part, whatever it is, as Piping Server does: its
            // type and disposition (with the file name) are forwarded.
            match multipart.next_field().await {
                Ok(Some(field)) => {
                    sender.head.content_type = field.headers().get(CONTENT_TYPE).cloned();
                    sender.head.content_disposition =
                        field.headers().get(CONTENT_DISPOSITION).cloned();
                    sender.head.content_length = None;
                    Source::Part {
                        field: Box::new(field),
                        _multipart: multipart,
                    }
                }
                Ok(None) | Err(_) => {
                    run.cut(Cut::UploadFailed);
                    for reply in receivers {
                        let _ = reply.send(cors(crate::http::text(
                            StatusCode::BAD_GATEWAY,
                            "[ERROR] The upload failed before any data.\n",
                        )));
                    }
                    return;
                }
            }
        }
    };
    let head = sender.head;
    drop(sender.inner);
    if matches!(&source, Source::Raw(body) if body.is_end_stream()) {
        // An empty upload: hyper does not poll a body it knows is empty,
        // so the transfer ends here.
        run.sent();
        for reply in receivers {
            run.received();
            let _ = reply.send(head.response(Body::empty()));
        }
        return;
    }
    if receivers.len() == 1 {
        let body = DirectBody {
            source,
            run: Direct { run, done: false },
        };
        if let Some(reply) = receivers.into_iter().next() {
            // A receiver that left drops the response, and its body cuts
            // the transfer.
            let _ = reply.send(head.response(Body::boxed(body)));
        }
        return;
    }
    let mut senders = Vec::with_capacity(receivers.len());
    for reply in receivers {
        let (tx, rx) = mpsc::channel(FAN_DEPTH);
        senders.push(tx);
        let body = FanBody {
            rx,
            run: run.clone(),
            expected: head.content_length,
            delivered: 0,
            done: false,
        };
        let _ = reply.send(head.response(Body::boxed(body)));
    }
    pump(source, senders, run).await;
}

/// The sender's side of a running transfer: it ends the sender's response
/// exactly once, and frees the path when the transfer is over.
struct Run {
    completion: Completion,
    progress: Arc<Progress>,
    paths: WeakPaths,
    path: String,
    hooks: Arc<dyn Hooks>,
    socket: Socket,
    /// 0: no limit.
    limit: u64,
    started: Instant,
    state: Mutex<RunState>,
}

struct RunState {
    ended: bool,
    cut: bool,
    /// The whole upload was read.
    sent: bool,
    receivers: usize,
    /// Receivers that got every byte.
    received: usize,
}

impl Run {
    /// Counts `data`; `Err` when it takes the upload over the limit (the
    /// transfer is then cut).
    fn count(&self, data: &Bytes) -> Result<(), Error> {
        let bytes = self.progress.add(data.len() as u64);
        if self.limit > 0 && bytes > self.limit {
            let limit = self.limit;
            self.cut(Cut::TooLarge { limit });
            return Err(Error::with(Kind::Limit, "upload too large"));
        }
        let stats = Stats {
            bytes,
            elapsed: self.started.elapsed(),
        };
        self.hooks.progress(&self.socket, &stats);
        Ok(())
    }

    fn is_cut(&self) -> bool {
        lock(&self.state).cut
    }

    fn is_sent(&self) -> bool {
        lock(&self.state).sent
    }

    /// The whole upload was read.
    fn sent(&self) {
        let mut st = lock(&self.state);
        if st.ended || st.sent {
            return;
        }
        st.sent = true;
        let _ = self.completion.write(&b"[INFO] Sent successfully!\n"[..]);
        self.end_if_received(&mut st);
    }

    /// One receiver got every byte.
    fn received(&self) {
        let mut st = lock(&self.state);
        st.received += 1;
        self.end_if_received(&mut st);
    }

    fn end_if_received(&self, st: &mut RunState) {
        if st.ended || !st.sent || st.received < st.receivers {
            return;
        }
        st.ended = true;
        tracing::debug!(path = %self.path, bytes = self.progress.bytes(), "piping transfer done");
        self.completion
            .end(&b"[INFO] All receiver(s) was/were received successfully.\n"[..]);
    }

    /// Cuts the transfer for every side; `false` if it had already ended.
    fn cut(&self, cut: Cut) -> bool {
        let mut st = lock(&self.state);
        if st.ended {
            return false;
        }
        st.ended = true;
        st.cut = true;
        drop(st);
        let bytes = self.progress.bytes();
        tracing::debug!(path = %self.path, bytes, ?cut, "piping transfer cut");
        let line = match cut {
            Cut::TooLarge { limit } => {
                format!("[ERROR] The upload is larger than {limit} bytes; the transfer was cut.\n")
            }
            Cut::ReceiverGone => format!(
                "[INFO] A receiver aborted.\n[ERROR] The transfer was cut after {bytes} bytes.\n"
            ),
            _ => "[ERROR] Failed to send.\n".to_owned(),
        };
        let _ = self.completion.write(line);
        self.completion
            .fail(Error::with(Kind::Body, "the transfer was cut"));
        true
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Every body and the pump are gone: a transfer that did not end is
        // cut (a receiver's response dropped before it was polled).
        self.cut(Cut::ReceiverGone);
        self.paths.finished(&self.path);
    }
}

fn cut_error() -> Error {
    Error::with(Kind::Body, "the transfer was cut")
}

/// The response body of the one receiver of a transfer: it reads the
/// upload itself.
struct DirectBody {
    source: Source,
    run: Direct,
}

/// What [`DirectBody`] reads for: the transfer, and whether its part is
/// over.
struct Direct {
    run: Arc<Run>,
    done: bool,
}

impl Meter for Direct {
    fn count(&mut self, data: &Bytes) -> Result<(), Error> {
        let counted = self.run.count(data);
        self.done |= counted.is_err();
        counted
    }

    /// The upload was sent, and this one receiver got all of it.
    fn finish(&mut self) {
        self.done = true;
        self.run.sent();
        self.run.received();
    }

    fn cut(&mut self, cut: Cut) {
        self.done = true;
        self.run.cut(cut);
    }

    fn limit(&self) -> u64 {
        self.run.limit
    }
}

impl http_body::Body for DirectBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.run.done {
            return Poll::Ready(None);
        }
        let next = std::task::ready!(this.source.poll_metered(cx, &mut this.run));
        Poll::Ready(data_frame(next))
    }

    fn is_end_stream(&self) -> bool {
        self.run.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        if !self.run.done {
            self.run.run.cut(Cut::ReceiverGone);
        }
    }
}

/// The response body of one of several receivers: the pump feeds it.
struct FanBody {
    rx: mpsc::Receiver<Bytes>,
    run: Arc<Run>,
    /// The upload's `Content-Length`: hyper stops polling once it has
    /// written that many bytes, so the body must see its end itself.
    expected: Option<u64>,
    delivered: u64,
    done: bool,
}

impl http_body::Body for FanBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.run.is_cut() {
            this.done = true;
            return Poll::Ready(Some(Err(cut_error())));
        }
        Poll::Ready(match std::task::ready!(this.rx.poll_recv(cx)) {
            Some(data) => {
                this.delivered += data.len() as u64;
                if this.expected == Some(this.delivered) {
                    this.done = true;
                    this.run.received();
                }
                Some(Ok(Frame::data(data)))
            }
            None => {
                this.done = true;
                if this.run.is_sent() && !this.run.is_cut() {
                    this.run.received();
                    None
                } else {
                    Some(Err(cut_error()))
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for FanBody {
    fn drop(&mut self) {
        if !self.done {
            self.run.cut(Cut::ReceiverGone);
        }
    }
}

/// Feeds every receiver each chunk of the upload, reading the next only
/// when all have room for it.
async fn pump(mut source: Source, senders: Vec<mpsc::Sender<Bytes>>, run: Arc<Run>) {
    loop {
        // A receiver that left closes its channel: `reserve` fails.
        let Ok(permits) = try_join_all(senders.iter().map(mpsc::Sender::reserve)).await else {
            run.cut(Cut::ReceiverGone);
            return;
        };
        let next = {
            let closed = select_all(senders.iter().map(|s| Box::pin(s.closed())));
            tokio::select! {
                next = std::future::poll_fn(|cx| source.poll_metered(cx, &mut Pumped(&run))) => next,
                _ = closed => {
                    run.cut(Cut::ReceiverGone);
                    return;
                }
            }
        };
        match next {
            Some(Ok((data, last))) => {
                if !data.is_empty() {
                    for permit in permits {
                        permit.send(data.clone());
                    }
                }
                if last {
                    return;
                }
            }
            // Cut (the receivers' bodies see it), or all sent.
            Some(Err(_)) | None => return,
        }
    }
}

/// What the pump reads for: the transfer (each receiver's body says when
/// it got everything).
struct Pumped<'a>(&'a Run);

impl Meter for Pumped<'_> {
    fn count(&mut self, data: &Bytes) -> Result<(), Error> {
        self.0.count(data)
    }

    fn finish(&mut self) {
        self.0.sent();
    }

    fn cut(&mut self, cut: Cut) {
        self.0.cut(cut);
    }

    fn limit(&self) -> u64 {
        self.0.limit
    }
}
