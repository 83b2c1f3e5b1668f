//! Soak harness: serves every example service in-process and drives it with
//! well-behaved and misbehaving clients over loopback for `--duration`,
//! then checks that file descriptors, tasks and live heap bytes came back
//! to their baseline, that nothing panicked, and that the p99 latency of
//! well-behaved clients under load stayed within 2× of its unloaded value.
//!
//! ```text
//! cargo run --release -- --duration 60s     # CI
//! cargo run --release -- --duration 600s    # the 10-minute local soak
//! ```
//!
//! Exits 0 when every check passed, 1 with the reasons otherwise, 2 on a
//! usage error. See `soak/README.md`.

mod alloc;
mod rude;
mod servers;
mod shim;
mod stats;
mod well;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

static PANICS: AtomicU64 = AtomicU64::new(0);
static WARNINGS: AtomicU64 = AtomicU64::new(0);

struct Args {
    duration: Duration,
    seed: u64,
    heap_tolerance: isize,
    max_p99_ratio: f64,
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "soak: {problem}\nusage: soak [--duration 60s|10m] [--seed N] [--heap-tolerance-kib N] [--max-p99-ratio X]"
    );
    ExitCode::from(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "m" | "min" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        seed: 0x5eed,
        // Retained capacity (maps and pools that keep their high-water
        // mark) settles at +100–240 KiB with every service served; a leak
        // of even 100 bytes per request over the ~10,000 requests of a
        // 60 s run is 1 MiB, so 1 MiB keeps leaks visible without flaking.
        heap_tolerance: 1024 * 1024,
        max_p99_ratio: 2.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--duration" => {
                args.duration = parse_duration(&value).ok_or(format!("bad duration {value:?}"))?;
            }
            "--seed" => args.seed = value.parse().map_err(|_| format!("bad seed {value:?}"))?,
            "--heap-tolerance-kib" => {
                let kib: isize = value
                    .parse()
                    .map_err(|_| format!("bad tolerance {value:?}"))?;
                args.heap_tolerance = kib * 1024;
            }
            "--max-p99-ratio" => {
                args.max_p99_ratio = value.parse().map_err(|_| format!("bad ratio {value:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.duration < Duration::from_secs(10) {
        return Err("--duration must be at least 10s".into());
    }
    Ok(args)
}

/// Counts the WARN and ERROR events of the crate (and everything else).
struct CountWarnings;

impl<S: tracing::Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            WARNINGS.fetch_add(1, Relaxed);
        }
    }
}

/// What the resource checks compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resources {
    fds: usize,
    tasks: usize,
    heap: isize,
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The inodes of this process's open sockets.
fn socket_inodes() -> std::collections::HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Default::default();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The TCP sockets open now that were not at the baseline: local and
/// remote port and state, from `/proc/net/tcp` (which server kept which
/// connection, when the fd check fails).
fn new_sockets(base: &std::collections::HashSet<u64>, addrs: &servers::Addrs) -> Vec<String> {
    let now = socket_inodes();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let name = |port: u16| {
        [
            ("pipe", addrs.pipe),
            ("signal", addrs.signal),
            ("jobs", addrs.jobs),
            ("long_poll", addrs.long_poll),
            ("hub", addrs.hub),
        ]
        .iter()
        .find(|(_, a)| a.port() == port)
        .map_or_else(|| port.to_string(), |(n, _)| (*n).to_string())
    };
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state), Some(inode)) =
            (f.get(1), f.get(2), f.get(3), f.get(9))
        else {
            continue;
        };
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        if !now.contains(&inode) || base.contains(&inode) {
            continue;
        }
        let port = |a: &str| {
            a.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .unwrap_or(0)
        };
        out.push(format!(
            "{} <- {} (state {state})",
            name(port(local)),
            port(remote)
        ));
    }
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(problem) => return usage(&problem),
    };
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Relaxed);
        default_hook(info);
    }));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .with(CountWarnings.with_filter(tracing_subscriber::filter::LevelFilter::WARN))
        .init();
    let reasons = match run(&args) {
        Ok(()) => Vec::new(),
        Err(reasons) => reasons,
    };
    for r in &reasons {
        println!("soak: FAILED: {r}");
    }
    // The last line, a plain count of the checks that CI reads.
    println!(
        "soak: {} passed, {} failed",
        CHECKS.saturating_sub(reasons.len()),
        reasons.len()
    );
    if reasons.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(args: &Args) -> Result<(), Vec<String>> {
    let started = Instant::now();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-server")
        .enable_all()
        .build()
        .map_err(|e| vec![format!("server runtime: {e}")])?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-client")
        .enable_all()
        .build()
        .map_err(|e| vec![format!("client runtime: {e}")])?;
    let servers = server_rt
        .block_on(servers::Servers::start())
        .map_err(|e| vec![format!("cannot listen on 127.0.0.1: {e}")])?;
    let addrs = servers.addrs;
    let lat = Arc::new(well::Latencies::new());
    let failures = Arc::new(well::Failures::new());
    let rude_stats = Arc::new(rude::RudeStats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let unloaded = (args.duration / 6).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let loaded = args.duration - unloaded;
    println!(
        "soak: {} s ({} s unloaded, {} s loaded), seed {}, servers pipe {} signal {} jobs {} long_poll {} hub {}",
        args.duration.as_secs(),
        unloaded.as_secs(),
        loaded.as_secs(),
        args.seed,
        addrs.pipe,
        addrs.signal,
        addrs.jobs,
        addrs.long_poll,
        addrs.hub
    );

    // Warm-up: every behaviour once, so that lazily built state (statics,
    // thread-locals, maps' first capacity) is in the baseline.
    client_rt.block_on(async {
        for i in 0..std::env::var("SOAK_WARMUPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
        {
            if let Err(e) = well::once(addrs, &lat).await {
                eprintln!("warm-up {i}: {e}");
                failures.add(format!("warm-up: {e}"));
            }
        }
        rude::each_once(addrs, &rude_stats, args.seed).await;
    });
    let tasks = || server_rt.metrics().num_alive_tasks();
    let measure = || Resources {
        fds: open_fds(),
        tasks: tasks(),
        heap: alloc::live_bytes(),
    };
    // The park store drops expired results when it is next used; a status
    // request does that (as real traffic would).
    let poke = || {
        client_rt.block_on(async {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addrs.jobs).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = s
                    .write_all(b"GET /jobs/AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
                    .await;
                let mut sink = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
            }
        })
    };
    let base = settle(&measure, &poke, None, Duration::from_secs(20), 0);
    let base_sockets = socket_inodes();
    println!(
        "baseline: {} fds, {} server tasks, {} KiB live heap",
        base.fds,
        base.tasks,
        base.heap / 1024
    );

    // Unloaded, then loaded: the well-behaved clients run throughout.
    lat.phase.store(1, Relaxed);
    let users: Vec<_> = (0..well::CLIENTS)
        .map(|me| {
            client_rt.spawn(well::client(
                me,
                addrs,
                lat.clone(),
                failures.clone(),
                stop.clone(),
            ))
        })
        .collect();
    std::thread::sleep(unloaded);
    lat.phase.store(2, Relaxed);
    let rude_task = client_rt.spawn(rude::spawner(
        addrs,
        rude_stats.clone(),
        stop.clone(),
        args.seed,
    ));
    let mut peak = measure();
    let load_end = Instant::now() + loaded;
    while Instant::now() < load_end {
        std::thread::sleep(Duration::from_millis(500).min(load_end - Instant::now()));
        let now = measure();
        peak.fds = peak.fds.max(now.fds);
        peak.tasks = peak.tasks.max(now.tasks);
        peak.heap = peak.heap.max(now.heap);
    }
    stop.store(true, Relaxed);
    let clients_done = client_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            for u in users {
                let _ = u.await;
            }
            let _ = rude_task.await;
        })
        .await
        .is_ok()
    });
    // Connection tasks of the clients end just after their last reader or
    // writer is dropped (or aborted): give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client_rt.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let client_tasks = client_rt.metrics().num_alive_tasks();

    // Settle: wait for the counts to come back (held responses end at their
    // TTLs, heartbeats find the vanished peers), within a bound.
    let end = settle(
        &measure,
        &poke,
        Some(base),
        Duration::from_secs(
            std::env::var("SOAK_SETTLE_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40),
        ),
        args.heap_tolerance,
    );
    let (hub_channels, hub_connections) = servers.hub_counts();
    println!(
        "after settling: the hub has {hub_channels} channels with subscribers, {hub_connections} connections"
    );

    if end.fds != base.fds {
        for s in new_sockets(&base_sockets, &addrs) {
            println!("soak: a socket open after settling: {s}");
        }
    }

    // Shut down: every server task must end.
    server_rt.block_on(servers.stop());
    let deadline = Instant::now() + Duration::from_secs(15);
    while tasks() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let tasks_after_stop = tasks();

    // Report.
    println!("well-behaved clients:");
    println!(
        "  {} scenarios, {} failed",
        failures.scenarios.load(Relaxed),
        failures.count.load(Relaxed)
    );
    for (i, kind) in well::KINDS.iter().enumerate() {
        let u = &lat.by_phase[1][i];
        let l = &lat.by_phase[2][i];
        println!(
            "  {kind:16} unloaded n={:6} p50 {:>9.3?} p99 {:>9.3?} | loaded n={:6} p50 {:>9.3?} p99 {:>9.3?} max {:>9.3?}",
            u.count(),
            u.quantile(0.5),
            u.quantile(0.99),
            l.count(),
            l.quantile(0.5),
            l.quantile(0.99),
            l.max()
        );
    }
    let p99_unloaded = lat.merged(1).quantile(0.99);
    let p99_loaded = lat.merged(2).quantile(0.99);
    let ratio = p99_loaded.as_secs_f64() / p99_unloaded.as_secs_f64().max(1e-9);
    println!(
        "  p99 all kinds: unloaded {p99_unloaded:.3?}, loaded {p99_loaded:.3?}, ratio {ratio:.2}"
    );
    println!(
        "misbehaving clients (at most {} at once):",
        rude::MAX_AT_ONCE
    );
    for (i, kind) in rude::KINDS.iter().enumerate() {
        println!(
            "  {kind:20} {:6} started, {} stuck",
            rude_stats.started[i].load(Relaxed),
            rude_stats.stuck[i].load(Relaxed)
        );
    }
    println!(
        "  slow headers answered {}, cut {} (header read timeout {:?}), misjudged {}; pipelines short {}; 429s seen {}; connections not from {}: {}",
        rude_stats.slow_served.load(Relaxed),
        rude_stats.slow_cut.load(Relaxed),
        servers::HEADER_READ_TIMEOUT,
        rude_stats.slow_wrong.load(Relaxed),
        rude_stats.pipeline_short.load(Relaxed),
        rude_stats.limited.load(Relaxed),
        rude::CLIENT_IP,
        rude::UNBOUND.load(Relaxed),
    );
    println!(
        "resources: baseline {} fds / {} tasks / {} KiB; peak under load {} / {} / {} KiB; after settling {} / {} / {} KiB (heap {:+} KiB); server tasks after shutdown {}",
        base.fds,
        base.tasks,
        base.heap / 1024,
        peak.fds,
        peak.tasks,
        peak.heap / 1024,
        end.fds,
        end.tasks,
        end.heap / 1024,
        (end.heap - base.heap) / 1024,
        tasks_after_stop
    );
    println!(
        "panics {}, warnings logged {}, took {} s",
        PANICS.load(Relaxed),
        WARNINGS.load(Relaxed),
        started.elapsed().as_secs()
    );

    let failed = failures.count.load(Relaxed);
    let stuck: u64 = rude_stats.stuck.iter().map(|s| s.load(Relaxed)).sum();
    let short = rude_stats.pipeline_short.load(Relaxed);
    let misjudged = rude_stats.slow_wrong.load(Relaxed);
    let panics = PANICS.load(Relaxed);
    let samples = lat.merged(1).count().min(lat.merged(2).count());
    let checks: [(bool, String); CHECKS] = [
        (
            failed == 0,
            format!(
                "{failed} well-behaved scenarios failed: {:?}",
                failures.messages()
            ),
        ),
        (
            clients_done && client_tasks == 0,
            format!("clients did not finish ({client_tasks} client tasks alive)"),
        ),
        (
            stuck == 0,
            format!(
                "{stuck} misbehaving clients were still running after {:?}",
                rude::LIFETIME
            ),
        ),
        (
            short == 0,
            format!("{short} pipelined connections missed answers"),
        ),
        (
            misjudged == 0,
            format!(
                "{misjudged} slow heads were answered though they took over the header read timeout by 1 s, or cut though they took under it by 0.5 s"
            ),
        ),
        (
            end.fds == base.fds,
            format!("fds: {} after settling, baseline {}", end.fds, base.fds),
        ),
        (
            end.tasks == base.tasks,
            format!(
                "server tasks: {} after settling, baseline {}",
                end.tasks, base.tasks
            ),
        ),
        (
            end.heap <= base.heap + args.heap_tolerance,
            format!(
                "live heap: {} KiB after settling, baseline {} KiB (tolerance {} KiB)",
                end.heap / 1024,
                base.heap / 1024,
                args.heap_tolerance / 1024
            ),
        ),
        (
            tasks_after_stop == 0,
            format!("{tasks_after_stop} server tasks outlived the shutdown"),
        ),
        (panics == 0, format!("{panics} panics")),
        (
            samples >= 100 && ratio <= args.max_p99_ratio,
            if samples < 100 {
                "too few latency samples to compare".to_string()
            } else {
                format!(
                    "p99 under load {p99_loaded:.3?} is {ratio:.2}× the unloaded {p99_unloaded:.3?} (limit {}×)",
                    args.max_p99_ratio
                )
            },
        ),
    ];
    let mut reasons = Vec::new();
    for (ok, reason) in checks {
        if !ok {
            reasons.push(reason);
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// How many checks a run makes.
const CHECKS: usize = 11;

/// Waits until the resources are back to `base` (fds and tasks exactly,
/// heap within `tolerance`), or, with no `base`, until they stop changing
/// for a second; gives up after `limit`. Returns the last measurement.
fn settle(
    measure: &dyn Fn() -> Resources,
    poke: &dyn Fn(),
    base: Option<Resources>,
    limit: Duration,
    tolerance: isize,
) -> Resources {
    let deadline = Instant::now() + limit;
    let mut last = measure();
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        poke();
        let now = measure();
        let done = match base {
            Some(b) => now.fds == b.fds && now.tasks == b.tasks && now.heap <= b.heap + tolerance,
            None => {
                let same = now.fds == last.fds
                    && now.tasks == last.tasks
                    && (now.heap - last.heap).abs() < 4096;
                if !same {
                    stable_since = Instant::now();
                }
                stable_since.elapsed() >= Duration::from_secs(1)
            }
        };
        last = now;
        if done || Instant::now() >= deadline {
            return last;
        }
    }
}
