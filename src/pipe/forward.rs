//! A request streamed through to the instance that owns its socket
//! (feature `redis`): one HTTP/1.1 connection per request, hyper's client,
//! no pool.
//!
//! Both bodies stream with backpressure: the owner's response body is read
//! only as fast as the receiver takes it, and an upload is sent only as
//! fast as the owner reads it. Either side's end reaches the other:
//! dropping the relayed body (the receiver left) aborts the connection to
//! the owner, which sees a receiver that left; a body the owner cuts (its
//! sender left) fails here, and the receiver's body fails the same way.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::body::UploadBody;
use crate::body::Body;
use crate::error::{Error, Kind};

/// The header that marks a request one instance streams through to
/// another; its value is the instances' shared secret.
pub(super) const FORWARD: HeaderName = HeaderName::from_static("x-pipe-forward");

/// An instance as it advertises itself: `http://host:port[/base]`.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    /// The normalised URL (no trailing `/`), as stored in the backplane.
    pub(crate) url: String,
    /// `host:port` to connect to.
    connect: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The path the pipe is served under (`""` at the root).
    base: String,
}

impl Owner {
    /// Parses an advertised URL; `None` unless it is `http://` with a
    /// host, without user info, query or fragment.
    pub(crate) fn parse(url: &str) -> Option<Owner> {
        let uri: Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") || uri.query().is_some() || url.contains('#') {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(80);
        let base = uri.path().trim_end_matches('/').to_owned();
        Some(Owner {
            url: format!("http://{}{base}", authority.as_str()),
            connect: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str()).ok()?,
            base,
        })
    }
}

fn io(error: impl Into<crate::BoxError>) -> Error {
    Error::with(Kind::Io, error)
}

/// Sends `method path` (the path under the pipe, with its leading `/`) with
/// `headers` and `body` to `owner`, and answers its response, whose body
/// streams from the owner. `timeout` bounds the connection's setup; the
/// response head may take as long as the owner takes (it waits for the
/// upload's first byte).
///
/// # Errors
///
/// The owner could not be reached, or its connection failed before the
/// response head.
///
/// # Cancel safety
///
/// Dropping the future closes the connection to the owner.
pub(super) async fn forward(
    owner: &Owner,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: UploadBody,
    timeout: Duration,
) -> Result<Response<Body>, Error> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&owner.connect))
        .await
        .map_err(|_| io("pipe: connecting to the owner timed out"))?
        .map_err(io)?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(io)?;
    let conn = tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "pipe: forwarded connection ended");
        }
    });
    // Aborts the connection if this future is dropped before the head, or
    // the relayed body later.
    let guard = AbortOnDrop(conn.abort_handle());
    let uri: Uri = format!("{}{path}", owner.base).parse().map_err(io)?;
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // The caller may pass the client's `Host` on (the owner writes URLs
    // with it).
    if !req.headers().contains_key(HOST) {
        req.headers_mut().insert(HOST, owner.host.clone());
    }
    let res = send.send_request(req).await.map_err(io)?;
    let (mut parts, incoming) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Relayed {
        incoming,
        _conn: guard,
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Removes the headers that describe one connection, not the message.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Aborts a task when dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The owner's response body, relayed; its connection goes with it.
struct Relayed {
    incoming: Incoming,
    _conn: AbortOnDrop,
}

impl http_body::Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().incoming).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_urls_are_plain_http_with_a_host() {
        let owner = Owner::parse("http://10.0.0.5:9000/").unwrap();
        assert_eq!(owner.url, "http://10.0.0.5:9000");
        assert_eq!(owner.connect, "10.0.0.5:9000");
        assert_eq!(owner.base, "");
        let nested = Owner::parse("http://pipe.internal/pipe/").unwrap();
        assert_eq!(nested.url, "http://pipe.internal/pipe");
        assert_eq!(nested.connect, "pipe.internal:80");
        assert_eq!(nested.base, "/pipe");
        assert_eq!(
            Owner::parse("http://[::1]:9000").unwrap().connect,
            "[::1]:9000"
        );
        for bad in [
            "https://a:1",
            "a:1",
            "/path",
            "http://u@a:1",
            "http://a:1/?q",
            "http://a:1/#f",
            "",
        ] {
            assert!(Owner::parse(bad).is_none(), "{bad}");
        }
    }
}
