//! Crate-private plumbing shared by the core and the services (`pipe`,
//! `signal`, `park`, and the ones to come): one service adapter, the plain
//! answers, a lock helper, shared header names and `Prefer` parsing.
//!
//! Nothing here is public API; the services re-export [`ResponseFuture`] as
//! their own `module::ResponseFuture`, and `park` re-exports [`Prefer`].

// Each optional module uses a different part of this file; a build with only
// some features leaves the rest unused.
#![allow(dead_code)]

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};

use crate::body::Body;

/// `X-Accel-Buffering`: nginx buffers proxied responses unless told `no`.
pub(crate) const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// `Prefer` (RFC 7240).
pub(crate) const PREFER: HeaderName = HeaderName::from_static("prefer");

/// `Preference-Applied` (RFC 7240): which preferences were honoured.
pub(crate) const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// `text/plain; charset=utf-8`.
pub(crate) const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// Locks `m`, ignoring poisoning.
///
/// The crate's critical sections are O(1) map updates and non-blocking
/// sends; a panic inside one cannot leave state that later calls would trip
/// over, so a poisoned lock is used as it is rather than spreading the panic
/// to every later request.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `text/plain` answer with `status`.
pub(crate) fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    res
}

/// `405 Method Not Allowed` with `Allow: allow`.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    res
}

/// Marks a streamed answer as one that no cache or proxy may hold back:
/// `Cache-Control: no-cache` and `X-Accel-Buffering: no`.
pub(crate) fn unbuffered(headers: &mut http::HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

/// The future of a service call of this crate. It never fails: every
/// problem is an HTTP answer.
// Re-exported by each service module; unreachable in a build without one.
#[allow(unreachable_pub)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>,
}

impl ResponseFuture {
    pub(crate) fn new<F>(future: F) -> Self
    where
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        ResponseFuture {
            inner: Box::pin(future),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

/// Implements `hyper::service::Service` and `tower_service::Service` for a
/// service type that has an inherent
/// `fn respond<B>(&self, req: Request<B>) -> ResponseFuture` with the bounds
/// below on `B` (any request body whose chunks turn into `Bytes`).
///
/// One macro rather than a blanket impl: the orphan rule forbids
/// `impl<T: Respond> hyper::service::Service<_> for T`.
#[allow(unused_macros)] // until every build's services use it
macro_rules! service_impls {
    ($ty:ty) => {
        impl<B> hyper::service::Service<http::Request<B>> for $ty
        where
            B: http_body::Body + Send + 'static,
            B::Data: Into<bytes::Bytes> + Send,
            B::Error: Into<$crate::error::BoxError>,
        {
            type Response = http::Response<$crate::body::Body>;
            type Error = std::convert::Infallible;
            type Future = $crate::http::ResponseFuture;

            fn call(&self, req: http::Request<B>) -> Self::Future {
                self.respond(req)
            }
        }

        impl<B> tower_service::Service<http::Request<B>> for $ty
        where
            B: http_body::Body + Send + 'static,
            B::Data: Into<bytes::Bytes> + Send,
            B::Error: Into<$crate::error::BoxError>,
        {
            type Response = http::Response<$crate::body::Body>;
            type Error = std::convert::Infallible;
            type Future = $crate::http::ResponseFuture;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: http::Request<B>) -> Self::Future {
                self.respond(req)
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use service_impls;

/// The preferences of a request that matter to a delayed response: the
/// `Prefer` header (RFC 7240), as far as async request-reply needs it.
///
/// Parsed by RFC 7240's grammar: a comma-separated list of preferences,
/// each a name with an optional value (a token or a quoted string, with
/// backslash escapes), then `;` parameters. A comma or semicolon inside a
/// quoted string belongs to it. Parsed leniently, as the RFC asks: unknown
/// preferences, parameters and values are ignored, and so is a malformed
/// preference (one that does not follow the grammar, such as `wait="7`,
/// whose quote does not close: it runs to the end of its header); of
/// repeated preferences the first wins, even when its value is not a
/// number; names are case-insensitive; several `Prefer` headers are read in
/// order.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use delayed_response::park::Prefer;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("prefer", "respond-async, wait=10".parse().unwrap());
/// let prefer = Prefer::from_headers(&headers);
/// assert!(prefer.respond_async);
/// assert_eq!(prefer.wait, Some(Duration::from_secs(10)));
///
/// // A quoted string is one value, commas and all.
/// headers.insert("prefer", r#"foo="a, wait=9", wait=1"#.parse().unwrap());
/// assert_eq!(Prefer::from_headers(&headers).wait, Some(Duration::from_secs(1)));
/// ```
// Public through `park::Prefer`; unreachable in a build without `park`.
#[allow(unreachable_pub)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Prefer {
    /// `Prefer: respond-async`: answer 202 with a status URL at once.
    pub respond_async: bool,
    /// `Prefer: wait=N`: how long the client is willing to wait, in seconds.
    pub wait: Option<Duration>,
}

impl Prefer {
    /// Reads the `Prefer` headers of a request.
    #[allow(unreachable_pub)]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        let mut seen_async = false;
        let mut seen_wait = false;
        for value in headers.get_all(PREFER) {
            for (name, val) in preferences(value.as_bytes()) {
                if name.eq_ignore_ascii_case(b"respond-async") && !seen_async {
                    seen_async = true;
                    prefer.respond_async = true;
                } else if name.eq_ignore_ascii_case(b"wait") && !seen_wait {
                    seen_wait = true;
                    // Delta-seconds: digits only; anything else is ignored.
                    if let Some(secs) = val
                        .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
                        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
                    {
                        prefer.wait = Some(Duration::from_secs(secs));
                    }
                }
            }
        }
        prefer
    }
}

/// The well-formed preferences of one `Prefer` value, in order: each name
/// and its value (unquoted, escapes undone); parameters are dropped.
fn preferences(value: &[u8]) -> Vec<(&[u8], Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut p = Cursor { s: value, at: 0 };
    loop {
        p.skip_ows();
        match p.peek() {
            None => return out,
            // An empty list element (`a, , b`).
            Some(b',') => p.at += 1,
            Some(_) => match p.preference() {
                Some(pref) => out.push(pref),
                None => p.skip_element(),
            },
        }
    }
}

/// A position in a `Prefer` value, for [`preferences`].
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    /// OWS (and BWS): spaces and tabs.
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// `1*tchar` (RFC 9110, section 5.6.2).
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, unescaped; `None` when it
    /// does not close or holds a byte it may not (a control character).
    fn quoted_string(&mut self) -> Option<Vec<u8>> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let escaped = self
                        .peek()
                        .filter(|&e| e == b'\t' || (e >= 0x20 && e != 0x7f))?;
                    self.at += 1;
                    out.push(escaped);
                }
                b'\t' | 0x20..=0x7e | 0x80..=0xff => out.push(b),
                _ => return None,
            }
        }
    }

    /// `token / quoted-string`.
    fn word(&mut self) -> Option<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted_string(),
            _ => self.token().map(<[u8]>::to_vec),
        }
    }

    /// `token [ BWS "=" BWS word ]`.
    fn pair(&mut self) -> Option<(&'a [u8], Option<Vec<u8>>)> {
        let name = self.token()?;
        let before = self.at;
        self.skip_ows();
        if self.peek() != Some(b'=') {
            self.at = before;
            return Some((name, None));
        }
        self.at += 1;
        self.skip_ows();
        Some((name, Some(self.word()?)))
    }

    /// `token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )`, which
    /// must end its list element.
    fn preference(&mut self) -> Option<(&'a [u8], Option<Vec<u8>>)> {
        let pref = self.pair()?;
        loop {
            self.skip_ows();
            match self.peek() {
                None | Some(b',') => return Some(pref),
                Some(b';') => {
                    self.at += 1;
                    self.skip_ows();
                    if !matches!(self.peek(), None | Some(b',' | b';')) {
                        self.pair()?;
                    }
                }
                Some(_) => return None,
            }
        }
    }

    /// Skips the rest of a malformed element: up to the next comma outside
    /// a quoted string (a quoted string that does not close runs to the
    /// end).
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'\\' if quoted => self.at += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }
}

/// A `Preference-Applied` value for the preferences that were honoured.
pub(crate) fn preference_applied(
    respond_async: bool,
    wait: Option<Duration>,
) -> Option<HeaderValue> {
    let value = match (respond_async, wait) {
        (false, None) => return None,
        (true, None) => "respond-async".to_string(),
        (false, Some(w)) => format!("wait={}", w.as_secs()),
        (true, Some(w)) => format!("respond-async, wait={}", w.as_secs()),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Prefer {
        let mut h = HeaderMap::new();
        h.insert("prefer", v.parse().unwrap());
        Prefer::from_headers(&h)
    }

    #[test]
    fn prefer_parses_both_preferences_case_insensitively() {
        let p = parse("Respond-Async; foo=bar, WAIT=5");
        assert!(p.respond_async);
        assert_eq!(p.wait, Some(Duration::from_secs(5)));
    }

    #[test]
    fn prefer_ignores_malformed_and_unknown_values() {
        assert_eq!(parse("wait=-1, return=minimal").wait, None);
        assert_eq!(parse("wait=+5").wait, None);
        assert_eq!(parse("wait=abc").wait, None);
        assert_eq!(parse("wait=").wait, None);
        assert_eq!(parse("wait=99999999999999999999999").wait, None);
        assert_eq!(parse("wait=\"7\"").wait, Some(Duration::from_secs(7)));
    }

    #[test]
    fn prefer_keeps_the_first_of_repeated_preferences() {
        assert_eq!(parse("wait=3, wait=9").wait, Some(Duration::from_secs(3)));
        // Even when the first is not a number.
        assert_eq!(parse("wait=soon, wait=9").wait, None);
    }

    /// Regression (found by the `prefer` fuzz target): the value was split
    /// on every comma, so a `wait=` inside another preference's quoted
    /// value was read as the client's, and the real one ignored.
    #[test]
    fn a_comma_inside_a_quoted_value_does_not_start_a_preference() {
        let p = parse(r#"foo="a, wait=9", wait=1"#);
        assert_eq!(p.wait, Some(Duration::from_secs(1)));
        assert!(!parse(r#"foo="x, respond-async""#).respond_async);
        let p = parse(r#"respond-async; foo="a; b, wait=9"; bar, wait=2"#);
        assert!(p.respond_async);
        assert_eq!(p.wait, Some(Duration::from_secs(2)));
    }

    /// Regression (found by the `prefer` fuzz target): quotes were trimmed
    /// off whatever was there, so unbalanced or doubled quotes made a wait.
    #[test]
    fn unbalanced_quotes_make_a_malformed_preference_that_is_ignored() {
        assert_eq!(parse(r#"wait="7"#).wait, None);
        assert_eq!(parse(r#"wait=""7"""#).wait, None);
        assert_eq!(parse(r#"wait ="0"#).wait, None);
        assert_eq!(parse(r#"wait="7""#).wait, Some(Duration::from_secs(7)));
        // A quote that does not close takes the rest of its header along.
        assert!(!parse(r#"foo="x, respond-async"#).respond_async);
    }

    #[test]
    fn a_malformed_preference_is_ignored_and_the_next_one_read() {
        let p = parse("wait=5=5, wait=3, respond-async");
        assert_eq!(p.wait, Some(Duration::from_secs(3)));
        assert!(p.respond_async);
        assert_eq!(parse("=5, wait=4").wait, Some(Duration::from_secs(4)));
        assert_eq!(parse("wait 5, wait=6").wait, Some(Duration::from_secs(6)));
    }

    #[test]
    fn quoted_values_take_escapes_and_whitespace_around_equals() {
        assert_eq!(parse(r#"wait="\7""#).wait, Some(Duration::from_secs(7)));
        assert_eq!(parse("wait = 8").wait, Some(Duration::from_secs(8)));
        assert_eq!(parse(r#"wait=" 8""#).wait, None);
        let p = parse(r#"Respond-Async; note="say \"hi\", then", wait=1"#);
        assert!(p.respond_async);
        assert_eq!(p.wait, Some(Duration::from_secs(1)));
        assert_eq!(parse(", ,wait=2,").wait, Some(Duration::from_secs(2)));
    }

    #[test]
    fn prefer_reads_several_headers_in_order() {
        let mut h = HeaderMap::new();
        h.append("prefer", "handling=lenient".parse().unwrap());
        h.append("prefer", "respond-async".parse().unwrap());
        assert!(Prefer::from_headers(&h).respond_async);
    }

    #[test]
    fn preference_applied_lists_what_was_honoured() {
        assert_eq!(preference_applied(false, None), None);
        assert_eq!(
            preference_applied(true, Some(Duration::from_secs(2))).unwrap(),
            "respond-async, wait=2"
        );
        assert_eq!(preference_applied(true, None).unwrap(), "respond-async");
    }

    #[test]
    fn lock_survives_a_poisoned_mutex() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn text_is_plain_utf8_with_the_status() {
        let res = text(StatusCode::BAD_REQUEST, "nope\n");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    }

    #[test]
    fn method_not_allowed_says_what_is() {
        let res = method_not_allowed("GET, HEAD");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[ALLOW], "GET, HEAD");
    }
}
