//! Async request-reply: parking on timeout, the status URL (long-poll,
//! DELETE, 404, 405), `Prefer` on both requests, expiry, the size cap, owner
//! binding, and a client that leaves while long-polling.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use delayed_response::park::{self, Store};
use delayed_response::{Body, DelayedResponse};
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);

fn request(method: &str, uri: &str, prefer: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(p) = prefer {
        b = b.header("prefer", p);
    }
    b.body(()).unwrap()
}

async fn split(res: Response<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect_bytes().await.unwrap(),
    )
}

/// One request to the status service (its future never fails).
async fn ask<B>(svc: &park::Service, req: Request<B>) -> Response<Body> {
    let Ok(res) = svc.respond(req).await;
    res
}

async fn job(secs: u64, out: &'static str) -> Response<Body> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut res = Response::new(Body::from(out));
    *res.status_mut() = StatusCode::CREATED;
    res
}

/// Starts `work` through a parked `wait` with a 1 s deadline.
async fn original(store: &Store, prefer: Option<&str>, work_secs: u64) -> Response<Body> {
    let req = request("POST", "/reports", prefer);
    DelayedResponse::for_request(&req)
        .timeout(S)
        .park(store.clone())
        .wait(job(work_secs, "report"))
        .await
}

/// Set when the value it guards is dropped: shows that parked work was
/// cancelled.
struct DropFlag(Arc<AtomicBool>);

impl DropFlag {
    fn new() -> (DropFlag, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (DropFlag(flag.clone()), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn location(headers: &HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_fast_result_is_answered_directly() {
    let store = Store::new();
    let (status, headers, body) = split(original(&store, None, 0).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.get("location").is_none());
    assert_eq!(body, "report");
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_parks_and_the_location_serves_the_result() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let t0 = Instant::now();
    let (status, headers, _) = split(original(&store, None, 5).await).await;
    assert_eq!(t0.elapsed(), S);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["retry-after"], "1");
    let loc = location(&headers);
    assert!(
        loc.starts_with("/jobs/") && loc.len() == "/jobs/".len() + 22,
        "{loc}"
    );
    // Still running: 202 at once (no Prefer), pointing at itself.
    let (status, headers, _) = split(ask(&svc, request("GET", &loc, None)).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(location(&headers), loc);
    // The work goes on after the 202 and its result, with its real status,
    // is there once it finishes; it can be read again until it expires.
    tokio::time::sleep(5 * S).await;
    for _ in 0..2 {
        let (status, _, body) = split(ask(&svc, request("GET", &loc, None)).await).await;
        assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"report"[..]));
    }
}

#[tokio::test(start_paused = true)]
async fn prefer_respond_async_answers_202_at_once() {
    let store = Store::new();
    let t0 = Instant::now();
    let (status, headers, _) = split(original(&store, Some("respond-async"), 5).await).await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["preference-applied"], "respond-async");
    assert!(headers.contains_key("location"));
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_sets_the_deadline_within_the_cap() {
    let store = Store::builder().max_wait(10 * S).build();
    // wait=3 beats the 1 s default deadline: the 2 s job answers directly.
    let t0 = Instant::now();
    let (status, headers, _) = split(original(&store, Some("wait=3"), 2).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["preference-applied"], "wait=3");
    assert_eq!(t0.elapsed(), 2 * S);
    // wait=100 is capped at 10 s.
    let t0 = Instant::now();
    let (status, headers, _) = split(original(&store, Some("wait=100"), 60).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(t0.elapsed(), 10 * S);
    assert_eq!(headers["preference-applied"], "wait=10");
}

#[tokio::test(start_paused = true)]
async fn status_get_long_polls_with_prefer_wait() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let (_, headers, _) = split(original(&store, None, 4).await).await;
    let loc = location(&headers);
    // Ready at 4 s (3 s from now): a GET willing to wait 10 s gets it then.
    let t0 = Instant::now();
    let (status, headers, body) =
        split(ask(&svc, request("GET", &loc, Some("wait=10"))).await).await;
    assert_eq!(t0.elapsed(), 3 * S);
    assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"report"[..]));
    assert_eq!(headers["preference-applied"], "wait=10");
}

#[tokio::test(start_paused = true)]
async fn status_get_answers_202_when_its_wait_runs_out() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let (_, headers, _) = split(original(&store, None, 60).await).await;
    let loc = location(&headers);
    let t0 = Instant::now();
    let (status, headers, _) = split(ask(&svc, request("GET", &loc, Some("wait=2"))).await).await;
    assert_eq!(t0.elapsed(), 2 * S);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test(start_paused = true)]
async fn unknown_malformed_and_expired_ids_are_404() {
    let store = Store::builder().ttl(30 * S).build();
    let svc = park::Service::new(store.clone());
    for uri in [
        "/jobs/AAAAAAAAAAAAAAAAAAAAAA",
        "/jobs/short",
        "/jobs/",
        "/jobs/%00%00",
    ] {
        let (status, _, _) = split(ask(&svc, request("GET", uri, None)).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (_, headers, _) = split(original(&store, None, 2).await).await;
    let loc = location(&headers);
    tokio::time::sleep(S + 29 * S).await; // finished at 2 s, 29 s ago
    let (status, _, _) = split(ask(&svc, request("GET", &loc, None)).await).await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(2 * S).await; // now past its 30 s
    let (status, _, _) = split(ask(&svc, request("GET", &loc, None)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delete_cancels_the_running_work() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let (flag, cancelled) = DropFlag::new();
    let req = request("POST", "/reports", None);
    let res = DelayedResponse::for_request(&req)
        .timeout(S)
        .park(store.clone())
        .wait(async move {
            let _flag = flag;
            tokio::time::sleep(60 * S).await;
            "never"
        })
        .await;
    let loc = location(res.headers());
    assert_eq!(store.running(), 1);
    let (status, _, _) = split(ask(&svc, request("DELETE", &loc, None)).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(store.running(), 0);
    tokio::task::yield_now().await; // let the aborted task drop its future
    assert!(cancelled.load(Ordering::SeqCst));
    let (status, _, _) = split(ask(&svc, request("GET", &loc, None)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = split(ask(&svc, request("DELETE", &loc, None)).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn delete_drops_a_finished_result() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let (_, headers, _) = split(original(&store, None, 2).await).await;
    let loc = location(&headers);
    tokio::time::sleep(2 * S).await;
    let (status, _, _) = split(ask(&svc, request("DELETE", &loc, None)).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn other_methods_get_405_with_allow() {
    let svc = park::Service::new(Store::new());
    let (status, headers, _) =
        split(ask(&svc, request("POST", "/jobs/AAAAAAAAAAAAAAAAAAAAAA", None)).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD, DELETE");
}

#[tokio::test(start_paused = true)]
async fn a_full_store_evicts_the_oldest_finished_result_first() {
    let store = Store::builder().max_entries(2).build();
    let svc = park::Service::new(store.clone());
    let (_, h1, _) = split(original(&store, None, 2).await).await; // finishes at 2 s
    let (_, h2, _) = split(original(&store, None, 3).await).await; // finishes at 4 s
    tokio::time::sleep(5 * S).await;
    let (_, h3, _) = split(original(&store, None, 60).await).await;
    assert!(h3.contains_key("location"));
    let get = |h: &HeaderMap| ask(&svc, request("GET", &location(h), None));
    assert_eq!(get(&h1).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&h2).await.status(), StatusCode::CREATED);
    assert_eq!(store.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_store_full_of_running_jobs_refuses_with_503() {
    let store = Store::builder().max_entries(2).build();
    for _ in 0..2 {
        assert_eq!(
            original(&store, None, 60).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let (flag, dropped) = DropFlag::new();
    let req = request("POST", "/reports", None);
    let res = DelayedResponse::for_request(&req)
        .timeout(S)
        .park(store.clone())
        .wait(async move {
            let _flag = flag;
            tokio::time::sleep(60 * S).await;
        })
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the refused work must be dropped"
    );
    assert_eq!(store.running(), 2);
}

#[tokio::test(start_paused = true)]
async fn results_bound_to_an_owner_are_hidden_from_others() {
    let store = Store::new();
    let svc = park::Service::new(store.clone()).owner(|parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let req = request("POST", "/reports", None);
    let res = DelayedResponse::for_request(&req)
        .timeout(S)
        .park(store.clone())
        .park_owner("alice")
        .wait(job(2, "alice's report"))
        .await;
    let loc = location(res.headers());
    tokio::time::sleep(2 * S).await;
    let as_user = |method: &str, user: Option<&str>| {
        let mut r = request(method, &loc, None);
        if let Some(u) = user {
            r.headers_mut().insert("x-user", u.parse().unwrap());
        }
        ask(&svc, r)
    };
    assert_eq!(
        as_user("GET", Some("bob")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(as_user("GET", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        as_user("DELETE", Some("bob")).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _, body) = split(as_user("GET", Some("alice")).await).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::CREATED, &b"alice's report"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn failed_and_oversized_results_are_kept_as_500() {
    let store = Store::builder().max_result_bytes(4).build();
    let svc = park::Service::new(store.clone());
    let req = request("POST", "/", None);
    let failing = DelayedResponse::for_request(&req)
        .timeout(S)
        .park(store.clone())
        .wait(async {
            tokio::time::sleep(2 * S).await;
            Err::<(), _>(std::io::Error::other("secret detail"))
        })
        .await;
    let big = original(&store, None, 2).await; // "report" is 6 bytes > 4
    tokio::time::sleep(2 * S).await;
    let (status, _, body) =
        split(ask(&svc, request("GET", &location(failing.headers()), None)).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    let (status, _, body) =
        split(ask(&svc, request("GET", &location(big.headers()), None)).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "result too large to keep\n");
}

/// Over real sockets: a client that leaves while long-polling the status
/// URL cancels only its own wait; the job runs on and its result is there.
#[tokio::test]
async fn a_client_leaving_a_long_poll_does_not_cancel_the_job() {
    use support::*;
    let store = Store::builder().base_path("/jobs/").build();
    let store_probe = store.clone();
    let status = park::Service::new(store.clone());
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let finish_rx = Arc::new(std::sync::Mutex::new(Some(finish_rx)));
    let (polling_tx, mut polling) = tokio::sync::mpsc::unbounded_channel::<()>();
    let server = serve_fn(move |req: Request<hyper::body::Incoming>| {
        let store = store.clone();
        let status = status.clone();
        let finish_rx = finish_rx.clone();
        let polling_tx = polling_tx.clone();
        async move {
            if req.uri().path().starts_with("/jobs/") {
                let _ = polling_tx.send(());
                return ask(&status, req).await;
            }
            let rx = finish_rx.lock().unwrap().take();
            DelayedResponse::for_request(&req)
                .park(store)
                .wait(async move {
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    "finished"
                })
                .await
        }
    })
    .await;
    let mut s = send_raw(
        server.addr,
        "POST /work HTTP/1.1\r\nHost: t\r\nPrefer: respond-async\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let res = read_response(&mut s).await;
    assert_eq!(res.status, 202);
    let loc = res.header("location").unwrap().to_string();
    // Long-poll, then leave in the middle of it.
    let poll = send_raw(
        server.addr,
        &format!("GET {loc} HTTP/1.1\r\nHost: t\r\nPrefer: wait=20\r\n\r\n"),
    )
    .await;
    within("the long-poll to reach the server", polling.recv())
        .await
        .unwrap();
    assert_eq!(store_probe.running(), 1);
    poll.set_zero_linger().unwrap();
    drop(poll);
    finish_tx.send(()).unwrap();
    let got = within("the result", async {
        loop {
            let mut s = send_raw(
                server.addr,
                &format!(
                    "GET {loc} HTTP/1.1\r\nHost: t\r\nPrefer: wait=5\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            let res = read_response(&mut s).await;
            if res.status == 200 {
                return res.text();
            }
        }
    })
    .await;
    assert_eq!(got, "finished");
    server.stop().await;
}

/// The status service nests in axum as a tower service.
#[tokio::test]
async fn status_service_nests_in_axum() {
    use support::*;
    let store = Store::new();
    let app = axum::Router::new().nest_service("/jobs", park::Service::new(store.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let req = request("POST", "/", Some("respond-async"));
    let res = DelayedResponse::for_request(&req)
        .park(store.clone())
        .wait(async { "nested" })
        .await;
    // Already done before the deadline: answered directly.
    assert_eq!(res.status(), StatusCode::OK);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let res = DelayedResponse::for_request(&req)
        .park(store.clone())
        .wait(async move {
            let _ = go_rx.await;
            "nested"
        })
        .await;
    let loc = location(res.headers());
    go_tx.send(()).unwrap();
    let got = within("the result", async {
        loop {
            let mut s = get(addr, &loc).await;
            let res = read_response(&mut s).await;
            if res.status == 200 {
                return res.text();
            }
            assert_eq!(res.status, 202);
        }
    })
    .await;
    assert_eq!(got, "nested");
}

// Regression: a parked result skipped the builder's `status(..)` and
// `header(..)` (so `.json()`), which shape an early answer: the same work
// rendered two ways depending on when it finished.
#[tokio::test(start_paused = true)]
async fn a_parked_result_is_rendered_like_an_early_one() {
    let store = Store::new();
    let svc = park::Service::new(store.clone());
    let builder = || {
        DelayedResponse::new()
            .json()
            .status(StatusCode::CREATED)
            .header(
                http::header::HeaderName::from_static("x-report"),
                http::HeaderValue::from_static("1"),
            )
            .timeout(S)
            .park(store.clone())
    };
    let body = r#"{"rows":3}"#;
    let early = builder().wait(async move { body }).await;
    let late = builder()
        .wait(async move {
            tokio::time::sleep(2 * S).await;
            body
        })
        .await;
    assert_eq!(late.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(2 * S).await;
    let parked = ask(&svc, request("GET", &location(late.headers()), None)).await;
    let (early, parked) = (split(early).await, split(parked).await);
    assert_eq!(parked.0, StatusCode::CREATED);
    assert_eq!(parked.1["content-type"], "application/json");
    assert_eq!(parked.1["x-report"], "1");
    assert_eq!(parked, early);
}

// Regression: `now + ttl` panicked the parked task with a TTL near
// `Duration::MAX`; such a TTL now keeps the result until it is fetched away.
#[tokio::test(start_paused = true)]
async fn a_ttl_at_the_maximum_keeps_the_result_instead_of_panicking() {
    let store = Store::builder()
        .ttl(Duration::MAX)
        .max_wait(Duration::MAX)
        .build();
    let svc = park::Service::new(store.clone());
    let (_, headers, _) = split(original(&store, None, 2).await).await;
    let loc = location(&headers);
    tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
    let (status, _, body) = split(ask(&svc, request("GET", &loc, None)).await).await;
    assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"report"[..]));
    assert_eq!(store.running(), 0);
}
