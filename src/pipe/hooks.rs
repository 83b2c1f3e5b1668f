//! What the pipe says at each event; every answer can be replaced.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::http::text;

/// A socket as the hooks see it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Socket {
    /// The socket's id.
    pub id: String,
    /// The download URL (`http://{Host}/{id}` unless a base URL is set).
    pub url: String,
    /// The file name: the last path segment of a raw upload (`curl -T file
    /// http://host/` sends `PUT /file`), or the multipart file part's — known
    /// only once a receiver has connected and the part's headers arrived, so
    /// `None` in [`Hooks::opened`] and [`Hooks::connected`] for multipart.
    pub filename: Option<String>,
    /// The upload's declared `Content-Type`; for multipart, the request's
    /// (`multipart/form-data; boundary=…`) until the file part's headers
    /// arrived, then the part's.
    pub content_type: Option<String>,
    /// The upload's declared `Content-Length` (the whole request's).
    pub content_length: Option<u64>,
    /// The query string of the upload request, if any.
    pub query: Option<String>,
}

/// A reservation as the hooks see it (`GET /reserve`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reservation {
    /// The reservation's id.
    pub id: String,
    /// The download URL, to share with the receiver (`GET` only).
    pub url: String,
    /// The upload URL: it carries the secret that alone authorises the
    /// upload, so it goes to the sender only.
    pub upload_url: String,
    /// Did the request ask for JSON (`Accept: application/json`)?
    pub json: bool,
}

/// A per-client cap a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientLimit {
    /// [`max_waiting_per_client`](super::Builder::max_waiting_per_client):
    /// this client's senders already wait for receivers.
    Waiting {
        /// The cap.
        max: usize,
    },
    /// [`max_reservations_per_client`](super::Builder::max_reservations_per_client):
    /// this client holds that many reservations.
    Reservations {
        /// The cap.
        max: usize,
    },
}

/// How much went through, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes of file content delivered to the receiver (multipart framing
    /// not counted).
    pub bytes: u64,
    /// Time since the receiver connected.
    pub elapsed: Duration,
}

/// Why a transfer was cut before the upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// The upload passed [`max_upload_bytes`](super::Builder::max_upload_bytes).
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The receiver went away.
    ReceiverGone,
    /// The upload failed: the sender went away, or sent a malformed body.
    UploadFailed,
}

/// The pipe's events, each with a built-in default answer.
///
/// Implement the methods you want to change; the others keep their defaults.
/// Methods returning [`Bytes`] write to the sender's held response (which
/// already went out as `200 OK`, `text/plain`); methods returning a
/// [`Response`] answer a request that has not been answered yet. Hooks run on
/// the request's task: keep them quick and non-blocking.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use delayed_response::pipe::{self, Hooks, Socket};
///
/// struct Friendly;
///
/// impl Hooks for Friendly {
///     fn opened(&self, socket: &Socket) -> Bytes {
///         format!("Ephemeral socket open: curl -o out {}\n", socket.url).into()
///     }
/// }
///
/// let pipe = pipe::Service::builder().hooks(Friendly).build();
/// # let _ = pipe;
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// A socket was opened: the first bytes of the sender's response, written
    /// at once. Default: the download URL and a newline.
    fn opened(&self, socket: &Socket) -> Bytes {
        Bytes::from(format!("{}\n", socket.url))
    }

    /// `GET /reserve` made a reservation. Default: `200` with two lines,
    /// the download URL then the upload URL (or, when JSON was asked for,
    /// `{"id": …, "download": …, "upload": …}`), and
    /// `Cache-Control: no-store`: the upload URL is a credential.
    fn reserved(&self, reservation: &Reservation) -> Response<Body> {
        let mut res = if reservation.json {
            let mut res = Response::new(Body::from(format!(
                "{{\"id\":{},\"download\":{},\"upload\":{}}}\n",
                json_string(&reservation.id),
                json_string(&reservation.url),
                json_string(&reservation.upload_url),
            )));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        } else {
            text(
                StatusCode::OK,
                format!("{}\n{}\n", reservation.url, reservation.upload_url),
            )
        };
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// A receiver took the socket; the transfer starts. Default: nothing.
    fn connected(&self, socket: &Socket) {
        let _ = socket;
    }

    /// Bytes were delivered to the receiver (called once per data frame).
    /// Default: nothing.
    fn progress(&self, socket: &Socket, stats: &Stats) {
        let _ = (socket, stats);
    }

    /// The transfer is complete: the last bytes of the sender's response.
    /// Default: `done: {bytes} bytes in {secs} s`.
    fn end(&self, socket: &Socket, stats: &Stats) -> Bytes {
        let _ = socket;
        Bytes::from(format!(
            "done: {} bytes in {:.3} s\n",
            stats.bytes,
            stats.elapsed.as_secs_f64()
        ))
    }

    /// The transfer was cut: the last bytes of the sender's response.
    fn cut(&self, socket: &Socket, stats: &Stats, cut: Cut) -> Bytes {
        let _ = socket;
        Bytes::from(match cut {
            Cut::TooLarge { limit } => format!(
                "cut: the upload is larger than {limit} bytes ({} bytes sent)\n",
                stats.bytes
            ),
            Cut::ReceiverGone => {
                format!("cut: the receiver went away after {} bytes\n", stats.bytes)
            }
            Cut::UploadFailed => format!("cut: the upload failed after {} bytes\n", stats.bytes),
        })
    }

    /// Nobody asked for the socket within the TTL: the last bytes of the
    /// sender's response. Default: `timeout: ...`.
    fn timeout(&self, socket: &Socket, ttl: Duration) -> Bytes {
        Bytes::from(format!(
            "timeout: nobody fetched {} within {} s\n",
            socket.url,
            ttl.as_secs()
        ))
    }

    /// Unknown, used or malformed id, or a stray path. Default: `404`.
    fn not_found(&self) -> Response<Body> {
        text(StatusCode::NOT_FOUND, "not found\n")
    }

    /// A `GET` of a reservation that no upload has opened yet; the reservation
    /// is kept. Default: `409 Conflict`.
    fn not_ready(&self, id: &str) -> Response<Body> {
        let _ = id;
        text(
            StatusCode::CONFLICT,
            "reserved, but no upload has opened it yet\n",
        )
    }

    /// The declared `Content-Length` is over the limit (the body is not
    /// read). Default: `413`.
    fn too_large(&self, limit: u64) -> Response<Body> {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload larger than {limit} bytes\n"),
        )
    }

    /// `GET /reserve` without the required `Referer` or `Origin`.
    /// Default: `403`.
    fn referer_refused(&self) -> Response<Body> {
        text(StatusCode::FORBIDDEN, "referer not allowed\n")
    }

    /// Malformed request (for example multipart without a boundary).
    /// Default: `400` with the reason.
    fn bad_request(&self, reason: &str) -> Response<Body> {
        text(StatusCode::BAD_REQUEST, format!("bad request: {reason}\n"))
    }

    /// The receiver's answer when the upload failed before its file part
    /// began (the sender left, or sent no file part). Default: `502`.
    fn upload_failed(&self, socket: &Socket) -> Response<Body> {
        let _ = socket;
        text(
            StatusCode::BAD_GATEWAY,
            "the upload failed before any data\n",
        )
    }

    /// Too many sockets wait at once ([`max_waiting`](super::Builder::max_waiting)),
    /// or no id could be made. Default: `503` with `Retry-After: 5`.
    fn busy(&self) -> Response<Body> {
        let mut res = text(StatusCode::SERVICE_UNAVAILABLE, "too many open sockets\n");
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        res
    }

    /// The client is at one of its per-client caps; other clients are not
    /// affected. Default: `429 Too Many Requests` with `Retry-After: 5`.
    fn client_limit(&self, limit: ClientLimit) -> Response<Body> {
        let reason = match limit {
            ClientLimit::Waiting { .. } => "too many uploads from this client are waiting\n",
            ClientLimit::Reservations { .. } => "too many reservations from this client\n",
        };
        crate::limit::too_many_requests(Duration::from_secs(5), reason)
    }

    /// A method the path does not take. Default: `405` with `Allow`.
    fn method_not_allowed(&self, allow: &'static str) -> Response<Body> {
        crate::http::method_not_allowed(allow)
    }
}

/// The built-in answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("\n"), r#""\u000a""#);
    }
}
