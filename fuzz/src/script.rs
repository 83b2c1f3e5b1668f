//! The request-script format of the service targets: readable seeds, and
//! inputs that libFuzzer's byte mutations keep mostly meaningful.
//!
//! ```text
//! POST /?a=1
//! content-type: text/plain
//! x-fuzz-chunks: 3
//!
//! hello
//! ===
//! GET /$ID
//! ```
//!
//! Requests are separated by a line `===`. A request is a head (the first
//! line `METHOD TARGET`, then `name: value` lines), an empty line, and the
//! body. Lines may end in `\r\n`. See `fuzz/README.md` for the `x-fuzz-*`
//! directives and the `$VARS`.

/// At most this many requests run per input (the rest is ignored).
pub const MAX_REQUESTS: usize = 12;
/// At most this many frames per request body.
pub const MAX_CHUNKS: usize = 64;
/// The longest virtual sleep a directive may ask for.
pub const MAX_SLEEP_MS: u64 = 120_000;

/// One request of a script, before variables are substituted.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Frames the body is split into (at least 1).
    pub chunks: usize,
    /// The body ends with an error after its bytes: a client that went away
    /// in the middle of its upload.
    pub cut: bool,
    /// Virtual milliseconds to wait before sending.
    pub sleep_ms: u64,
}

/// Parses a script; never fails (any bytes are some script).
pub fn parse(data: &[u8]) -> Vec<Step> {
    split(data, b"\n===\n")
        .into_iter()
        .take(MAX_REQUESTS)
        .map(parse_step)
        .collect()
}

fn parse_step(block: &[u8]) -> Step {
    let (head, body) = match find_head_end(block) {
        Some((end, skip)) => (&block[..end], &block[end + skip..]),
        None => (block, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let first = lines.next().unwrap_or(b"");
    let (method, target) = match first.iter().position(|&b| b == b' ') {
        Some(i) => (&first[..i], &first[i + 1..]),
        None => (first, &b"/"[..]),
    };
    let mut step = Step {
        method: if method.is_empty() {
            b"GET".to_vec()
        } else {
            method.to_vec()
        },
        target: target.to_vec(),
        body: body.to_vec(),
        chunks: 1,
        ..Step::default()
    };
    for line in lines {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], trim(&line[i + 1..])),
            None => (line, &b""[..]),
        };
        let name = trim(name).to_ascii_lowercase();
        match name.as_slice() {
            b"x-fuzz-chunks" => {
                step.chunks = number(value).clamp(1, MAX_CHUNKS as u64) as usize;
            }
            b"x-fuzz-cut" => step.cut = true,
            b"x-fuzz-sleep" => step.sleep_ms = number(value).min(MAX_SLEEP_MS),
            b"" => {}
            _ => step.headers.push((name, value.to_vec())),
        }
    }
    step
}

/// The end of the head: the first empty line, as `(index, separator length)`.
fn find_head_end(block: &[u8]) -> Option<(usize, usize)> {
    let lf = find(block, b"\n\n").map(|i| (i, 2));
    let crlf = find(block, b"\n\r\n").map(|i| (i, 3));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn number(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// The first index of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits on every occurrence of `sep`.
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = find(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// Replaces every `$NAME` of `vars` in `input` (longest names first, so
/// `$TOKEN2` is not read as `$TOKEN` followed by `2`).
pub fn substitute(input: &[u8], vars: &[(&str, String)]) -> Vec<u8> {
    if !input.contains(&b'$') {
        return input.to_vec();
    }
    let mut sorted: Vec<&(&str, String)> = vars.iter().collect();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    'outer: while i < input.len() {
        if input[i] == b'$' {
            for (name, value) in &sorted {
                let name = name.as_bytes();
                if input[i + 1..].starts_with(name) {
                    out.extend_from_slice(value.as_bytes());
                    i += 1 + name.len();
                    continue 'outer;
                }
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_requests_separated_by_a_line_of_equals_signs() {
        let steps = parse(b"POST /x\ncontent-type: a/b\nx-fuzz-chunks: 3\n\nhello\n===\nGET /$ID");
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].method, b"POST");
        assert_eq!(steps[0].target, b"/x");
        assert_eq!(
            steps[0].headers,
            vec![(b"content-type".to_vec(), b"a/b".to_vec())]
        );
        assert_eq!(steps[0].body, b"hello");
        assert_eq!(steps[0].chunks, 3);
        assert_eq!(steps[1].target, b"/$ID");
    }

    #[test]
    fn crlf_heads_and_binary_bodies_survive() {
        let steps = parse(b"PUT /f\r\nx-fuzz-cut\r\n\r\n\r\n--b\r\n");
        assert_eq!(steps[0].body, b"\r\n--b\r\n");
        assert!(steps[0].cut);
    }

    #[test]
    fn longer_variable_names_win() {
        let vars = [("TOKEN", "a".to_string()), ("TOKEN2", "b".to_string())];
        assert_eq!(substitute(b"$TOKEN2/$TOKEN/$X", &vars), b"b/a/$X");
    }
}
