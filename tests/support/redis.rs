//! A real `redis-server` for the backplane tests: on a free port, without
//! persistence (`--save '' --appendonly no`), stopped on drop; `stop` and
//! `start` again on the same port (empty) for the failure tests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or `None` (with a message) when `redis-server` is not
    /// installed and `CI` is not set; under CI a missing server fails.
    pub async fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed (CI must install it)"
            );
            eprintln!("SKIPPED: redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        Some(server)
    }

    /// The URL for a client.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again, empty) on its port; returns when it
    /// answers `PING`.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        loop {
            if let Ok(reply) = self.try_command("PING").await {
                if reply.starts_with("+PONG") {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn try_command(&self, inline: &str) -> std::io::Result<String> {
        let mut tcp = TcpStream::connect(self.addr()).await?;
        tcp.write_all(format!("{inline}\r\n").as_bytes()).await?;
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await?;
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&reply) {
                return Ok(String::from_utf8_lossy(&reply).into_owned());
            }
        }
    }

    /// Sends one inline command (`FLUSHALL`, `DEBUG SLEEP 1`) and returns
    /// the raw reply.
    /// Script calls (`EVAL`, `EVALSHA`) this server has answered so far.
    #[allow(dead_code)] // not every test file that uses Redis needs it
    pub async fn script_calls(&self) -> u64 {
        self.calls(&["evalsha", "eval"]).await
    }

    /// Calls of `commands` (lower case) this server has answered so far.
    #[allow(dead_code)] // not every test file that uses Redis needs it
    pub async fn calls(&self, commands: &[&str]) -> u64 {
        let stats = self.command("INFO commandstats").await;
        stats
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                if !commands.contains(&name) {
                    return None;
                }
                rest.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    pub async fn command(&self, inline: &str) -> String {
        self.try_command(inline).await.expect("redis command")
    }
}

/// Whether `reply` holds a whole simple reply (a line) or bulk string.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply.first() != Some(&b'$') {
        return true;
    }
    let len: i64 = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    len < 0 || reply.len() >= end + 2 + len as usize + 2
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `scenario` on a current-thread runtime, on a thread with an 8 MiB
/// stack: in a debug build the frames of a long Redis scenario (the
/// client's reconnections, an async body with many awaits) overflow a test
/// thread's 2 MiB.
#[allow(dead_code)] // not every test file that uses Redis needs it
pub fn on_big_stack<F, Fut>(scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(scenario());
        })
        .unwrap()
        .join()
        .unwrap();
}
