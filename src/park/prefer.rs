//! The `Prefer` request header (RFC 7240), as far as async request-reply
//! needs it: `respond-async` and `wait=N`.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};

/// The preferences of a request that matter to a delayed response.
///
/// Parsed leniently, as RFC 7240 asks: unknown preferences, parameters and
/// malformed values are ignored; of repeated preferences the first wins; names
/// are case-insensitive; several `Prefer` headers are read in order.
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
/// ```
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
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        let mut seen_async = false;
        let mut seen_wait = false;
        for value in headers.get_all(http::header::HeaderName::from_static("prefer")) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                // Parameters after ';' are ignored.
                let pref = item.split(';').next().unwrap_or("").trim();
                let (name, val) = match pref.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (pref, None),
                };
                if name.eq_ignore_ascii_case("respond-async") && !seen_async {
                    seen_async = true;
                    prefer.respond_async = true;
                } else if name.eq_ignore_ascii_case("wait") && !seen_wait {
                    seen_wait = true;
                    // Delta-seconds: digits only; anything else is ignored.
                    if let Some(secs) = val
                        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        prefer.wait = Some(Duration::from_secs(secs));
                    }
                }
            }
        }
        prefer
    }
}

/// A `Preference-Applied` value for the preferences that were honoured.
pub(crate) fn applied(respond_async: bool, wait: Option<Duration>) -> Option<HeaderValue> {
    let mut parts = Vec::new();
    if respond_async {
        parts.push("respond-async".to_string());
    }
    if let Some(w) = wait {
        parts.push(format!("wait={}", w.as_secs()));
    }
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}

/// The `Preference-Applied` header name.
pub(crate) const PREFERENCE_APPLIED: &str = "preference-applied";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Prefer {
        let mut h = HeaderMap::new();
        h.insert("prefer", v.parse().unwrap());
        Prefer::from_headers(&h)
    }

    #[test]
    fn parses_both_preferences_case_insensitively() {
        let p = parse("Respond-Async; foo=bar, WAIT=5");
        assert!(p.respond_async);
        assert_eq!(p.wait, Some(Duration::from_secs(5)));
    }

    #[test]
    fn ignores_malformed_and_unknown_values() {
        assert_eq!(parse("wait=-1, return=minimal").wait, None);
        assert_eq!(parse("wait=abc").wait, None);
        assert_eq!(parse("wait=").wait, None);
        assert_eq!(parse("wait=99999999999999999999999").wait, None);
        assert_eq!(parse("wait=\"7\"").wait, Some(Duration::from_secs(7)));
    }

    #[test]
    fn first_of_repeated_preferences_wins() {
        assert_eq!(parse("wait=3, wait=9").wait, Some(Duration::from_secs(3)));
    }

    #[test]
    fn several_headers_are_read_in_order() {
        let mut h = HeaderMap::new();
        h.append("prefer", "handling=lenient".parse().unwrap());
        h.append("prefer", "respond-async".parse().unwrap());
        assert!(Prefer::from_headers(&h).respond_async);
    }

    #[test]
    fn applied_lists_what_was_honoured() {
        assert_eq!(applied(false, None), None);
        assert_eq!(
            applied(true, Some(Duration::from_secs(2))).unwrap(),
            "respond-async, wait=2"
        );
    }
}
