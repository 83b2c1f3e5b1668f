//! Instruction counts of a child process run under
//! `valgrind --tool=callgrind`: a measure of CPU work that does not depend
//! on what else the machine runs (other builds, the client, the kernel's
//! scheduling), unlike CPU seconds.
//!
//! Callgrind counts the instructions the process executes in user space
//! (its own code, the Rust libraries, libc); system calls are counted as
//! one instruction each, not the kernel's work inside them. So a count is
//! a proxy for *user* CPU time. Under callgrind the program runs about 50
//! times slower, one thread at a time.
//!
//! ```no_run
//! use load::callgrind::Callgrind;
//!
//! # fn main() -> std::io::Result<()> {
//! let out = std::path::Path::new("target/callgrind/run.out");
//! let mut child = Callgrind::command(out, "my-server", ["--serve"]).spawn()?;
//! let mut cg = Callgrind::attach(child.id(), out);
//! // ... warm up ...
//! cg.zero()?;
//! // ... the work to count ...
//! let dump = cg.dump()?;
//! println!("{} instructions, details in {}", dump.instructions, dump.file.display());
//! # child.kill()
//! # }
//! ```

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A process running under callgrind, whose counters can be zeroed and
/// dumped while it runs (`callgrind_control`).
#[derive(Debug)]
pub struct Callgrind {
    pid: u32,
    out: PathBuf,
    dumps: u32,
}

/// What one dump counted since the last zero.
#[derive(Debug, Clone)]
pub struct Dump {
    /// User-space instructions executed (callgrind's `Ir`).
    pub instructions: u64,
    /// The dump file, for `callgrind_annotate`.
    pub file: PathBuf,
}

impl Callgrind {
    /// `valgrind --tool=callgrind --callgrind-out-file=OUT PROGRAM ARGS...`,
    /// to be spawned by the caller (with the stdio it needs).
    pub fn command<I, S>(out: &Path, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg("--quiet")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(program)
            .args(args);
        cmd
    }

    /// The process `pid`, started with [`command`](Self::command) and the
    /// same `out` file.
    pub fn attach(pid: u32, out: &Path) -> Callgrind {
        Callgrind {
            pid,
            out: out.to_owned(),
            dumps: 0,
        }
    }

    /// Sets the counters to zero.
    ///
    /// # Errors
    ///
    /// `callgrind_control` failed (not installed, or the process is gone).
    pub fn zero(&mut self) -> io::Result<()> {
        self.control("-z")
    }

    /// Writes the counters since the last [`zero`](Self::zero) to a file of
    /// their own (`OUT.1`, `OUT.2`, ...) and reads their total.
    ///
    /// # Errors
    ///
    /// `callgrind_control` failed, or the dump has no total.
    pub fn dump(&mut self) -> io::Result<Dump> {
        self.control("-d")?;
        self.dumps += 1;
        let file = PathBuf::from(format!("{}.{}", self.out.display(), self.dumps));
        let text = std::fs::read_to_string(&file)?;
        let instructions = parse_total(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no totals in {}", file.display()),
            )
        })?;
        Ok(Dump { instructions, file })
    }

    fn control(&self, what: &str) -> io::Result<()> {
        let status = Command::new("callgrind_control")
            .arg(what)
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "callgrind_control {what} {} failed: {status}",
                self.pid
            )))
        }
    }
}

/// The first event (`Ir`) of the `totals:` line of a callgrind file, or of
/// its `summary:` line.
fn parse_total(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_first_event_of_the_totals_line() {
        let dump =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=main\n1 5\ntotals: 123456\n";
        assert_eq!(parse_total(dump), Some(123_456));
        let summary_only = "events: Ir Dr\nsummary: 42 7\n";
        assert_eq!(parse_total(summary_only), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
    }
}
