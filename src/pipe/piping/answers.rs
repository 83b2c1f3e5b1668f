//! The Piping mode's fixed answers: refusals, the CORS preflight, and the
//! reserved paths. Every answer carries `Access-Control-Allow-Origin: *`,
//! so that browser clients on other origins can read it.

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW,
    CONTENT_LENGTH,
};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::super::service::Inner;
use super::super::{headers, page};
use super::paths::Refused;
use super::ALLOW as ALLOWED;
use crate::body::Body;
use crate::http::text;

const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds `Access-Control-Allow-Origin: *`.
pub(super) fn cors(mut res: Response<Body>) -> Response<Body> {
    res.headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

/// `400` with Piping Server's message.
pub(super) fn refuse(message: String) -> Response<Body> {
    cors(text(StatusCode::BAD_REQUEST, message))
}

/// The answer to a refused join.
pub(super) fn refused(inner: &Inner, refused: &Refused, path: &str) -> Response<Body> {
    let message = match refused {
        Refused::Established => {
            format!("[ERROR] Connection on '{path}' has been established already.\n")
        }
        Refused::AnotherSender => {
            format!("[ERROR] Another sender has been connected on '{path}'.\n")
        }
        Refused::Mismatch { expected, got } => {
            format!("[ERROR] The number of receivers should be {expected} but {got}.\n")
        }
        Refused::ReceiversFull => "[ERROR] The number of receivers has reached limits.\n".into(),
        Refused::Busy => return cors(inner.cfg.hooks.busy()),
    };
    refuse(message)
}

/// The CORS preflight: any origin may send and receive, with the headers
/// Piping clients set. A private-network preflight (a page on a public
/// origin reaching a server on a private address) is allowed too.
pub(super) fn preflight(parts: &Parts) -> Response<Body> {
    let mut res = cors(Response::new(Body::empty()));
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Content-Disposition, X-Piping"),
    );
    // A page detects X-Piping support by reading this preflight's
    // Access-Control-Allow-Headers.
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Access-Control-Allow-Headers"),
    );
    if parts
        .headers
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        h.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

/// `405` with `Allow`.
pub(super) fn method_not_allowed(method: &Method) -> Response<Body> {
    let mut res = cors(text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("[ERROR] Unsupported method: {method}.\n"),
    ));
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOWED));
    res
}

/// `GET` or `HEAD` of a reserved path.
pub(super) fn reserved(inner: &Inner, parts: &Parts, path: &str) -> Response<Body> {
    let res = match path {
        "/" if inner.cfg.page => page::index(page::Mode::Piping),
        "/noscript" if inner.cfg.page => page::noscript(parts.uri.query()),
        "/" | "/noscript" => text(StatusCode::NOT_FOUND, "[ERROR] No page here.\n"),
        "/version" => text(
            StatusCode::OK,
            format!("{} (delayed-response)\n", env!("CARGO_PKG_VERSION")),
        ),
        "/help" => text(StatusCode::OK, help(&base_url(inner, parts))),
        "/favicon.ico" => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
        }
        // robots.txt: none, as Piping Server; receivers' answers carry
        // `X-Robots-Tag: none`.
        _ => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NOT_FOUND;
            res.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            res
        }
    };
    cors(res)
}

/// Where clients reach this pipe: the base URL when one is set, else the
/// `Host`, over https when the request came so or a proxy says it did.
fn base_url(inner: &Inner, parts: &Parts) -> String {
    if let Some(base) = &inner.cfg.base_url {
        return base.clone();
    }
    let https = parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get(X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("https"));
    let host = headers::host(parts);
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The text of `/help`.
fn help(url: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "Help for the pipe of delayed-response {version}, which speaks Piping Server's protocol

======= Receive =======
curl {url}/mypath

======= Send =======
# A file
curl -T myfile {url}/mypath

# Some text
echo 'hello!' | curl -T - {url}/mypath

# A directory, as tar.gz
tar zcf - ./mydir | curl -T - {url}/mypath

# To three receivers, each getting every byte: every side says ?n=3
curl -T myfile '{url}/mypath?n=3'
curl '{url}/mypath?n=3'

# Encrypted end to end
openssl aes-256-cbc -pbkdf2 < myfile | curl -T - {url}/mypath
curl {url}/mypath | openssl aes-256-cbc -d -pbkdf2

Sender and receivers may come in either order: the first waits for the others.
In a browser: {url}/ (or {url}/noscript without JavaScript).
"
    )
}
