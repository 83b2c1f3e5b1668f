//! `park` across instances through Redis: two stores (instances) on their
//! own ports and their own backplane connections, one real `redis-server`.
#![cfg(all(feature = "redis", feature = "park"))]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::RedisBackplane;
use delayed_response::limit::ClientKey;
use delayed_response::park::{self, Store};
use delayed_response::{Body, DelayedResponse};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use support::redis::RedisServer;
use support::*;
use tokio::sync::{mpsc, oneshot, watch};

/// A lease long enough that a periodic re-read (every third of it) cannot
/// stand in for a wake-up within the test's patience.
const LONG_LEASE: Duration = Duration::from_secs(30);

/// One instance: a store on its own Redis connection, served on its own
/// port (`POST /jobs` parks at once with `Prefer: respond-async`; the job
/// waits for `gate`, then answers `201 done`).
struct Instance {
    store: Store,
    server: TestServer,
    gate: watch::Sender<bool>,
    /// A job's work dropped before it finished (cancelled).
    dropped: mpsc::UnboundedReceiver<()>,
}

async fn instance(url: String, lease: Duration, ttl: Duration) -> Instance {
    let backplane = RedisBackplane::builder(url)
        .timeout(Duration::from_millis(500))
        .lease(lease)
        .connect()
        .await
        .expect("connect to redis");
    let store = Store::builder()
        .ttl(ttl)
        .backplane(Arc::new(backplane))
        .build();
    // Jobs parked with `x-user` are that user's alone.
    let status = park::Service::new(store.clone()).owner(|parts| {
        let user = parts.headers.get("x-user")?;
        user.to_str().ok().map(String::from)
    });
    let (gate, gate_rx) = watch::channel(false);
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let parked = store.clone();
    let server = serve_fn(move |req: http::Request<Incoming>| {
        let (store, status) = (parked.clone(), status.clone());
        let (gate, dropped) = (gate_rx.clone(), dropped_tx.clone());
        async move {
            if req.uri().path().starts_with("/jobs/") {
                let Ok(res) = status.respond(req).await;
                return res;
            }
            let client = ClientKey::from_extensions(req.extensions());
            let mut delayed = DelayedResponse::for_request(&req)
                .timeout(Duration::from_secs(1))
                .park(store, client);
            if let Some(user) = req.headers().get("x-user").and_then(|u| u.to_str().ok()) {
                delayed = delayed.park_owner(user);
            }
            delayed.wait(work(gate, dropped)).await
        }
    })
    .await;
    Instance {
        store,
        server,
        gate,
        dropped,
    }
}

/// Sends `()` when dropped armed: the work was cancelled.
struct OnDrop(Option<mpsc::UnboundedSender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

async fn work(
    mut gate: watch::Receiver<bool>,
    dropped: mpsc::UnboundedSender<()>,
) -> Response<Body> {
    let mut armed = OnDrop(Some(dropped));
    let _ = gate.wait_for(|open| *open).await;
    armed.0 = None;
    let mut res = Response::new(Body::from("done"));
    *res.status_mut() = StatusCode::CREATED;
    res.headers_mut()
        .insert("x-job", http::HeaderValue::from_static("finished"));
    res
}

async fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> RawResponse {
    let mut stream = send_raw(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: 0\r\n\r\n"
        ),
    )
    .await;
    read_response(&mut stream).await
}

/// Parks a job on `addr`; its status path.
async fn park(addr: SocketAddr) -> String {
    park_with(addr, "").await
}

/// Parks a job on `addr` with more headers; its status path.
async fn park_with(addr: SocketAddr, headers: &str) -> String {
    let headers = format!("Prefer: respond-async\r\n{headers}");
    let res = request(addr, "POST", "/jobs", &headers).await;
    assert_eq!(res.status, 202, "{}", res.text());
    res.header("location").expect("a Location").to_string()
}

async fn status(addr: SocketAddr, path: &str) -> RawResponse {
    request(addr, "GET", path, "").await
}

/// Waits until Redis has `n` subscribers on the topic of the job at `path`
/// (a long-poll is waiting for it).
async fn long_polled(redis: &RedisServer, path: &str) {
    let id = path.rsplit('/').next().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = redis.command(&format!("PUBSUB NUMSUB dr:t:job:{id}")).await;
        if reply.ends_with(":1\r\n") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no long-poll subscribed: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_result_parked_on_a_is_fetched_from_b() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park(a.server.addr).await;
    let res = status(b.server.addr, &path).await;
    assert_eq!(res.status, 202, "running, seen from b: {}", res.text());
    assert_eq!(res.header("location"), Some(path.as_str()));
    assert_eq!(res.header("retry-after"), Some("1"));
    a.gate.send_replace(true);
    let res = request(b.server.addr, "GET", &path, "Prefer: wait=5\r\n").await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.text(), "done");
    assert_eq!(res.header("x-job"), Some("finished"), "its headers too");
    // On a too, from Redis: the result leaves a's memory.
    eventually("a to hand the result to Redis", || a.store.is_empty()).await;
    let res = status(a.server.addr, &path).await;
    assert_eq!((res.status, res.text().as_str()), (201, "done"));
    // Deleted on b: gone everywhere.
    assert_eq!(
        request(b.server.addr, "DELETE", &path, "").await.status,
        204
    );
    assert_eq!(status(a.server.addr, &path).await.status, 404);
    assert_eq!(status(b.server.addr, &path).await.status, 404);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_long_poll_on_b_is_woken_when_the_job_finishes_on_a() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park(a.server.addr).await;
    let (b_addr, poll_path) = (b.server.addr, path.clone());
    let poll =
        tokio::spawn(
            async move { request(b_addr, "GET", &poll_path, "Prefer: wait=20\r\n").await },
        );
    long_polled(&redis, &path).await;
    a.gate.send_replace(true);
    // Well within a third of the lease (the re-read period): woken by the
    // job's end.
    let res = within("the long-poll to be woken", poll).await.unwrap();
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.text(), "done");
    assert_eq!(res.header("preference-applied"), Some("wait=20"));
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn an_owned_job_is_its_owners_alone_on_every_instance() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park_with(a.server.addr, "x-user: alice\r\n").await;
    let (alice, bob) = ("x-user: alice\r\n", "x-user: bob\r\n");
    for who in ["", bob] {
        let res = request(b.server.addr, "GET", &path, who).await;
        assert_eq!(res.status, 404, "{who:?}: {}", res.text());
        let res = request(b.server.addr, "DELETE", &path, who).await;
        assert_eq!(res.status, 404, "{who:?}: {}", res.text());
    }
    assert_eq!(
        request(b.server.addr, "GET", &path, alice).await.status,
        202
    );
    a.gate.send_replace(true);
    let waited = format!("Prefer: wait=5\r\n{alice}");
    let res = request(b.server.addr, "GET", &path, &waited).await;
    assert_eq!((res.status, res.text().as_str()), (201, "done"));
    let res = request(b.server.addr, "GET", &path, bob).await;
    assert_eq!(res.status, 404, "a result is its owner's too");
    assert_eq!(
        request(b.server.addr, "DELETE", &path, alice).await.status,
        204
    );
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_delete_on_b_cancels_the_job_on_a() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let mut a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park(a.server.addr).await;
    assert_eq!(a.store.running(), 1);
    let res = request(b.server.addr, "DELETE", &path, "").await;
    assert_eq!(res.status, 204, "{}", res.text());
    within("the work on a to be cancelled", a.dropped.recv())
        .await
        .unwrap();
    eventually("a to forget the job", || a.store.running() == 0).await;
    assert_eq!(status(a.server.addr, &path).await.status, 404);
    assert_eq!(status(b.server.addr, &path).await.status, 404);
    assert_eq!(
        request(b.server.addr, "DELETE", &path, "").await.status,
        404
    );
    // A DELETE on the owner itself drops the record too: b says 404, not
    // "lost".
    let path = park(a.server.addr).await;
    assert_eq!(
        request(a.server.addr, "DELETE", &path, "").await.status,
        204
    );
    within("the work on a to be cancelled", a.dropped.recv())
        .await
        .unwrap();
    assert_eq!(status(b.server.addr, &path).await.status, 404);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn a_job_whose_instance_died_answers_its_loss_on_b() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Short, but with room for renewals on a busy machine (every third).
    let lease = Duration::from_secs(1);
    let ttl = Duration::from_secs(60);
    // Instance a in a runtime of its own: shutting that down stops
    // everything a does (its lease renewals, its Redis connections) at
    // once, as the death of its process would.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (up, a_addr) = oneshot::channel();
    let url = redis.url();
    runtime.spawn(async move {
        let a = instance(url, lease, ttl).await;
        let _ = up.send(a.server.addr);
        std::future::pending::<()>().await;
        drop(a);
    });
    let a_addr = within("a to start", a_addr).await.unwrap();
    let b = instance(redis.url(), lease, ttl).await;
    let path = park(a_addr).await;
    // Running while a lives, for longer than a lease (a renews it).
    let res = request(b.server.addr, "GET", &path, "Prefer: wait=2\r\n").await;
    assert_eq!(res.status, 202, "{}", res.text());
    runtime.shutdown_background();
    // A long-poll on b learns of the loss within about a lease.
    let res = request(b.server.addr, "GET", &path, "Prefer: wait=4\r\n").await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert_eq!(res.text(), "job lost: the instance running it stopped\n");
    let res = status(b.server.addr, &path).await;
    assert_eq!(res.status, 500, "and stays lost");
    b.server.stop().await;
}

#[tokio::test]
async fn a_result_is_kept_for_its_ttl() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park(a.server.addr).await;
    a.gate.send_replace(true);
    let res = request(b.server.addr, "GET", &path, "Prefer: wait=5\r\n").await;
    assert_eq!(res.status, 201, "{}", res.text());
    let id = path.rsplit('/').next().unwrap();
    let pttl = redis.command(&format!("PTTL dr:j:{id}")).await;
    let pttl: i64 = pttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(
        0 < pttl && pttl <= 1500,
        "the record expires with the TTL: {pttl} ms"
    );
    // Expiry has no event to await: look until it is gone.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let res = status(b.server.addr, &path).await;
        if res.status == 404 {
            break;
        }
        assert_eq!(res.status, 201, "{}", res.text());
        assert!(
            tokio::time::Instant::now() < deadline,
            "the result never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn redis_unreachable_answers_503_with_retry_after() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_secs(60);
    let a = instance(redis.url(), LONG_LEASE, ttl).await;
    let b = instance(redis.url(), LONG_LEASE, ttl).await;
    let path = park(a.server.addr).await;
    redis.stop();
    let res = status(b.server.addr, &path).await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(res.text(), "the job store is unreachable; retry later\n");
    let res = request(a.server.addr, "POST", "/jobs", "Prefer: respond-async\r\n").await;
    assert_eq!(
        res.status, 503,
        "nothing parked that no instance could answer"
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    let res = request(b.server.addr, "DELETE", &path, "").await;
    assert_eq!(res.status, 503, "{}", res.text());
    // The job a runs is still answered by a, from its memory.
    assert_eq!(status(a.server.addr, &path).await.status, 202);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test]
async fn two_async_jobs_processes_share_their_jobs() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let start = || {
        let mut cmd = support::example::example("async_jobs");
        cmd.args(["--redis", &redis.url()]);
        cmd
    };
    let a = support::example::listen(&mut start(), "http").await;
    let b = support::example::listen(&mut start(), "http").await;
    let res = request(
        a.addr,
        "POST",
        "/jobs?work_ms=300",
        "Prefer: respond-async\r\n",
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let path = res.header("location").unwrap().to_string();
    let res = request(b.addr, "GET", &path, "Prefer: wait=10\r\n").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, r#"{"slept_ms":300}"#),
        "the result of a's job, from b"
    );
    assert_eq!(request(b.addr, "DELETE", &path, "").await.status, 204);
    assert_eq!(status(a.addr, &path).await.status, 404);
}
