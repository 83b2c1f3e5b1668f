//! An event-stream parser that follows the WHATWG HTML spec,
//! "9.2.6 Interpreting an event stream", step by step: an independent
//! reading of what the crate's encoder writes.

/// A dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type (`message` when none was given).
    pub event_type: String,
    pub data: String,
    /// The last event ID at dispatch (it persists across events).
    pub last_event_id: String,
}

/// What a whole stream parses to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Every comment line's text (after the colon, one leading space
    /// removed), in order.
    pub comments: Vec<String>,
    /// The last valid `retry` value, in milliseconds.
    pub retry: Option<u128>,
    /// The last event ID after the stream (set even by events that were
    /// not dispatched).
    pub last_event_id: String,
}

/// Parses a complete stream. An event without its closing empty line is
/// discarded, as at the end of a real stream.
pub fn parse(stream: &[u8]) -> Parsed {
    // "Streams must be decoded using the UTF-8 decode algorithm", which
    // strips one leading BOM and replaces invalid sequences.
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Parsed::default();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut rest = text;
    // Lines end with CRLF, LF or CR; the text after the last end is not a
    // line yet.
    while let Some(i) = rest.find(['\r', '\n']) {
        let line = &rest[..i];
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            // Dispatch.
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(Event {
                event_type: if event_type.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
                last_event_id: out.last_event_id.clone(),
            });
            event_type.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.comments
                .push(comment.strip_prefix(' ').unwrap_or(comment).to_string());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => out.last_event_id = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits beyond u128 are an absurd delay; keep the max.
                out.retry = Some(value.parse().unwrap_or(u128::MAX));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_parse() {
        let p = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(p.events[0].data, "YHOO\n+2\n10");
        assert_eq!(p.events[0].event_type, "message");
        let p = parse(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n");
        assert_eq!(p.comments, vec!["test stream"]);
        assert_eq!(p.events[0].last_event_id, "1");
        assert_eq!(p.events[1].data, "second event");
        assert_eq!(p.events[1].last_event_id, "");
        assert_eq!(p.events[2].data, " third event");
        let p = parse(b"data\n\ndata\ndata\n\ndata:");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].data, "");
        assert_eq!(p.events[1].data, "\n");
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let p = parse(b"event: x\nretry: 15\n\n");
        assert!(p.events.is_empty());
        assert_eq!(p.retry, Some(15));
    }
}
