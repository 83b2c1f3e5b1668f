//! Heartbeats after the first come from a schedule that the held responses
//! with the same interval share (one timer per slot of the interval, not one
//! per response). Under tokio's paused clock, so times are exact.

use std::sync::Arc;
use std::time::Duration;

use delayed_response::{Body, DelayedResponse, Heartbeat, Shutdown};
use http_body_util::BodyExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_millis(100);
/// How early the first shared heartbeat may come: one slot of eight.
const SLOT: Duration = Duration::from_micros(12_500);

/// The times (from `t0`) of the first `n` data frames of `body`.
async fn beat_times(mut body: Body, t0: Instant, n: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    while times.len() < n {
        match body.frame().await {
            Some(Ok(frame)) if frame.is_data() => times.push(t0.elapsed()),
            Some(Ok(_)) => {}
            other => panic!("the body ended early: {other:?}"),
        }
    }
    times
}

/// A held response that never gets its result, started at `t0 + offset`;
/// the times of its first `n` heartbeats.
async fn held(t0: Instant, offset: Duration, n: usize) -> Vec<Duration> {
    tokio::time::sleep_until(t0 + offset).await;
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(INTERVAL))
        .start(std::future::pending::<()>())
        .await;
    // The first frame is the heartbeat that sent the head.
    beat_times(res.into_body(), t0, n).await
}

#[tokio::test(start_paused = true)]
async fn the_first_response_of_an_interval_keeps_its_exact_schedule() {
    let t0 = Instant::now();
    let times = held(t0, 30 * MS, 5).await;
    assert_eq!(times, [130, 230, 330, 430, 530].map(|ms| ms * MS));
}

#[tokio::test(start_paused = true)]
async fn later_responses_join_the_schedule_never_more_than_an_interval_apart() {
    let t0 = Instant::now();
    // Offsets spread over the interval, in no order.
    let offsets = [0u32, 37, 5, 81, 12, 99, 50, 63, 26, 74];
    let runs: Vec<_> = offsets
        .iter()
        .map(|&ms| tokio::spawn(held(t0, ms * MS, 6)))
        .collect();
    for (run, ms) in runs.into_iter().zip(offsets) {
        let times = run.await.unwrap();
        // The first heartbeat at its own initial delay, exactly.
        assert_eq!(times[0], (ms * MS) + INTERVAL, "offset {ms} ms: {times:?}");
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap <= INTERVAL && gap > INTERVAL - SLOT,
                "offset {ms} ms: a gap of {gap:?} in {times:?}"
            );
        }
        // From the second shared heartbeat on, exactly one interval apart.
        for pair in times[1..].windows(2) {
            assert_eq!(pair[1] - pair[0], INTERVAL, "offset {ms} ms: {times:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_polled_from_another_task_keeps_its_heartbeats() {
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(INTERVAL))
        .start(std::future::pending::<()>())
        .await;
    let body = Arc::new(Mutex::new(res.into_body()));
    // Two heartbeats in this task (the second from the shared schedule)...
    let first = {
        let mut body = body.lock().await;
        let mut times = Vec::new();
        while times.len() < 2 {
            body.frame().await.unwrap().unwrap();
            times.push(t0.elapsed());
        }
        times
    };
    assert_eq!(first, [100 * MS, 200 * MS]);
    // ...then the next ones from another task, whose waker replaces this one.
    let later = tokio::spawn(async move {
        let mut body = body.lock().await;
        let mut times = Vec::new();
        while times.len() < 2 {
            body.frame().await.unwrap().unwrap();
            times.push(t0.elapsed());
        }
        times
    })
    .await
    .unwrap();
    assert_eq!(later, [300 * MS, 400 * MS]);
}

#[tokio::test(start_paused = true)]
async fn a_body_moved_to_another_task_still_ends_on_shutdown() {
    let shutdown = Shutdown::new();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(INTERVAL))
        .shutdown(shutdown.clone())
        .start(std::future::pending::<()>())
        .await;
    let mut body = res.into_body();
    // Registered with this task's waker by the first frames...
    body.frame().await.unwrap().unwrap();
    let moved = tokio::spawn(async move {
        // ...then polled from this task only.
        loop {
            match body.frame().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return error,
                None => panic!("the body ended normally"),
            }
        }
    });
    tokio::time::sleep(INTERVAL / 2).await;
    shutdown.trigger();
    let error = tokio::time::timeout(INTERVAL / 4, moved)
        .await
        .expect("the body to end at once, not at its next heartbeat")
        .unwrap();
    assert!(error.is_shutdown(), "{error}");
}

#[tokio::test(start_paused = true)]
async fn the_schedule_stops_when_its_last_response_is_gone() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks = metrics.num_alive_tasks();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(INTERVAL))
        .start(std::future::pending::<()>())
        .await;
    let t0 = Instant::now();
    let body = res.into_body();
    let body = tokio::spawn(async move {
        let mut body = body;
        beat_times_of(&mut body, t0, 2).await;
        body
    })
    .await
    .unwrap();
    // The schedule's task is running.
    assert_eq!(metrics.num_alive_tasks(), tasks + 1);
    drop(body);
    // It notices at its next firing that nobody is left, and ends.
    tokio::time::sleep(2 * INTERVAL).await;
    assert_eq!(metrics.num_alive_tasks(), tasks);
}

async fn beat_times_of(body: &mut Body, t0: Instant, n: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    while times.len() < n {
        body.frame().await.unwrap().unwrap();
        times.push(t0.elapsed());
    }
    times
}
