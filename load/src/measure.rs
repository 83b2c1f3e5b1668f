//! The one place the harnesses read `/proc` (Linux): a process's resident
//! memory, CPU time and open descriptors, the CPU time of this process's
//! threads by name, and the open-files limit.
//!
//! ```no_run
//! use load::measure::Process;
//!
//! # fn main() -> std::io::Result<()> {
//! let child = std::process::Command::new("sleep").arg("1").spawn()?;
//! let server = Process::pid(child.id());
//! println!("{} KiB, {:?} of CPU, {} fds", server.rss_kib()?, server.cpu_time()?, server.open_fds()?);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// A process whose resources are read from `/proc/<pid>`.
#[derive(Debug, Clone)]
pub struct Process {
    dir: PathBuf,
}

impl Process {
    /// This process (`/proc/self`).
    pub fn this() -> Process {
        Process {
            dir: PathBuf::from("/proc/self"),
        }
    }

    /// The process `pid`, typically a child started with
    /// `std::process::Command`.
    pub fn pid(pid: u32) -> Process {
        Process {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    ///
    /// # Errors
    ///
    /// The process is gone, or the file has no `VmRSS` line.
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(self.dir.join("status"))?;
        parse_rss_kib(&status).ok_or_else(|| invalid("no VmRSS in /proc/<pid>/status"))
    }

    /// User plus system CPU time (`utime` + `stime` of `/proc/<pid>/stat`),
    /// to the resolution of a clock tick (10 ms on Linux).
    ///
    /// # Errors
    ///
    /// The process is gone, or the file is not as expected.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        Ok(self.cpu_times()?.total())
    }

    /// User and system CPU time apart (`utime` and `stime` of
    /// `/proc/<pid>/stat`), to the resolution of a clock tick.
    ///
    /// # Errors
    ///
    /// The process is gone, or the file is not as expected.
    pub fn cpu_times(&self) -> io::Result<CpuTimes> {
        let stat = std::fs::read_to_string(self.dir.join("stat"))?;
        let (user, system) =
            parse_cpu_ticks(&stat).ok_or_else(|| invalid("bad /proc/<pid>/stat"))?;
        let time = |ticks: u64| {
            Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec())
        };
        Ok(CpuTimes {
            user: time(user),
            system: time(system),
        })
    }

    /// How many file descriptors are open (entries of `/proc/<pid>/fd`).
    ///
    /// # Errors
    ///
    /// The process is gone, or is not ours to look into.
    pub fn open_fds(&self) -> io::Result<usize> {
        Ok(std::fs::read_dir(self.dir.join("fd"))?.count())
    }
}

/// The CPU time of a process, user and system apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time spent running the process's own code.
    pub user: Duration,
    /// Time the kernel spent on the process's behalf (system calls, the
    /// network stack).
    pub system: Duration,
}

impl CpuTimes {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// The CPU time of this process's threads whose name starts with `prefix`
/// (time on the CPU from `/proc/self/task/*/schedstat`, in nanoseconds, so
/// much finer than [`Process::cpu_time`]). Name the threads of a runtime
/// with `tokio::runtime::Builder::thread_name` to measure that runtime alone.
///
/// The kernel adds a thread's time at each scheduler tick and whenever the
/// thread leaves the CPU, so the time of a thread that is running right now
/// may lag by up to a tick.
///
/// # Errors
///
/// `/proc/self/task` cannot be read. Threads that end while it is read are
/// skipped.
pub fn threads_cpu_time(prefix: &str) -> io::Result<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let named = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|name| name.starts_with(prefix));
        if !named {
            continue;
        }
        let on_cpu = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        nanos += on_cpu.unwrap_or(0);
    }
    Ok(Duration::from_nanos(nanos))
}

/// The soft limit on open files of this process (children inherit it), from
/// `/proc/self/limits`; `u64::MAX` when unlimited.
///
/// # Errors
///
/// The file cannot be read or has no `Max open files` line.
pub fn open_files_limit() -> io::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    parse_open_files_limit(&limits).ok_or_else(|| invalid("no Max open files in /proc/self/limits"))
}

/// Fails with a message saying which `ulimit -n` to run when the open-files
/// limit is below `needed`.
///
/// # Errors
///
/// The limit is too low, or cannot be read.
pub fn ensure_open_files(needed: u64) -> io::Result<()> {
    let limit = open_files_limit()?;
    if limit >= needed {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "the open files limit is {limit} and this run needs {needed}: run `ulimit -n {}` first",
        needed.next_multiple_of(1024)
    )))
}

/// `getconf CLK_TCK`, the unit of `/proc/<pid>/stat` times (100 on Linux).
fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `VmRSS:    1234 kB` → 1234.
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `(utime, stime)` in clock ticks from a `/proc/<pid>/stat` line.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself, so count from the last ')': state is field 3,
    // utime 14 and stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`.
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (w) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    25 7 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some((25, 7)));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn rss_is_read_in_kib_from_the_status_file() {
        let status = "Name:\tload\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tkthread\n"), None);
    }

    #[test]
    fn the_soft_open_files_limit_may_be_unlimited() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some(u64::MAX));
    }

    #[test]
    fn this_process_has_memory_descriptors_and_cpu_time() {
        let me = Process::this();
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.open_fds().unwrap() >= 3);
        let before = me.cpu_time().unwrap();
        assert!(me.cpu_time().unwrap() >= before);
    }

    #[test]
    fn a_process_that_is_gone_is_an_error_not_a_zero() {
        // Pid 0 never has a /proc entry.
        assert!(Process::pid(0).rss_kib().is_err());
        assert!(Process::pid(0).open_fds().is_err());
    }

    #[test]
    fn named_threads_are_measured_and_unknown_names_are_zero() {
        // The kernel adds a thread's time on the CPU at a scheduler tick or
        // when the thread leaves the CPU, so the probe gives the CPU up
        // (a short sleep) until its time shows.
        let probe = std::thread::Builder::new()
            .name("measure-probe".into())
            .spawn(|| {
                for _ in 0..1000 {
                    let time = threads_cpu_time("measure-probe").unwrap();
                    if time > Duration::ZERO {
                        return time;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Duration::ZERO
            })
            .unwrap();
        assert!(probe.join().unwrap() > Duration::ZERO);
        assert_eq!(
            threads_cpu_time("no-such-thread-name").unwrap(),
            Duration::ZERO
        );
    }
}
