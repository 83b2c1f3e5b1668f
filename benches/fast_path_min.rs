//! Fast path, minimum of interleaved batches: the same three functions as
//! `benches/fast_path.rs` (`bare`, `wait`, `start` on a ready 11-byte
//! result), timed in batches of 20,000 calls that take turns (the order
//! rotating), 60 batches each; it prints the minimum, first quartile and
//! median time per call.
//!
//! On a machine shared with other busy processes criterion's means move by
//! ±20 % from run to run; the minimum of many short interleaved batches
//! barely moves, which is what a before/after comparison needs.
//!
//! Run with `cargo bench --bench fast_path_min` (about 5 s).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use delayed_response::DelayedResponse;
use http::Response;
use http_body_util::Full;

const HELLO: &[u8] = b"hello world";
const CALLS: u32 = 20_000;
const BATCHES: usize = 60;
const NAMES: [&str; 3] = ["bare", "wait", "start"];

/// Runs `CALLS` calls of function `i` and returns the time per call in ns.
async fn batch(i: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        match i {
            0 => {
                black_box(Response::new(Full::new(Bytes::from_static(HELLO))));
            }
            1 => {
                black_box(
                    DelayedResponse::new()
                        .wait(async { Bytes::from_static(HELLO) })
                        .await,
                );
            }
            _ => {
                black_box(
                    DelayedResponse::new()
                        .start(async { Bytes::from_static(HELLO) })
                        .await,
                );
            }
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know that this compiles and runs.
    let batches = if std::env::args().any(|a| a == "--bench") {
        BATCHES
    } else {
        3
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current_thread runtime");
    let mut times: [Vec<f64>; 3] = Default::default();
    rt.block_on(async {
        for b in 0..batches {
            for k in 0..NAMES.len() {
                let i = (b + k) % NAMES.len();
                times[i].push(batch(i).await);
            }
        }
    });
    for (name, v) in NAMES.iter().zip(times.iter_mut()) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:<6} min {:>6.1} ns   q1 {:>6.1} ns   median {:>6.1} ns   (ns per call)",
            v[0],
            v[v.len() / 4],
            v[v.len() / 2]
        );
    }
}
