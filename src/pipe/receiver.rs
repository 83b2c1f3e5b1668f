//! The receiver's side: `GET /{id}` takes the socket (single use) and
//! streams the upload into the response.

use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, X_CONTENT_TYPE_OPTIONS};
use http::Response;

use super::body::{start, Paced, Source, Start, TransferBody};
use super::headers::{raw_content_type, set_download_headers};
use super::hooks::Cut;
use super::registry::Tapped;
use super::service::Inner;
use super::transfer::{Transfer, Upload};
use crate::body::Body;

impl Inner {
    /// `GET /{id}`: takes the socket (single use) and streams the upload.
    pub(super) async fn tap(self: Arc<Self>, id: &str) -> Response<Body> {
        let hooks = self.cfg.hooks.clone();
        if !self.cfg.ids.is_valid(id) {
            return hooks.not_found();
        }
        let (upload, mut rearm) = match self.registry.tap(id) {
            Tapped::Missing => return hooks.not_found(),
            Tapped::Reserved => return hooks.not_ready(id),
            Tapped::Taken(upload, rearm) => (upload, rearm),
        };
        // Gone for good (a reservation may come back: its hold stays, and
        // the renewal drops it if it does not).
        #[cfg(feature = "redis")]
        if rearm.is_none() {
            self.forget(id);
        }
        let Upload {
            body,
            boundary,
            completion,
            socket,
            permit,
        } = *upload;
        // The sender no longer waits: its client may open another.
        drop(permit);
        // An upload that fails before its first byte leaves its reservation
        // usable (until its TTL): the sender may try again.
        let mut failed_first = |transfer: &mut Transfer| {
            transfer.cut(Cut::UploadFailed);
            if let Some(rearm) = rearm.take() {
                tracing::debug!(%id, "pipe upload failed first; reservation rearmed");
                self.registry.rearm(id, rearm);
            }
            hooks.upload_failed(transfer.socket())
        };
        tracing::debug!(%id, "pipe socket connected");
        hooks.connected(&socket);
        // The transfer is the sender's result: a shutdown lets it finish.
        completion.begin_result();
        let mut transfer =
            Transfer::new(completion, socket, hooks.clone(), self.cfg.max_upload_bytes);

        let mut res = Response::new(Body::empty());
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        let (source, content_type, filename) = match boundary {
            None => {
                // The head waits for the first byte: a `200` promises data,
                // and an upload that fails first gets the receiver a `502`.
                let body = match start(body).await {
                    Start::Data(body) => body,
                    Start::Failed(error) => {
                        tracing::debug!(%id, %error, "pipe upload failed before its first byte");
                        return failed_first(&mut transfer);
                    }
                    Start::Empty => {
                        transfer.finish();
                        let headers = res.headers_mut();
                        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
                        set_download_headers(
                            headers,
                            raw_content_type(transfer.socket().content_type.as_deref()).as_deref(),
                            transfer.socket().filename.as_deref(),
                        );
                        return res;
                    }
                };
                if let Some(len) = transfer.socket().content_length {
                    res.headers_mut()
                        .insert(CONTENT_LENGTH, HeaderValue::from(len));
                }
                let socket = transfer.socket();
                (
                    Source::Raw(body),
                    raw_content_type(socket.content_type.as_deref()),
                    socket.filename.clone(),
                )
            }
            Some(boundary) => {
                let constraints = multer::Constraints::new().size_limit(
                    multer::SizeLimit::new().whole_stream(match self.cfg.max_upload_bytes {
                        0 => u64::MAX,
                        n => n,
                    }),
                );
                let mut multipart =
                    multer::Multipart::with_constraints(Paced::new(body), boundary, constraints);
                // Awaits the sender's part headers; no lock is held. If the
                // receiver leaves meanwhile, dropping `transfer` tells the
                // sender.
                let field = loop {
                    match multipart.next_field().await {
                        Ok(Some(field)) if field.file_name().is_some() => break field,
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => return failed_first(&mut transfer),
                    }
                };
                let content_type = field.content_type().map(|m| m.to_string());
                let filename = field.file_name().map(str::to_owned);
                // Later hooks (progress, end, cut) see the part's metadata.
                let socket = transfer.socket_mut();
                socket.content_type.clone_from(&content_type);
                socket.filename.clone_from(&filename);
                (
                    Source::Part {
                        field: Box::new(field),
                        _multipart: multipart,
                    },
                    content_type,
                    filename,
                )
            }
        };
        set_download_headers(
            res.headers_mut(),
            content_type.as_deref(),
            filename.as_deref(),
        );
        *res.body_mut() = Body::boxed(TransferBody::new(source, transfer));
        res
    }
}
