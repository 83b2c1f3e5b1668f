//! URL and header helpers: download URLs, the upload's declared metadata,
//! the `Referer` check, and the download's `Content-Disposition`.

use http::header::{
    HeaderValue, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, REFERER,
};
use http::request::Parts;

/// The URL of `path` (an id, or `reserve/…`) on this pipe: under the base
/// URL when one is set, else under `http://{Host}`.
pub(super) fn url(base_url: Option<&str>, parts: &Parts, path: &str) -> String {
    if let Some(base) = base_url {
        return format!("{base}/{path}");
    }
    let host = host(parts);
    // `server::Server` marks requests that came over TLS.
    let scheme = match parts.extensions.get::<http::uri::Scheme>() {
        Some(scheme) if *scheme == http::uri::Scheme::HTTPS => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/{path}")
}

/// The host a request named (`Host`, else the URI's authority), for the
/// URLs the pipe hands out: `localhost` when there is none or it could
/// change the URL's shape.
pub(super) fn host(parts: &Parts) -> &str {
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .unwrap_or("localhost")
}

/// The download's type for a raw upload: the upload's, except the form type
/// `curl --data-binary` sends when told nothing, which says nothing about
/// the file (`application/octet-stream` is used then).
pub(super) fn raw_content_type(declared: Option<&str>) -> Option<String> {
    declared
        .filter(|ct| {
            !ct.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
        .map(str::to_owned)
}

pub(super) fn expects_continue(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

pub(super) fn is_multipart(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

pub(super) fn declared_length(parts: &Parts) -> Result<Option<u64>, &'static str> {
    match parts.headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or("malformed Content-Length"),
    }
}

/// Does the request carry the required `Referer` (exactly) or its `Origin`?
pub(super) fn referer_ok(parts: &Parts, required: &str) -> bool {
    let referer = parts.headers.get(REFERER).and_then(|v| v.to_str().ok());
    if referer == Some(required) {
        return true;
    }
    let origin = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, origin_of(required)) {
        (Some(origin), Some(required)) => origin.eq_ignore_ascii_case(required),
        _ => false,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme_end + end])
}

pub(super) fn set_download_headers(
    headers: &mut http::HeaderMap,
    content_type: Option<&str>,
    filename: Option<&str>,
) {
    let content_type = content_type
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    let disposition = content_disposition(filename);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
}

/// `attachment` with the file's base name, quoted (RFC 6266), and in
/// `filename*` (RFC 5987) when it is not plain ASCII.
pub(super) fn content_disposition(filename: Option<&str>) -> String {
    let Some(name) = filename
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
        .filter(|f| !f.is_empty() && *f != "." && *f != "..")
    else {
        return "attachment".to_owned();
    };
    // Control characters have no business in a file name.
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_empty() {
        return "attachment".to_owned();
    }
    let mut fallback = String::with_capacity(name.len() + 2);
    let mut ascii = true;
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            ' '..='~' => fallback.push(c),
            _ => {
                ascii = false;
                fallback.push('_');
            }
        }
    }
    if ascii {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Decodes `%XX` escapes; malformed escapes stay as they are, invalid UTF-8
/// becomes U+FFFD.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_quotes_and_escapes() {
        assert_eq!(content_disposition(None), "attachment");
        assert_eq!(
            content_disposition(Some("a b.txt")),
            "attachment; filename=\"a b.txt\""
        );
        assert_eq!(
            content_disposition(Some("we\"ird.txt")),
            "attachment; filename=\"we\\\"ird.txt\""
        );
        // A Windows path (old browsers sent one) keeps its base name only.
        assert_eq!(
            content_disposition(Some("C:\\Users\\me\\a.txt")),
            "attachment; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition(Some("../../etc/passwd")),
            "attachment; filename=\"passwd\""
        );
        assert_eq!(
            content_disposition(Some("résumé.pdf")),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        assert_eq!(
            content_disposition(Some("a\r\nb")),
            "attachment; filename=\"ab\""
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://h:9/x?y"), Some("http://h:9"));
        assert_eq!(origin_of("http://h"), Some("http://h"));
        assert_eq!(origin_of("nope"), None);
    }
}
