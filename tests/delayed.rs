//! The original http-delayed-response suite (22 cases), ported to the Rust
//! API, plus the cases added for its bugs. Timer counts run under tokio's
//! paused clock and drive the response in-process, so they are exact.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use delayed_response::{Body, DelayedResponse, Heartbeat, Json, Outcome, Reply};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// Every data frame of `body` with the time it came, and whether the body
/// ended normally (`Ok`) or abnormally (`Err`).
async fn frames(
    body: Body,
    t0: Instant,
) -> (Vec<(Duration, Bytes)>, Result<(), delayed_response::Error>) {
    let mut body = body;
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return (out, Ok(())),
            Some(Err(e)) => return (out, Err(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.push((t0.elapsed(), data));
                }
            }
        }
    }
}

fn text(frames: &[(Duration, Bytes)]) -> String {
    frames
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

fn counter() -> (Arc<AtomicU64>, impl Fn(u64) + Send + Sync + 'static) {
    let n = Arc::new(AtomicU64::new(0));
    let m = n.clone();
    (n, move |_| {
        m.fetch_add(1, Ordering::SeqCst);
    })
}

fn outcomes() -> (
    Arc<Mutex<Vec<Outcome>>>,
    impl Fn(Outcome) + Send + Sync + 'static,
) {
    let v = Arc::new(Mutex::new(Vec::new()));
    let w = v.clone();
    (v, move |o| w.lock().unwrap().push(o))
}

async fn after(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// 1. `wait()` returns; the response can be ended from elsewhere (200).
#[tokio::test(start_paused = true)]
async fn case01_response_can_be_ended_from_elsewhere_with_200() {
    let (response, completion) = DelayedResponse::new().handle();
    tokio::spawn(async move {
        after(10).await;
        completion.end("manual");
    });
    let res = response.await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "manual");
}

// 2. `wait(100)` with a cancel listener: it fires at 100 ms.
#[tokio::test(start_paused = true)]
async fn case02_wait_timeout_runs_the_timeout_hook_at_the_deadline() {
    let fired = Arc::new(Mutex::new(None));
    let f = fired.clone();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .timeout(100 * MS)
        .on_timeout(move || {
            *f.lock().unwrap() = Some(t0.elapsed());
            let mut r = Response::new(Body::from("cancelled"));
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        })
        .wait(std::future::pending::<()>())
        .await;
    assert_eq!(*fired.lock().unwrap(), Some(100 * MS));
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "cancelled");
}

// 3. `wait(100)` with an error handler that answers 500 gives 500.
#[tokio::test(start_paused = true)]
async fn case03_timeout_hook_can_answer_500() {
    let res = DelayedResponse::new()
        .timeout(100 * MS)
        .on_timeout(|| {
            let mut r = Response::new(Body::from("timeout occurred"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
        .wait(std::future::pending::<()>())
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.into_body().collect_bytes().await.unwrap(),
        "timeout occurred"
    );
}

// 4. `wait(200)` runs no ticks; json() + a result at 100 ms gives 200.
#[tokio::test(start_paused = true)]
async fn case04_wait_has_no_heartbeats_and_renders_json_200() {
    let (ticks, on_tick) = counter();
    let res = DelayedResponse::new()
        .json()
        .timeout(200 * MS)
        .heartbeat(Heartbeat::every(10 * MS))
        .on_tick(on_tick)
        .wait(async {
            after(100).await;
            Json(serde_json::json!({ "success": true }))
        })
        .await;
    assert_eq!(ticks.load(Ordering::SeqCst), 0);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(
        res.into_body().collect_bytes().await.unwrap(),
        r#"{"success":true}"#
    );
}

// 5. `start()`: once a heartbeat went out, the status is 202.
#[tokio::test(start_paused = true)]
async fn case05_start_answers_202_once_a_heartbeat_went_out() {
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .start(async {
            after(50).await;
        })
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

// 6. `start(10)` ended at 95 ms: 9 ticks (10, 20, …, 90). The original counted
// 8 in 100 ms because its first heartbeat came one interval late.
#[tokio::test(start_paused = true)]
async fn case06_start_every_10ms_ticks_9_times_in_95ms() {
    let (ticks, on_tick) = counter();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_tick(on_tick)
        .start(async {
            after(95).await;
        })
        .await;
    let (frames, end) = frames(res.into_body(), t0).await;
    end.unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 9);
    let times: Vec<u64> = frames.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
}

// 7. `start(10, 50)` ended at 95 ms: ticks at 50, 60, 70, 80, 90.
#[tokio::test(start_paused = true)]
async fn case07_start_with_initial_delay_ticks_from_the_delay() {
    let (ticks, on_tick) = counter();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS).after(50 * MS))
        .on_tick(on_tick)
        .start(async {
            after(95).await;
        })
        .await;
    // The head goes out with the first heartbeat, not before.
    assert_eq!(t0.elapsed(), 50 * MS);
    let (frames, _) = frames(res.into_body(), t0).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 5);
    let times: Vec<u64> = frames.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, [50, 60, 70, 80, 90]);
}

// 8. `start(50, 0, 100)` with a cancel handler that ends the response: 202.
#[tokio::test(start_paused = true)]
async fn case08_start_timeout_after_the_head_renders_the_hook_body() {
    let (outcome, on_outcome) = outcomes();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(50 * MS).after(MS))
        .timeout(100 * MS)
        .on_timeout(|| Response::new(Body::from("cancelled")))
        .on_outcome(on_outcome)
        .start(std::future::pending::<()>())
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (frames, end) = frames(res.into_body(), t0).await;
    end.unwrap();
    assert_eq!(text(&frames), "  cancelled");
    assert_eq!(frames.last().unwrap().0, 100 * MS);
    assert_eq!(*outcome.lock().unwrap(), [Outcome::Timeout]);
}

// 9. A second `start()` threw 'instance already started'. In Rust the
// finishing methods take the builder by value, so it cannot compile (a
// `compile_fail` doctest on `DelayedResponse` pins that); this case checks the
// other half: the response then ends with 202.
#[tokio::test(start_paused = true)]
async fn case09_a_started_response_ends_with_202() {
    let (response, completion) = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .handle();
    tokio::spawn(async move {
        after(25).await;
        completion.end(());
    });
    let res = response.await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (frames, end) = frames(res.into_body(), Instant::now()).await;
    end.unwrap();
    assert_eq!(text(&frames), "  ");
}

// 10. `stop()` at 100 ms: no tick afterwards. Dropping the response (what
// hyper does) stops the heartbeats at once.
#[tokio::test(start_paused = true)]
async fn case10_dropping_the_response_stops_ticking() {
    let (ticks, on_tick) = counter();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_tick(on_tick)
        .start(std::future::pending::<()>())
        .await;
    let mut body = res.into_body();
    let deadline = Instant::now() + 90 * MS;
    while Instant::now() < deadline {
        body.frame().await.unwrap().unwrap();
    }
    let seen = ticks.load(Ordering::SeqCst);
    drop(body);
    after(100).await;
    assert_eq!(ticks.load(Ordering::SeqCst), seen);
}

// 11. The client aborts at 100 ms: the abort hook fires, no tick after it.
#[tokio::test(start_paused = true)]
async fn case11_abort_fires_and_ticking_stops() {
    let (ticks, on_tick) = counter();
    let aborted = Arc::new(AtomicUsize::new(0));
    let a = aborted.clone();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_tick(on_tick)
        .on_abort(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
        })
        .start(std::future::pending::<()>())
        .await;
    let mut body = res.into_body();
    while ticks.load(Ordering::SeqCst) < 10 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    assert_eq!(aborted.load(Ordering::SeqCst), 1);
    after(100).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 10);
}

// 12. The producer ends the response: ticking stops.
#[tokio::test(start_paused = true)]
async fn case12_ending_stops_ticking() {
    let (ticks, on_tick) = counter();
    let (response, completion) = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_tick(on_tick)
        .handle();
    let c = completion.clone();
    tokio::spawn(async move {
        after(35).await;
        c.end(());
    });
    let (_, end) = frames(response.await.into_body(), Instant::now()).await;
    end.unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 3);
    after(100).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 3);
    assert!(completion.is_closed());
}

// 13. A text result after one heartbeat: " results".
#[tokio::test(start_paused = true)]
async fn case13_text_result_follows_the_heartbeat_spaces() {
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(100 * MS))
        .start(async {
            after(150).await;
            "results"
        })
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), " results");
}

// 14. The same with bytes.
#[tokio::test(start_paused = true)]
async fn case14_bytes_result_follows_the_heartbeat_spaces() {
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(100 * MS))
        .start(async {
            after(150).await;
            Bytes::from_static(b"results")
        })
        .await;
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), " results");
}

// 15. A streamed result is streamed, and (the original's bug) no heartbeat
// is ever mixed into it, however slow the stream.
#[tokio::test(start_paused = true)]
async fn case15_stream_result_has_no_heartbeats_mixed_in() {
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .start(async {
            after(25).await;
            Reply::stream(futures_util::stream::unfold(0, |i| async move {
                if i == 3 {
                    return None;
                }
                after(35).await;
                Some((Ok::<_, std::io::Error>(format!("chunk{i}")), i + 1))
            }))
        })
        .await;
    let (frames, end) = frames(res.into_body(), t0).await;
    end.unwrap();
    assert_eq!(text(&frames), "  chunk0chunk1chunk2");
}

// 16. json() and a JSON value: the body parses as that value.
#[tokio::test(start_paused = true)]
async fn case16_json_value_parses_after_the_whitespace() {
    let res = DelayedResponse::new()
        .json()
        .heartbeat(Heartbeat::every(10 * MS))
        .start(async {
            after(30).await;
            Json(serde_json::json!({ "success": true }))
        })
        .await;
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect_bytes().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, serde_json::json!({ "success": true }));
}

// 17. An error with no hook: the original threw (crashing the process from a
// timer). Here: 500 before the head, and no panic.
#[tokio::test(start_paused = true)]
async fn case17_error_without_hook_is_a_500_not_a_crash() {
    let res = DelayedResponse::new()
        .start(async { Err::<(), _>(std::io::Error::other("failure")) })
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The error's text does not leak to the client.
    let body = res.into_body().collect_bytes().await.unwrap();
    assert!(!String::from_utf8_lossy(&body).contains("failure"));
}

// 17b. After the head went out, an error ends the body abnormally.
#[tokio::test(start_paused = true)]
async fn case17b_error_after_the_head_ends_the_body_abnormally() {
    let (outcome, on_outcome) = outcomes();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_outcome(on_outcome)
        .start(async {
            after(25).await;
            Err::<(), _>(std::io::Error::other("failure"))
        })
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (frames, end) = frames(res.into_body(), Instant::now()).await;
    assert_eq!(text(&frames), "  ");
    let err = end.unwrap_err();
    assert!(err.is_work(), "{err:?}");
    assert_eq!(*outcome.lock().unwrap(), [Outcome::Error]);
}

// 18. A future that resolves to a value renders it as JSON.
#[tokio::test(start_paused = true)]
async fn case18_resolved_future_renders_json() {
    let res = DelayedResponse::new()
        .wait(async { Ok::<_, std::io::Error>(Json(serde_json::json!({ "a": 1 }))) })
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), r#"{"a":1}"#);
}

// 19. A future that fails, with no hook: the error is reported (500) and the
// outcome says so.
#[tokio::test(start_paused = true)]
async fn case19_failed_future_without_hook_is_reported() {
    let (outcome, on_outcome) = outcomes();
    let res = DelayedResponse::new()
        .on_outcome(on_outcome)
        .wait(async { Err::<(), _>(std::io::Error::other("rejected")) })
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(*outcome.lock().unwrap(), [Outcome::Error]);
}

// 20. A `done` handler owned the response: the work returns a whole
// `Response`, used as it is.
#[tokio::test(start_paused = true)]
async fn case20_a_full_response_result_is_used_as_is() {
    let res = DelayedResponse::new()
        .wait(async {
            let mut r = Response::new(Body::from("created"));
            *r.status_mut() = StatusCode::CREATED;
            r.headers_mut().insert("x-done", "yes".parse().unwrap());
            r
        })
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["x-done"], "yes");
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "created");
}

// 21. An error hook receives the error, and its response is sent.
#[tokio::test(start_paused = true)]
async fn case21_error_hook_receives_the_error() {
    let seen = Arc::new(Mutex::new(String::new()));
    let s = seen.clone();
    let res = DelayedResponse::new()
        .on_error(move |e| {
            *s.lock().unwrap() = e.to_string();
            let mut r = Response::new(Body::from("custom"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        })
        .wait(async { Err::<(), _>(std::io::Error::other("failure")) })
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.lock().unwrap().contains("failure"));
}

// 22. With no hook, the default error response is a 500.
#[tokio::test(start_paused = true)]
async fn case22_default_error_response_is_500() {
    let (response, completion) = DelayedResponse::new().handle();
    completion.fail("boom");
    assert_eq!(response.await.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

// Added: the first heartbeat is at `initial_delay`, not one interval later
// (the original's off-by-one).
#[tokio::test(start_paused = true)]
async fn first_heartbeat_is_at_initial_delay() {
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(100 * MS).after(30 * MS))
        .start(std::future::pending::<()>())
        .await;
    assert_eq!(t0.elapsed(), 30 * MS);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, " ");
    assert_eq!(t0.elapsed(), 30 * MS);
    body.frame().await.unwrap().unwrap();
    assert_eq!(t0.elapsed(), 130 * MS);
}

// Added: a result ready before the first heartbeat gets its real status and
// no spaces (the original answered 202 with the result).
#[tokio::test(start_paused = true)]
async fn early_result_gets_200_and_no_spaces() {
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(100 * MS))
        .start(async {
            after(50).await;
            "fast"
        })
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "fast");
}

// Added: an early failure gets its real error status too.
#[tokio::test(start_paused = true)]
async fn early_reply_status_is_kept() {
    let res = DelayedResponse::new()
        .start(async { Reply::new("missing").status(StatusCode::NOT_FOUND) })
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

// Added: the compatibility switch sends 202 at once.
#[tokio::test(start_paused = true)]
async fn accepted_at_start_commits_202_at_once() {
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .accepted_at_start(true)
        .start(async {
            after(10).await;
            "late"
        })
        .await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "late");
}

// Added: a double end keeps the first result.
#[tokio::test(start_paused = true)]
async fn double_end_keeps_the_first() {
    let (response, completion) = DelayedResponse::new().handle();
    assert!(completion.end("first"));
    assert!(!completion.end("second"));
    let body = response.await.into_body().collect_bytes().await.unwrap();
    assert_eq!(body, "first");
}

// Added: no heartbeat bytes after the end; writes after the end fail.
#[tokio::test(start_paused = true)]
async fn no_heartbeat_after_end_and_writes_fail() {
    let (response, completion) = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .handle();
    let c = completion.clone();
    tokio::spawn(async move {
        after(15).await;
        c.end("end");
    });
    let (frames, end) = frames(response.await.into_body(), Instant::now()).await;
    end.unwrap();
    assert_eq!(text(&frames), " end");
    assert!(completion.write("late").unwrap_err().is_ended());
}

// Added: progress writes commit the head, come in order, and heartbeats fill
// only the silences between them.
#[tokio::test(start_paused = true)]
async fn progress_writes_then_heartbeats_fill_silences() {
    let t0 = Instant::now();
    let (response, completion) = DelayedResponse::new()
        .pending_status(StatusCode::OK)
        .heartbeat(Heartbeat::every(10 * MS))
        .handle();
    completion.write("url\n").unwrap();
    let res = response.await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    tokio::spawn(async move {
        after(15).await;
        completion.write("progress\n").unwrap();
        after(5).await;
        completion.end("done\n");
    });
    let (frames, end) = frames(res.into_body(), t0).await;
    end.unwrap();
    let got: Vec<(u64, String)> = frames
        .iter()
        .map(|(t, b)| {
            (
                t.as_millis() as u64,
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, "url\n".to_string()),
            (10, " ".to_string()),
            (15, "progress\n".to_string()),
            (20, "done\n".to_string())
        ]
    );
}

// Added: configurable heartbeat bytes, and a hook that replaces them.
#[tokio::test(start_paused = true)]
async fn heartbeat_bytes_and_hook() {
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS).bytes("\n"))
        .start(async {
            after(25).await;
        })
        .await;
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "\n\n");
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS))
        .on_heartbeat(|n| Bytes::from(format!("{n};")))
        .start(async {
            after(35).await;
        })
        .await;
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "1;2;3;");
}

// Added: too many unsent progress bytes fail the write instead of growing.
#[tokio::test(start_paused = true)]
async fn progress_writes_are_bounded() {
    let (_response, completion) = DelayedResponse::new().max_buffered(8).handle();
    completion.write("12345").unwrap();
    completion.write("678").unwrap();
    assert!(completion.write("9").unwrap_err().is_limit());
    assert_eq!(completion.buffered_bytes(), 8);
}

// Added: dropping every completion without an end is an error, not a hang.
#[tokio::test(start_paused = true)]
async fn dropped_completion_ends_the_response() {
    let (response, completion) = DelayedResponse::new().handle();
    drop(completion);
    assert_eq!(response.await.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

// Added: the work is dropped (cancelled) on timeout by default …
#[tokio::test(start_paused = true)]
async fn timeout_cancels_the_work() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let res = DelayedResponse::new()
        .timeout(10 * MS)
        .wait(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        })
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // The sender was dropped with the work.
    assert!(rx.await.is_err());
}

// … and keeps running when detached.
#[tokio::test(start_paused = true)]
async fn detached_work_survives_the_timeout() {
    let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
    let res = DelayedResponse::new()
        .timeout(10 * MS)
        .detach(true)
        .wait(async move {
            after(50).await;
            let _ = tx.send("finished");
        })
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(rx.await.unwrap(), "finished");
}

// Added: a timeout is an outcome, reported once; headers set on the builder
// go out with the 202.
#[tokio::test(start_paused = true)]
async fn timeout_202_carries_builder_headers_and_outcome() {
    let (outcome, on_outcome) = outcomes();
    let res = DelayedResponse::new()
        .json()
        .timeout(10 * MS)
        .on_outcome(on_outcome)
        .wait(std::future::pending::<()>())
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(*outcome.lock().unwrap(), [Outcome::Timeout]);
}

// Added: poll mode checks at once, then every interval, until Some.
#[tokio::test(start_paused = true)]
async fn poll_checks_until_some() {
    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(1000 * MS))
        .poll(20 * MS, move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { (n == 3).then_some("ready") }
        })
        .await;
    assert_eq!(t0.elapsed(), 60 * MS);
    assert_eq!(checks.load(Ordering::SeqCst), 4);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "ready");
}

// Added: a shutdown before the head answers 503; after it, the body is cut.
#[tokio::test(start_paused = true)]
async fn shutdown_before_and_after_the_head() {
    let shutdown = delayed_response::Shutdown::new();
    let (outcome, on_outcome) = outcomes();
    let s = shutdown.clone();
    tokio::spawn(async move {
        after(5).await;
        s.trigger();
    });
    let res = DelayedResponse::new()
        .shutdown(shutdown)
        .heartbeat(Heartbeat::every(10 * MS))
        .on_outcome(on_outcome)
        .start(std::future::pending::<()>())
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        *outcome.lock().unwrap(),
        [Outcome::Aborted(delayed_response::AbortReason::Shutdown)]
    );

    let shutdown = delayed_response::Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        after(25).await;
        s.trigger();
    });
    let (response, completion) = DelayedResponse::new()
        .shutdown(shutdown)
        .heartbeat(Heartbeat::every(10 * MS))
        .handle();
    let res = response.await;
    let (frames, end) = frames(res.into_body(), Instant::now()).await;
    assert_eq!(text(&frames), "  ");
    assert!(end.unwrap_err().is_shutdown());
    assert_eq!(
        completion.aborted().await,
        delayed_response::AbortReason::Shutdown
    );
}

// Regression: a `Duration` near the maximum met an `Instant` unchecked and
// panicked the request ("overflow when adding duration to instant"):
// `Heartbeat::every(Duration::MAX)`, `.after(Duration::MAX)`,
// `.timeout(Duration::MAX)`. Such a duration now means "never".
#[tokio::test(start_paused = true)]
async fn durations_at_the_maximum_mean_never_instead_of_panicking() {
    let (ticks, on_tick) = counter();
    let (response, completion) = DelayedResponse::new()
        .heartbeat(Heartbeat::every(Duration::MAX))
        .timeout(Duration::MAX)
        .on_tick(on_tick)
        .handle();
    completion.write("progress").unwrap();
    let res = response.await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
    completion.end("done");
    let (frames, end) = frames(res.into_body(), Instant::now()).await;
    assert!(end.is_ok());
    assert_eq!(text(&frames), "progressdone");
    assert_eq!(ticks.load(Ordering::SeqCst), 0);

    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(10 * MS).after(Duration::MAX))
        .timeout(Duration::MAX)
        .start(async {
            after(50).await;
            "late"
        })
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = DelayedResponse::new()
        .timeout(Duration::MAX)
        .wait(async { "waited" })
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(Duration::MAX))
        .poll(Duration::MAX, || async { Some("polled") })
        .await;
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "polled");
}

// Regression: a client could choose a 1 ms heartbeat (`long_poll`'s
// `/start?interval_ms=0`): 1,000 such connections took two cores to 169 %.
// Heartbeat and poll intervals have a floor, 10 ms by default.
#[tokio::test(start_paused = true)]
async fn heartbeat_intervals_under_the_floor_are_raised_to_it() {
    let (ticks, on_tick) = counter();
    let res = DelayedResponse::new()
        .heartbeat(Heartbeat::every(Duration::ZERO))
        .on_tick(on_tick)
        .start(async {
            after(105).await;
        })
        .await;
    let _ = res.into_body().collect_bytes().await.unwrap();
    // 1, 11, 21, …, 101 ms: the first beat at its own (1 ms) delay, then
    // every 10 ms (it was every 1 ms: 105 ticks).
    assert_eq!(ticks.load(Ordering::SeqCst), 11);
    assert_eq!(DelayedResponse::DEFAULT_MIN_INTERVAL, 10 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_configured_floor_holds_client_chosen_intervals() {
    let (ticks, on_tick) = counter();
    let client_ms = 1;
    let res = DelayedResponse::new()
        .min_interval(Duration::from_secs(1))
        .heartbeat(Heartbeat::every(Duration::from_millis(client_ms)).after(Duration::from_secs(1)))
        .on_tick(on_tick)
        .start(async {
            tokio::time::sleep(Duration::from_millis(3500)).await;
        })
        .await;
    let _ = res.into_body().collect_bytes().await.unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 3);

    let checks = Arc::new(AtomicUsize::new(0));
    let c = checks.clone();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .min_interval(100 * MS)
        .poll(Duration::ZERO, move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { (n == 3).then_some("ready") }
        })
        .await;
    assert_eq!(t0.elapsed(), 300 * MS);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "ready");
}

// Added: the extension point of `wait`. At the deadline the hook gets the
// running work; its answer goes out; the work renders as it would in time.
#[tokio::test(start_paused = true)]
async fn on_deadline_takes_the_running_work_over() {
    use delayed_response::delayed::LateWork;
    let (late_tx, late_rx) = tokio::sync::oneshot::channel();
    let late_tx = Mutex::new(Some(late_tx));
    let (outcome, on_outcome) = outcomes();
    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .json()
        .status(StatusCode::CREATED)
        .timeout(10 * MS)
        .on_outcome(on_outcome)
        .on_deadline(move |late: LateWork| {
            if let Some(tx) = late_tx.lock().unwrap().take() {
                tokio::spawn(async move {
                    let _ = tx.send(late.into_response().await);
                });
            }
            let mut res = Response::new(Body::from("later"));
            *res.status_mut() = StatusCode::ACCEPTED;
            res
        })
        .wait(async {
            after(50).await;
            r#"{"late":true}"#
        })
        .await;
    assert_eq!(t0.elapsed(), 10 * MS);
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "later");
    assert_eq!(*outcome.lock().unwrap(), [Outcome::Timeout]);
    let late = late_rx.await.unwrap();
    assert_eq!(t0.elapsed(), 50 * MS);
    assert_eq!(late.status(), StatusCode::CREATED);
    assert_eq!(late.headers()["content-type"], "application/json");
    assert_eq!(
        late.into_body().collect_bytes().await.unwrap(),
        r#"{"late":true}"#
    );
}

// Added: a hook that drops the late work cancels it.
#[tokio::test(start_paused = true)]
async fn dropping_the_late_work_cancels_it() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let res = DelayedResponse::new()
        .timeout(10 * MS)
        .on_deadline(|late: delayed_response::delayed::LateWork| {
            drop(late);
            Response::new(Body::from("gave up"))
        })
        .wait(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        })
        .await;
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "gave up");
    assert!(rx.await.is_err());
}

// Added: a hook may choose each request's deadline and add to an answer
// given in time.
#[tokio::test(start_paused = true)]
async fn an_on_deadline_hook_chooses_the_deadline_and_marks_answers_in_time() {
    use delayed_response::delayed::{LateWork, OnDeadline};

    struct Short;
    impl OnDeadline for Short {
        fn deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
            timeout.map(|t| t / 2)
        }
        fn on_deadline(&self, _late: LateWork) -> Response<Body> {
            Response::new(Body::from("deadline"))
        }
        fn in_time(&self, response: &mut Response<Body>) {
            response
                .headers_mut()
                .insert("x-in-time", http::HeaderValue::from_static("yes"));
        }
    }

    let t0 = Instant::now();
    let res = DelayedResponse::new()
        .timeout(100 * MS)
        .on_deadline(Short)
        .wait(async { after(80).await })
        .await;
    assert_eq!(t0.elapsed(), 50 * MS);
    assert_eq!(res.into_body().collect_bytes().await.unwrap(), "deadline");
    let res = DelayedResponse::new()
        .timeout(100 * MS)
        .on_deadline(Short)
        .wait(async { after(20).await })
        .await;
    assert_eq!(res.headers()["x-in-time"], "yes");
}
