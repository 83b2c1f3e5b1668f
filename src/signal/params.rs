//! The body of `POST /{id}`: JSON or a form, turned into one JSON value,
//! with the text of a JSON body's `data` as it was sent.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
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

/// A parsed body: its value, and for a JSON object the text of its `data`
/// member exactly as sent (the value's numbers went through `f64` and may
/// differ from the text by an ulp, or more for long integers).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) value: Value,
    raw_data: Option<String>,
}

/// Parses a body. JSON must be an object or an array at the top level (as
/// koa's strict parser wanted); an empty body is `{}`.
pub(crate) fn parse(format: Format, body: &[u8]) -> Option<Parsed> {
    let value = match format {
        Format::Json => {
            let trimmed = body.trim_ascii();
            match trimmed.first() {
                None => Value::Object(Map::new()),
                Some(b'{' | b'[') => serde_json::from_slice(trimmed).ok()?,
                Some(_) => return None,
            }
        }
        Format::Form => form(body),
    };
    let raw_data = match (format, &value) {
        (Format::Json, Value::Object(_)) => {
            raw_data(body.trim_ascii()).map(|raw| compact(raw.get()))
        }
        _ => None,
    };
    Some(Parsed { value, raw_data })
}

/// The text of the `data` member of a JSON object (the last one, as in the
/// parsed value, when the key repeats).
fn raw_data(json: &[u8]) -> Option<&RawValue> {
    struct LastData<'a>(Option<&'a RawValue>);

    impl<'de> Deserialize<'de> for LastData<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Members;

            impl<'de> Visitor<'de> for Members {
                type Value = LastData<'de>;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }

                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut data = None;
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        if key == "data" {
                            data = Some(map.next_value::<&'de RawValue>()?);
                        } else {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(LastData(data))
                }
            }

            d.deserialize_map(Members)
        }
    }

    serde_json::from_slice::<LastData<'_>>(json).ok()?.0
}

/// JSON text without the whitespace between its tokens (an SSE event's
/// data stays one line); the tokens, strings and numbers, as they were.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
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

/// Picks `token`, `data` and `cid` out of a parsed body. `data` is the
/// text a JSON body sent, else the value as JSON.
pub(crate) fn outgoing(parsed: &Parsed) -> Outgoing<'_> {
    let body = &parsed.value;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .and_then(Id::parse);
    let data = match body.get("data") {
        None | Some(Value::Null) => None,
        Some(data) => Some(parsed.raw_data.clone().unwrap_or_else(|| data.to_string())),
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

    /// The outgoing signal of a JSON body.
    fn outgoing_of(value: &Value) -> Outgoing<'static> {
        let body = value.to_string().into_bytes();
        let parsed = parse(Format::Json, &body).expect("a JSON object");
        let parsed: &'static Parsed = Box::leak(Box::new(parsed));
        outgoing(parsed)
    }

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
        assert_eq!(parse(Format::Json, b" ").map(|p| p.value), Some(json!({})));
        assert_eq!(
            parse(Format::Json, b"[1]").map(|p| p.value),
            Some(json!([1]))
        );
        assert!(parse(Format::Json, b"5").is_none());
        assert!(parse(Format::Json, b"\"x\"").is_none());
        assert!(parse(Format::Json, b"{").is_none());
    }

    #[test]
    fn form_brackets_nest_and_values_are_strings() {
        let v = parse(Format::Form, b"token=t&data[x]=555&data[y][z]=1")
            .unwrap()
            .value;
        assert_eq!(
            v,
            json!({"token": "t", "data": {"x": "555", "y": {"z": "1"}}})
        );
    }

    #[test]
    fn form_repeated_keys_and_empty_brackets_make_arrays() {
        let v = parse(Format::Form, b"a=1&a=2&b[]=x&b[]=y").unwrap().value;
        assert_eq!(v, json!({"a": ["1", "2"], "b": ["x", "y"]}));
    }

    #[test]
    fn form_keys_with_unclosed_or_leading_brackets_are_literal() {
        let v = parse(Format::Form, b"a[b=1&[c]=2&d[e]f=3").unwrap().value;
        assert_eq!(v, json!({"a[b": "1", "[c]": "2", "d": {"e": {"f": "3"}}}));
    }

    #[test]
    fn form_nesting_stops_at_the_depth_limit() {
        let v = parse(Format::Form, b"a[1][2][3][4][5][6][7]=x")
            .unwrap()
            .value;
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
            assert_eq!(outgoing_of(&body).data.as_deref(), Some(data));
        }
        assert_eq!(outgoing_of(&json!({"data": null})).data, None);
        assert_eq!(outgoing_of(&json!({})).data, None);
    }

    #[test]
    fn cid_shapes() {
        assert_eq!(outgoing_of(&json!({})).target, Target::All);
        assert_eq!(outgoing_of(&json!({"cid": ""})).target, Target::All);
        assert_eq!(
            outgoing_of(&json!({"cid": "ab"})).target,
            Target::Peer("ab")
        );
        assert_eq!(outgoing_of(&json!({"cid": 5})).target, Target::Invalid);
    }

    #[test]
    fn token_must_be_a_string_shaped_like_an_id() {
        assert!(outgoing_of(&json!({"token": 5})).token.is_none());
        assert!(outgoing_of(&json!({"token": "toString"})).token.is_none());
        let t = "0123456789abcdef0123456789abcdef";
        assert!(outgoing_of(&json!({"token": t})).token.is_some());
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    fn data_of(body: &str) -> Option<String> {
        let parsed = parse(Format::Json, body.as_bytes()).expect("a JSON body");
        outgoing(&parsed).data
    }

    /// Regression (found by the `sse_roundtrip` fuzz target): `data` was
    /// parsed into an `f64` and written again, and serde_json's parsing is
    /// not correctly rounded: `1.0000000000000005e20` reached the peers as
    /// `1.0000000000000003e+20`, and a long integer as a float.
    #[test]
    fn numbers_in_data_pass_through_as_sent() {
        for n in [
            "1.0000000000000005e20",
            "0.1",
            "1E300",
            "-0",
            "1.50",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            let body = format!(r#"{{"token":"t","data":{{"n":{n}}}}}"#);
            assert_eq!(data_of(&body), Some(format!(r#"{{"n":{n}}}"#)), "{n}");
        }
    }

    #[test]
    fn strings_keep_their_escapes_and_whitespace_between_tokens_goes() {
        let body = "{\"data\" : [ \"a \\\" b\" ,\n\t\"\\u00e9\" ] }";
        assert_eq!(data_of(body).as_deref(), Some(r#"["a \" b","\u00e9"]"#));
    }

    #[test]
    fn a_repeated_data_key_takes_the_last_as_the_value_does() {
        let body = r#"{"data":1,"d\u0061ta":2.50}"#;
        assert_eq!(data_of(body).as_deref(), Some("2.50"));
        assert_eq!(data_of(r#"{"data":1,"data":null}"#), None);
    }

    #[test]
    fn form_data_is_the_value_as_json() {
        let parsed = parse(Format::Form, b"data[x]=1.0").expect("a form");
        assert_eq!(outgoing(&parsed).data.as_deref(), Some(r#"{"x":"1.0"}"#));
    }
}
