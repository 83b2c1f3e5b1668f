//! Fast path micro-benchmarks: what it costs to build a response whose work
//! is already done, in-process (no sockets), against a bare hyper response.
//!
//! Run with `cargo bench --bench fast_path`; results and method are in
//! `BENCHMARKS.md` ("Core: fast path").
//!
//! Each group has three functions over the same 11 bytes:
//!
//! - `bare`: `Response::new(Full::new(bytes))`, what a plain hyper handler returns;
//! - `wait`: `DelayedResponse::new().wait(async { bytes }).await`;
//! - `start`: `DelayedResponse::new().start(async { bytes }).await`.
//!
//! `build` only builds the response (and drops it); `build_and_drain` also
//! polls the body to its end, as hyper does when it writes the response. Both
//! run on a tokio current_thread runtime with timers enabled (`start` creates
//! a heartbeat `Sleep`, never polled when the work is ready).

use std::hint::black_box;

use bytes::Bytes;
use criterion::Criterion;
use delayed_response::DelayedResponse;
use http::Response;
use http_body_util::{BodyExt, Full};

const HELLO: &[u8] = b"hello world";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current_thread runtime")
}

/// Polls a body to its end and returns how many bytes it yielded.
async fn drain<B>(body: B) -> usize
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut body = body;
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("a body frame").into_data() {
            n += data.len();
        }
    }
    n
}

fn build(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("build");
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(Response::new(Full::new(Bytes::from_static(HELLO)))) })
    });
    group.bench_function("wait", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                DelayedResponse::new()
                    .wait(async { Bytes::from_static(HELLO) })
                    .await,
            )
        })
    });
    group.bench_function("start", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                DelayedResponse::new()
                    .start(async { Bytes::from_static(HELLO) })
                    .await,
            )
        })
    });
    group.finish();
}

fn build_and_drain(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("build_and_drain");
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async {
            let res = Response::new(Full::new(Bytes::from_static(HELLO)));
            black_box(drain(res.into_body()).await)
        })
    });
    group.bench_function("wait", |b| {
        b.to_async(&rt).iter(|| async {
            let res = DelayedResponse::new()
                .wait(async { Bytes::from_static(HELLO) })
                .await;
            black_box(drain(res.into_body()).await)
        })
    });
    group.bench_function("start", |b| {
        b.to_async(&rt).iter(|| async {
            let res = DelayedResponse::new()
                .start(async { Bytes::from_static(HELLO) })
                .await;
            black_box(drain(res.into_body()).await)
        })
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented public function, which
// `missing_docs` denies; this is what it and `criterion_main!` expand to.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    build(&mut c);
    build_and_drain(&mut c);
    c.final_summary();
}
