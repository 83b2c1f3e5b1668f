//! Load harnesses of `delayed-response`: they measure, the examples teach.
//!
//! Each harness is a binary of this crate (not published), run from the
//! repository root with one command; `BENCHMARKS.md` has the method and
//! the results of each.
//!
//! | harness | what it measures | command |
//! |---|---|---|
//! | `load_fast_path` | req/s and server CPU per request of a ready `wait`/`start` vs bare hyper | `cargo run --release -p load --bin load_fast_path` |
//! | `load_held` | server RSS and CPU while holding 10,000 long-polls with 1 s heartbeats, beside bare hyper and axum's `Sse`; instructions per heartbeat under callgrind | `cargo run --release -p load --bin load_held [-- callgrind]` |
//! | `conn_heap` | live heap bytes per held response, idle signal peer and waiting pipe sender, against a bare hyper connection (a counting allocator) | `cargo run --release -p load --bin conn_heap` |
//! | `pipe_load` | one big stream vs a raw TCP relay; RSS and fds of idle waiting senders | `cargo run --release -p load --bin pipe_load` |
//! | `load_hub` | hub fan-out: delivery latency, RSS per idle subscriber; with `--redis`, N instances on one Redis and Redis round trips per message | `cargo run --release -p load --bin load_hub` |
//! | `signal_load` | 1,000 peers × 1,000 broadcasts: delivery latency, RSS per idle peer | `cargo run --release -p load --bin signal_load` |
//!
//! Every harness takes `--help`. The server under test runs as a child
//! process (the harness itself, with a serve command) wherever memory or CPU
//! is measured, so that what [`measure`] reads from `/proc` is the server's
//! alone. Linux only: everything here reads `/proc`.

pub mod callgrind;
pub mod measure;
pub mod redis;
