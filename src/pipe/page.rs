//! The web page at `GET /`: send a file or some text from a browser, with
//! progress, and receive one. Plain HTML and JavaScript served from the
//! crate (`page/index.html`): no build step, nothing fetched elsewhere.
//! In the Piping mode it sends to a path; in the ephemeral mode it reserves
//! a link, shows it to share, then sends. `GET /noscript` (Piping mode) is
//! an HTML form that works without JavaScript.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::Response;

use crate::body::Body;

const INDEX: &str = include_str!("page/index.html");

/// Which flow the page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Piping,
    Ephemeral { reservations: bool },
}

fn html(body: String, csp: String) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(CONTENT_SECURITY_POLICY, csp);
    }
    res
}

/// The page at `GET /`.
pub(super) fn index(mode: Mode) -> Response<Body> {
    let (name, reservations) = match mode {
        Mode::Piping => ("piping", false),
        Mode::Ephemeral { reservations } => ("ephemeral", reservations),
    };
    let page = INDEX
        .replace("@MODE@", name)
        .replace("@RESERVATIONS@", if reservations { "on" } else { "off" });
    // Its own script and style only; it talks to this server alone.
    let csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
               connect-src 'self'; img-src 'self' blob:; form-action 'self'; \
               base-uri 'none'; frame-ancestors 'none'";
    html(page, csp.to_owned())
}

/// The value of `name` in a query string, percent-decoded (`+` is a space,
/// as forms send it).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| super::headers::percent_decode(&v.replace('+', " ")))
    })
}

/// `s` escaped for HTML text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /noscript?path=P&mode=file|text&n=N`: step 1 picks the path (a
/// `GET` form back to this page), step 2 posts the file or text to it as
/// `multipart/form-data`. The browser then shows the sender's lines.
pub(super) fn noscript(query: Option<&str>) -> Response<Body> {
    let path = query_value(query, "path").unwrap_or_default();
    let text_mode = query_value(query, "mode").as_deref() == Some("text");
    let n = query_value(query, "n")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 1);
    let nonce = crate::id::random_bytes::<16>()
        .map(|b| crate::id::base64url(&b))
        .unwrap_or_else(|_| "none".to_owned());
    let escaped = escape(path.trim_start_matches('/'));
    let action = match n {
        Some(n) => format!("{escaped}?n={n}"),
        None => escaped.clone(),
    };
    let disabled = if path.is_empty() { " disabled" } else { "" };
    let (checked_file, checked_text) = if text_mode {
        ("", " checked")
    } else {
        (" checked", "")
    };
    let input = if text_mode {
        format!("<textarea name=\"input_text\" cols=\"40\" rows=\"8\"{disabled}></textarea>")
    } else {
        format!("<input type=\"file\" name=\"input_file\"{disabled}>")
    };
    let n_value = n.map(|n| n.to_string()).unwrap_or_else(|| "1".to_owned());
    let page = format!(
        "<!DOCTYPE html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">
<title>Pipe without JavaScript</title>
<style nonce=\"{nonce}\">
  body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; }}
  h3 {{ margin: 1.5em 0 0.4em; }}
</style>
</head>
<body>
<h2>Pipe without JavaScript</h2>
<form method=\"GET\">
  <h3>Step 1: the path, what to send, and how many receivers</h3>
  <input name=\"path\" value=\"{escaped}\" size=\"30\" placeholder=\"e.g. my-secret-path\">
  <label><input type=\"radio\" name=\"mode\" value=\"file\"{checked_file}> a file</label>
  <label><input type=\"radio\" name=\"mode\" value=\"text\"{checked_text}> some text</label>
  <input name=\"n\" type=\"number\" min=\"1\" value=\"{n_value}\" size=\"3\">
  <input type=\"submit\" value=\"Apply\">
</form>
<form method=\"POST\" action=\"{action}\" enctype=\"multipart/form-data\">
  <h3>Step 2: choose what to send</h3>
  {input}
  <h3>Step 3: send</h3>
  <input type=\"submit\" value=\"Send\"{disabled}>
</form>
<p>The receiver asks for the same path: <code>curl URL/{escaped}</code>.</p>
</body>
</html>
"
    );
    let csp = format!("default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'");
    html(page, csp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_page_says_its_mode() {
        let page = INDEX.replace("@MODE@", "piping");
        assert!(page.contains("data-mode=\"piping\""));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_value(Some("path=a%20b+c&mode=text"), "path").as_deref(),
            Some("a b c")
        );
        assert_eq!(query_value(Some("x=1"), "path"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("\"><script>'&"),
            "&quot;&gt;&lt;script&gt;&#39;&amp;"
        );
    }
}
