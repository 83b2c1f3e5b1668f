//! `pipe_load callgrind`: the server's user-space instructions per GB of
//! one curl → pipe → curl transfer, counted by callgrind (see
//! `load::callgrind`), so that a change to the per-frame path can be
//! measured on a busy machine, where CPU seconds cannot.
//!
//! The server (`serve-pipe`, or `serve-piping` with `--protocol piping`)
//! runs under `valgrind --tool=callgrind`. One small transfer warms it up;
//! the counters are zeroed while the measured transfer's sender waits for
//! its receiver, and dumped once the receiver has every byte. What is
//! counted is the whole transfer as the server sees it: both connections,
//! the pipe, hyper, tokio, the allocator and libc, but not the kernel's
//! work inside system calls (one instruction each).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use load::callgrind::Callgrind;

use super::BLOCK;

/// Runs the measure with the options in `args` (after `callgrind`).
pub(crate) fn run(args: &[String]) {
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let bytes: u64 = opt("--bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(512 << 20);
    let dir = PathBuf::from(opt("--out").map_or("target/callgrind", String::as_str));
    let (mode, path) = match opt("--protocol").map_or("ephemeral", String::as_str) {
        "ephemeral" => ("serve-pipe", None),
        "piping" => ("serve-piping", Some("/zeros")),
        other => {
            eprintln!("--protocol: ephemeral or piping, not {other:?}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&dir).expect("--out");
    let out = dir.join(format!("{mode}.out"));
    for entry in std::fs::read_dir(&dir).expect("--out").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{mode}.out"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Callgrind::command(&out, exe, [mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("valgrind (apt-get install valgrind)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server address");
    let addr = line.trim().to_owned();
    // The server's frame counts (its `FrameCount` hooks print one line per
    // transfer), passed on to this process's stderr.
    let (frames_tx, frames_rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(frames) = line
                .split_once(" bytes in ")
                .and_then(|(_, rest)| rest.split_once(" frames"))
                .and_then(|(n, _)| n.parse::<u64>().ok())
            {
                let _ = frames_tx.send(frames);
            }
        }
    });
    let mut cg = Callgrind::attach(child.id(), &out);

    println!(
        "## {mode} under callgrind: curl -T - (chunked) → pipe → curl -o /dev/null, {bytes} bytes\n"
    );
    transfer(&addr, path, 4 << 20, || {});
    // (The Piping mode does not count frames.)
    let counted = Duration::from_secs(10);
    let _ = frames_rx.recv_timeout(counted);
    let mut zeroed = Ok(());
    transfer(&addr, path, bytes, || zeroed = cg.zero());
    zeroed.expect("callgrind_control -z");
    let dump = cg.dump().expect("callgrind_control -d");
    let frames = frames_rx.recv_timeout(counted).ok();
    drop(child.stdin.take());
    let _ = child.wait();

    let per_gb = dump.instructions as f64 / (bytes as f64 / 1e9);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| server instructions (user space) | {} |",
        dump.instructions
    );
    println!("| per GB (10⁹ bytes) | {:.3e} |", per_gb);
    if let Some(frames) = frames.filter(|&n| n > 0) {
        println!(
            "| upload frames | {frames} ({} bytes each) |",
            bytes / frames
        );
        println!("| per frame | {} |", dump.instructions / frames);
    }
    println!("| dump | {} |", dump.file.display());
}

/// One curl → pipe → curl transfer of `bytes` zeros; `armed` runs once the
/// sender waits for its receiver, before the receiver starts. `path`:
/// the Piping mode's path (`None`: the ephemeral mode, where the sender's
/// first line is the download URL). Returns what the sender's curl printed
/// after its first line.
pub(super) fn transfer(addr: &str, path: Option<&str>, bytes: u64, armed: impl FnOnce()) -> String {
    let upload = format!("http://{addr}{}", path.unwrap_or("/zeros"));
    let mut sender = Command::new("curl")
        .args(["-sS", "-N", "-T", "-", &upload])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut out = BufReader::new(sender.stdout.take().expect("stdout"));
    let mut stdin = sender.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let block = vec![0u8; BLOCK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            if stdin.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
    });
    let mut first = String::new();
    out.read_line(&mut first).expect("the sender's first line");
    let download = match path {
        None => first.trim().to_owned(),
        Some(_) => upload,
    };
    armed();
    let receiver = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &download,
        ])
        .output()
        .expect("curl receiver");
    let got: u64 = String::from_utf8_lossy(&receiver.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(got, bytes, "the receiver got {got} bytes");
    let _ = feeder.join();
    let mut tail = String::new();
    let _ = out.read_to_string(&mut tail);
    let _ = sender.wait();
    tail
}
