//! An SSE client over a raw `TcpStream`: it de-chunks the body as it
//! arrives, parses events, counts comment lines (keep-alives), and tells a
//! stream that ended cleanly (final chunk) from one that was cut.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{find, within, PATIENCE};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

/// An open `text/event-stream` response.
pub struct SseStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    /// Raw bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet parsed into events.
    body: Vec<u8>,
    /// `Some(true)`: final chunk seen; `Some(false)`: connection closed first.
    ended: Option<bool>,
    /// Comment lines seen so far (keep-alives).
    pub comments: usize,
}

impl SseStream {
    /// `GET path` with `Accept: text/event-stream`; reads the head.
    pub async fn open(addr: SocketAddr, path: &str) -> SseStream {
        let stream = TcpStream::connect(addr).await.unwrap();
        SseStream::on(stream, path).await
    }

    /// Like [`open`](Self::open), on a socket the caller connected.
    pub async fn on(stream: TcpStream, path: &str) -> SseStream {
        SseStream::on_with(stream, path, "").await
    }

    /// Like [`open`](Self::open), with extra header lines (each ending in
    /// `\r\n`).
    pub async fn open_with(addr: SocketAddr, path: &str, headers: &str) -> SseStream {
        let stream = TcpStream::connect(addr).await.unwrap();
        SseStream::on_with(stream, path, headers).await
    }

    /// Like [`on`](Self::on), with extra header lines.
    pub async fn on_with(mut stream: TcpStream, path: &str, headers: &str) -> SseStream {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let head_end = within("an SSE response head", async {
            loop {
                if let Some(i) = find(&raw, b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed before the head: {raw:?}");
                raw.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        raw.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        SseStream {
            status,
            headers,
            stream,
            raw,
            body: Vec::new(),
            ended: None,
            comments: 0,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The underlying socket (to drop it, or set linger).
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        while self.ended.is_none() {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size_str = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.trim(), 16).expect("bad chunk size");
            if size == 0 {
                self.ended = Some(true);
                return;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// Parses one event block out of `body`, if a whole one is there.
    /// Comment-only blocks are counted and skipped.
    fn parse(&mut self) -> Option<SseEvent> {
        loop {
            let end = find(&self.body, b"\n\n")?;
            let block = String::from_utf8(self.body[..end].to_vec()).unwrap();
            self.body.drain(..end + 2);
            let mut event = SseEvent {
                event: "message".into(),
                data: String::new(),
                id: None,
            };
            let mut data_lines = Vec::new();
            for line in block.split('\n') {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "event" => event.event = value.to_string(),
                    "data" => data_lines.push(value.to_string()),
                    "id" => event.id = Some(value.to_string()),
                    _ => {}
                }
            }
            if data_lines.is_empty() {
                continue;
            }
            event.data = data_lines.join("\n");
            return Some(event);
        }
    }

    /// Reads more bytes; false when the connection is closed.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next event, or `None` when the stream ended (see [`ended`](Self::ended)).
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        within("the next SSE event", async {
            loop {
                self.dechunk();
                if let Some(event) = self.parse() {
                    return Some(event);
                }
                if self.ended.is_some() {
                    return None;
                }
                if !self.fill().await {
                    self.ended = Some(false);
                }
            }
        })
        .await
    }

    /// The next event, which must be named `name`; returns its data as JSON.
    pub async fn expect(&mut self, name: &str) -> serde_json::Value {
        match self.next_event().await {
            Some(e) if e.event == name => e.json(),
            other => panic!("expected a {name:?} event, got {other:?}"),
        }
    }

    /// Reads until the stream ends with no further events; returns true if
    /// it ended cleanly (final chunk), false if the connection was cut.
    pub async fn end(&mut self) -> bool {
        if let Some(e) = self.next_event().await {
            panic!("expected the end of the stream, got {e:?}");
        }
        self.ended.unwrap_or(false)
    }

    /// Reads until `n` comment lines in total have been seen.
    pub async fn comments_until(&mut self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.comments < n {
                self.dechunk();
                if let Some(e) = self.parse() {
                    panic!("expected only comments, got {e:?}");
                }
                if self.comments >= n {
                    break;
                }
                assert!(self.ended.is_none(), "stream ended");
                if !self.fill().await {
                    self.ended = Some(false);
                }
            }
        })
        .await
        .expect("timed out waiting for comments");
    }
}
