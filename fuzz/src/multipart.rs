//! A strict `multipart/form-data` reader (RFC 7578 on RFC 2046), the
//! reference the pipe's multer path is checked against: on a body it
//! accepts, the pipe must forward exactly the first file part.
//!
//! It accepts less than multer does (CRLF only, no preamble, plain quoted
//! names); on anything else it says nothing and the oracle does not apply.

use crate::script::find;

/// The first file part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    pub filename: String,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// The boundary of a `Content-Type` written exactly as
/// `multipart/form-data; boundary=B` with a plain boundary.
pub fn boundary_of(content_type: &[u8]) -> Option<&str> {
    let ct = std::str::from_utf8(content_type).ok()?;
    let b = ct.strip_prefix("multipart/form-data; boundary=")?;
    let plain = !b.is_empty()
        && b.len() <= 70
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c));
    plain.then_some(b)
}

/// `Some(first file part, if any)` when `body` is strictly well formed.
pub fn first_file(body: &[u8], boundary: &str) -> Option<Option<FilePart>> {
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut rest = body.strip_prefix(dash.as_bytes())?.strip_prefix(b"\r\n")?;
    let mut first = None;
    loop {
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        rest = &rest[head_end + 4..];
        let (filename, content_type) = part_head(head)?;
        let data_end = find(rest, delimiter.as_bytes())?;
        let data = &rest[..data_end];
        rest = &rest[data_end + delimiter.len()..];
        if first.is_none() {
            if let Some(filename) = filename {
                first = Some(FilePart {
                    filename,
                    content_type,
                    data: data.to_vec(),
                });
            }
        }
        if let Some(after) = rest.strip_prefix(b"--") {
            // The close delimiter, then nothing or one CRLF.
            return (after.is_empty() || after == b"\r\n").then_some(first);
        }
        rest = rest.strip_prefix(b"\r\n")?;
    }
}

/// `(filename, content type)` of a part head with a strict
/// `Content-Disposition: form-data; name="…"[; filename="…"]`.
fn part_head(head: &str) -> Option<(Option<String>, Option<String>)> {
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let (name, value) = line.split_once(": ")?;
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return None;
        }
        if !value.bytes().all(|c| (b' '..=b'~').contains(&c)) {
            return None;
        }
        if name.eq_ignore_ascii_case("content-disposition") {
            if disposition.is_some() {
                return None;
            }
            disposition = Some(value);
        } else if name.eq_ignore_ascii_case("content-type") {
            if content_type.is_some() {
                return None;
            }
            content_type = Some(value);
        }
    }
    let mut params = disposition?.split("; ");
    if params.next()? != "form-data" {
        return None;
    }
    let mut filename = None;
    let mut named = false;
    for param in params {
        let (key, value) = param.split_once('=')?;
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        if !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return None;
        }
        match key {
            "name" if !named => named = true,
            "filename" if filename.is_none() && !value.is_empty() => {
                filename = Some(value.to_string())
            }
            _ => return None,
        }
    }
    let content_type = match content_type {
        None => None,
        Some(ct) => {
            let (t, s) = ct.split_once('/')?;
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || b".+-".contains(&c)
                    })
            };
            if !(token(t) && token(s)) {
                return None;
            }
            Some(ct.to_string())
        }
    };
    named.then_some((filename, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_part_is_found() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XyZ\r\ncontent-disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhel\r\nlo\r\n--XyZ--\r\n";
        let part = first_file(body, "XyZ").unwrap().unwrap();
        assert_eq!(part.filename, "a.txt");
        assert_eq!(part.content_type.as_deref(), Some("text/plain"));
        assert_eq!(part.data, b"hel\r\nlo");
    }

    #[test]
    fn anything_loose_is_not_judged() {
        assert_eq!(first_file(b"preamble\r\n--b\r\n", "b"), None);
        assert_eq!(
            first_file(
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--junk",
                "b"
            ),
            None
        );
    }
}
