//! Server-Sent Events: event encoding and keep-alive comments.
//!
//! An [`Event`] is encoded into the bytes of one SSE event, ready to be
//! written to a `text/event-stream` response (for example with
//! [`Completion::write`](crate::Completion::write)). Keep-alive is a
//! [`Heartbeat`] of the core that writes the comment line `:\n\n`, which every
//! `EventSource` ignores: [`Heartbeat::sse`] builds one.
//!
//! # Encoding rules
//!
//! | field | written as | rule |
//! |---|---|---|
//! | comment | `: text` | one comment line per line of the text |
//! | `event` | `event: name` | CR and LF are removed (they would end the field) |
//! | `id` | `id: value` | CR, LF and NUL are removed (an id with NUL is ignored by browsers) |
//! | `retry` | `retry: ms` | whole milliseconds |
//! | `data` | `data: line` | one `data:` line per line of the data; `\r\n`, `\r` and `\n` all split lines |
//!
//! Fields are written in the order comment, `event`, `id`, `retry`, `data`,
//! and the event ends with an empty line. A space always follows the colon,
//! so a value that starts with a space keeps it (the parser strips exactly
//! one). Data set to the empty string is one empty `data:` line, which a
//! browser dispatches as an event with empty data; an event with no data at
//! all is not dispatched by browsers (use it for `retry` or comments only).
//!
//! # Keep-alive
//!
//! Proxies close connections that stay quiet: Heroku after 55 s, AWS ALB and
//! nginx after 60 s by default, Cloudflare after 100 s.
//! [`Heartbeat::DEFAULT_INTERVAL`] (15 s) stays well under all of them. A keep-alive write to a client that
//! has gone away without a FIN also fails sooner or later, which is how such
//! clients are found.
//!
//! # Examples
//!
//! ```
//! use delayed_response::sse::Event;
//! use delayed_response::Heartbeat;
//!
//! let bytes = Event::new().event("signal").data("line 1\nline 2").encode();
//! assert_eq!(&bytes[..], b"event: signal\ndata: line 1\ndata: line 2\n\n");
//!
//! let hb = Heartbeat::sse(Heartbeat::DEFAULT_INTERVAL);
//! assert_eq!(&hb.payload()[..], b":\n\n");
//! ```

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(doc)]
use crate::delayed::Heartbeat;

/// One Server-Sent Event, built field by field and [encoded](Event::encode).
///
/// See the [module docs](self) for the encoding rules.
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Event {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
    data: Option<String>,
}

impl Event {
    /// An empty event (it encodes to a lone empty line).
    pub fn new() -> Self {
        Event::default()
    }

    /// Sets the event name (`event:`). CR and LF are removed.
    pub fn event(mut self, name: impl Into<String>) -> Self {
        let mut name = name.into();
        name.retain(|c| c != '\r' && c != '\n');
        self.event = Some(name);
        self
    }

    /// Sets the event id (`id:`), which a browser sends back in
    /// `Last-Event-ID` when it reconnects. CR, LF and NUL are removed.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let mut id = id.into();
        id.retain(|c| c != '\r' && c != '\n' && c != '\0');
        self.id = Some(id);
        self
    }

    /// Sets the reconnection delay a browser should use (`retry:`).
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = Some(delay);
        self
    }

    /// Sets the data; a multi-line value becomes several `data:` lines.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the data to `value` as one line of JSON.
    ///
    /// # Errors
    ///
    /// The error of `serde_json` when `value` cannot be serialized (a map
    /// with non-string keys, a failing `Serialize` impl).
    #[cfg(feature = "json")]
    pub fn json_data<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(self.data(serde_json::to_string(value)?))
    }

    /// Sets a comment, written before the fields; one comment line per line.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// The bytes of this event on the wire, ending with the empty line that
    /// dispatches it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        if let Some(comment) = &self.comment {
            for line in lines(comment) {
                put_field(&mut out, "", line);
            }
        }
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.as_millis().to_string());
        }
        if let Some(data) = &self.data {
            for line in lines(data) {
                put_field(&mut out, "data", line);
            }
        }
        out.put_u8(b'\n');
        out.freeze()
    }

    fn encoded_len_hint(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 8);
        len(&self.comment) + len(&self.event) + len(&self.id) + len(&self.data) + 24
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event", &self.event)
            .field("id", &self.id)
            .field("retry", &self.retry)
            .field("data", &self.data)
            .field("comment", &self.comment)
            .finish()
    }
}

/// Splits on `\r\n`, `\r` and `\n`, as an SSE parser does. An empty string is
/// one empty line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(i) => {
                let skip = if text[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[i + skip..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: Event) -> String {
        String::from_utf8(e.encode().to_vec()).unwrap()
    }

    #[test]
    fn data_is_split_on_every_kind_of_newline() {
        let e = Event::new().data("a\nb\r\nc\rd");
        assert_eq!(enc(e), "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn trailing_newline_in_data_gives_an_empty_last_line() {
        assert_eq!(enc(Event::new().data("a\n")), "data: a\ndata: \n\n");
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(enc(Event::new().data("")), "data: \n\n");
    }

    #[test]
    fn fields_come_in_a_fixed_order() {
        let e = Event::new()
            .data("x")
            .retry(Duration::from_millis(1500))
            .id("7")
            .event("join")
            .comment("hi");
        assert_eq!(enc(e), ": hi\nevent: join\nid: 7\nretry: 1500\ndata: x\n\n");
    }

    #[test]
    fn newlines_cannot_break_out_of_event_or_id() {
        let e = Event::new().event("a\nb\r").id("1\n2\0");
        assert_eq!(enc(e), "event: ab\nid: 12\n\n");
    }

    #[test]
    fn multi_line_comment_is_several_comment_lines() {
        assert_eq!(enc(Event::new().comment("a\nb")), ": a\n: b\n\n");
    }

    #[test]
    fn a_leading_space_in_data_survives_parsing() {
        // The parser strips one space after the colon; ours is that one.
        assert_eq!(enc(Event::new().data(" x")), "data:  x\n\n");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_data_is_one_line() {
        let e = Event::new()
            .event("signal")
            .json_data(&serde_json::json!({"a": "x\ny"}))
            .unwrap();
        assert_eq!(enc(e), "event: signal\ndata: {\"a\":\"x\\ny\"}\n\n");
    }
}
