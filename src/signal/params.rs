//! The body of `POST /{id}`: JSON or a form, turned into one JSON value.

use serde_json::{Map, Value};

use super::id::Id;
use super::swarm::{Outgoing, Target};

/// The body formats a POST may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Form,
}

/// The JSON types koa's body parser accepted, and the form type. The media
/// type (before any `;`) is compared case-insensitively.
pub(crate) fn format(content_type: Option<&[u8]>) -> Option<Format> {
    let value = std::str::from_utf8(content_type?).ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json"
        | "application/json-patch+json"
        | "application/vnd.api+json"
        | "application/csp-report"
        | "application/ld+json" => Some(Format::Json),
        "application/x-www-form-urlencoded" => Some(Format::Form),
        _ => None,
    }
}

/// Parses a body. JSON must be an object or an array at the top level (as
/// koa's strict parser wanted); an empty body is `{}`.
pub(crate) fn parse(format: Format, body: &[u8]) -> Option<Value> {
    match format {
        Format::Json => {
            let trimmed = body.trim_ascii();
            match trimmed.first() {
                None => Some(Value::Object(Map::new())),
                Some(b'{' | b'[') => serde_json::from_slice(trimmed).ok(),
                Some(_) => None,
            }
        }
        Format::Form => Some(form(body)),
    }
}

/// The deepest bracket nesting a form key may use; deeper brackets stay
/// part of the last key (as `qs` does beyond its depth).
const MAX_FORM_DEPTH: usize = 5;

/// `application/x-www-form-urlencoded` with `qs`-style brackets: `a[b]=1`
/// is `{"a": {"b": "1"}}`, `a[]=1&a[]=2` and `a=1&a=2` are `{"a": ["1", "2"]}`.
/// Every value is a string. A key whose brackets do not close, or that
/// starts with one, is taken as it is; brackets past [`MAX_FORM_DEPTH`] stay
/// together as one last key.
fn form(body: &[u8]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_urlencoded::parse(body) {
        let path = key_path(&key);
        insert(&mut root, &path, value.into_owned());
    }
    root
}

#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Key(&'a str),
    Push,
}

fn key_path(key: &str) -> Vec<Seg<'_>> {
    let Some(open) = key.find('[').filter(|&i| i > 0) else {
        return vec![Seg::Key(key)];
    };
    let mut path = vec![Seg::Key(&key[..open])];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        if path.len() > MAX_FORM_DEPTH {
            break;
        }
        let Some(close) = inner.find(']') else {
            return vec![Seg::Key(key)];
        };
        path.push(match &inner[..close] {
            "" => Seg::Push,
            k => Seg::Key(k),
        });
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() {
        // Brackets past the depth, or text after the last bracket: one more
        // literal key (as `qs` does), rather than dropping it.
        path.push(Seg::Key(rest));
    }
    path
}

fn insert(slot: &mut Value, path: &[Seg<'_>], value: String) {
    let Some((seg, rest)) = path.split_first() else {
        // A repeated key collects its values into an array.
        match slot {
            Value::Null => *slot = Value::String(value),
            Value::Array(items) => items.push(Value::String(value)),
            Value::String(_) => {
                let first = slot.take();
                *slot = Value::Array(vec![first, Value::String(value)]);
            }
            // `a[b]=1&a=2`: the object wins, as in qs.
            _ => {}
        }
        return;
    };
    match seg {
        Seg::Key(key) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                let child = map.entry(key.to_string()).or_insert(Value::Null);
                insert(child, rest, value);
            }
        }
        Seg::Push => {
            match slot {
                Value::Array(_) => {}
                Value::String(_) => {
                    let first = slot.take();
                    *slot = Value::Array(vec![first]);
                }
                _ => *slot = Value::Array(Vec::new()),
            }
            if let Value::Array(items) = slot {
                items.push(Value::Null);
                if let Some(child) = items.last_mut() {
                    insert(child, rest, value);
                }
            }
        }
    }
}

/// Picks `token`, `data` and `cid` out of a parsed body.
pub(crate) fn outgoing(body: &Value) -> Outgoing<'_> {
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .and_then(Id::parse);
    let data = match body.get("data") {
        None | Some(Value::Null) => None,
        Some(data) => Some(data.to_string()),
    };
    let target = match body.get("cid") {
        None | Some(Value::Null) => Target::All,
        Some(Value::String(s)) if s.is_empty() => Target::All,
        Some(Value::String(s)) => Target::Peer(s),
        Some(_) => Target::Invalid,
    };
    Outgoing {
        token,
        data,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_are_matched_case_insensitively_before_the_semicolon() {
        assert_eq!(
            format(Some(b"Application/JSON; charset=utf-8")),
            Some(Format::Json)
        );
        assert_eq!(format(Some(b"application/ld+json")), Some(Format::Json));
        assert_eq!(
            format(Some(b"application/x-www-form-urlencoded;charset=UTF-8")),
            Some(Format::Form)
        );
        assert_eq!(format(Some(b"text/plain")), None);
        assert_eq!(format(None), None);
    }

    #[test]
    fn json_must_be_an_object_or_array_and_empty_is_an_empty_object() {
        assert_eq!(parse(Format::Json, b" "), Some(json!({})));
        assert_eq!(parse(Format::Json, b"[1]"), Some(json!([1])));
        assert_eq!(parse(Format::Json, b"5"), None);
        assert_eq!(parse(Format::Json, b"\"x\""), None);
        assert_eq!(parse(Format::Json, b"{"), None);
    }

    #[test]
    fn form_brackets_nest_and_values_are_strings() {
        let v = parse(Format::Form, b"token=t&data[x]=555&data[y][z]=1").unwrap();
        assert_eq!(
            v,
            json!({"token": "t", "data": {"x": "555", "y": {"z": "1"}}})
        );
    }

    #[test]
    fn form_repeated_keys_and_empty_brackets_make_arrays() {
        let v = parse(Format::Form, b"a=1&a=2&b[]=x&b[]=y").unwrap();
        assert_eq!(v, json!({"a": ["1", "2"], "b": ["x", "y"]}));
    }

    #[test]
    fn form_keys_with_unclosed_or_leading_brackets_are_literal() {
        let v = parse(Format::Form, b"a[b=1&[c]=2&d[e]f=3").unwrap();
        assert_eq!(v, json!({"a[b": "1", "[c]": "2", "d": {"e": {"f": "3"}}}));
    }

    #[test]
    fn form_nesting_stops_at_the_depth_limit() {
        let v = parse(Format::Form, b"a[1][2][3][4][5][6][7]=x").unwrap();
        let expected = json!({"a": {"1": {"2": {"3": {"4": {"5": {"[6][7]": "x"}}}}}}});
        assert_eq!(v, expected);
    }

    #[test]
    fn falsy_data_is_still_data() {
        // koa-signal bug: `0`, `false` and `""` were "no data" (400).
        for (body, data) in [
            (json!({"data": 0}), "0"),
            (json!({"data": false}), "false"),
            (json!({"data": ""}), "\"\""),
        ] {
            assert_eq!(outgoing(&body).data.as_deref(), Some(data));
        }
        assert_eq!(outgoing(&json!({"data": null})).data, None);
        assert_eq!(outgoing(&json!({})).data, None);
    }

    #[test]
    fn cid_shapes() {
        assert_eq!(outgoing(&json!({})).target, Target::All);
        assert_eq!(outgoing(&json!({"cid": ""})).target, Target::All);
        assert_eq!(outgoing(&json!({"cid": "ab"})).target, Target::Peer("ab"));
        assert_eq!(outgoing(&json!({"cid": 5})).target, Target::Invalid);
    }

    #[test]
    fn token_must_be_a_string_shaped_like_an_id() {
        assert!(outgoing(&json!({"token": 5})).token.is_none());
        assert!(outgoing(&json!({"token": "toString"})).token.is_none());
        let t = "0123456789abcdef0123456789abcdef";
        assert!(outgoing(&json!({"token": t})).token.is_some());
    }
}
