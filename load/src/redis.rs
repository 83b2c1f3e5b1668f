//! A `redis-server` for the harnesses that run several instances on one
//! Redis, and its command counts (`INFO commandstats`), read over a plain
//! TCP connection (inline commands).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child on a free port, without persistence; killed on
/// drop.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts one and waits (up to 10 s) until it answers `PING`.
    ///
    /// # Errors
    ///
    /// `redis-server` is not installed, or did not answer.
    pub fn start() -> io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = RedisServer { port, child };
        let url = server.url();
        let deadline = Instant::now() + Duration::from_secs(10);
        while command(&url, "PING").map_or(true, |r| !r.starts_with("+PONG")) {
            if Instant::now() > deadline {
                return Err(io::Error::other("redis-server did not answer PING"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of a `redis://host:port[/db]` URL.
fn host_port(url: &str) -> io::Result<&str> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| io::Error::other("a redis://host:port URL"))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// Sends one inline command to the Redis at `url` and returns the reply: a
/// line, or a bulk string's contents.
///
/// # Errors
///
/// Redis cannot be reached, or answered something else.
pub fn command(url: &str, inline: &str) -> io::Result<String> {
    let tcp = TcpStream::connect(host_port(url)?)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    (&tcp).write_all(format!("{inline}\r\n").as_bytes())?;
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line);
    };
    let len: usize = len
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("unexpected reply {line:?}")))?;
    let mut body = vec![0u8; len + 2];
    reader.read_exact(&mut body)?;
    body.truncate(len);
    String::from_utf8(body).map_err(io::Error::other)
}

/// Calls per command so far (`INFO commandstats`), without `info` itself.
///
/// # Errors
///
/// As [`command`].
pub fn command_calls(url: &str) -> io::Result<BTreeMap<String, u64>> {
    let stats = command(url, "INFO commandstats")?;
    Ok(stats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_string(), calls))
        })
        .collect())
}

/// The calls in `after` that were not in `before`, per command (those
/// with none left out).
pub fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_takes_the_address_of_a_url() {
        assert_eq!(
            host_port("redis://127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379"
        );
        assert_eq!(host_port("redis://u:p@h:1/2").unwrap(), "h:1");
        assert!(host_port("http://h:1").is_err());
    }

    #[test]
    fn calls_between_counts_the_new_calls() {
        let before = BTreeMap::from([("evalsha".to_string(), 3), ("ping".to_string(), 1)]);
        let after = BTreeMap::from([
            ("evalsha".to_string(), 13),
            ("ping".to_string(), 1),
            ("publish".to_string(), 2),
        ]);
        assert_eq!(
            calls_between(&before, &after),
            BTreeMap::from([("evalsha".to_string(), 10), ("publish".to_string(), 2)])
        );
    }
}
