//! The example binaries, as `cargo test` builds them: run to their end, or
//! started on 127.0.0.1:0 with the address they print.
//!
//! Run alone (`--test NAME`), cargo does not rebuild the examples: build them
//! first (`cargo build --all-features --examples`).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::within;

/// A running example; killed when dropped.
pub struct Example {
    pub child: Child,
    pub addr: SocketAddr,
}

/// The built example `name`; fails the test, saying how to build it, when
/// it is not there.
pub fn example_path(name: &str) -> PathBuf {
    // target/<profile>/deps/<test>-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --all-features` (it builds the examples) or \
         `cargo build --all-features --examples` first",
        path.display()
    );
    path
}

/// Example `name` with `--addr 127.0.0.1:0`, no stdin, stdout piped (for
/// [`listen`]), stderr dropped, killed when dropped; add arguments, then
/// [`listen`].
pub fn example(name: &str) -> Command {
    let mut cmd = Command::new(example_path(name));
    cmd.args(["--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Starts `cmd` and reads the address it bound from its first line of
/// stdout, which must be `listening on {scheme}://ADDR`.
pub async fn listen(cmd: &mut Command, scheme: &str) -> Example {
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the example to listen", lines.next_line())
        .await
        .unwrap()
        .expect("the example printed nothing");
    let addr = line
        .strip_prefix(&format!("listening on {scheme}://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    Example { child, addr }
}

/// Runs example `name` with `args` to its end (for command lines it
/// refuses, and `--help`).
pub async fn run<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Output {
    within(
        "the example to exit",
        Command::new(example_path(name))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
}
