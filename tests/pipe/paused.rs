//! The service called directly (no sockets) under tokio's paused time: exact
//! expiry instants, and what a waiting socket costs in tasks.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use tokio::time::Instant;

use super::*;

type Stalled = StreamBody<futures_util::stream::Pending<Result<Frame<Bytes>, Infallible>>>;

/// A sender whose upload has not begun (and never will).
fn stalled_upload() -> Request<Stalled> {
    Request::post("/")
        .header("host", "test")
        .body(StreamBody::new(futures_util::stream::pending()))
        .unwrap()
}

fn get_req(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "test")
        .body(Empty::new())
        .unwrap()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn next_text(body: &mut delayed_response::Body) -> String {
    let frame = body.frame().await.unwrap().unwrap();
    String::from_utf8_lossy(&frame.into_data().unwrap()).into_owned()
}

const TTL: Duration = Duration::from_secs(10);

fn quiet_pipe() -> Builder {
    // Heartbeats far beyond the TTL: the next frame after the URL line is
    // the timeout line.
    pipe::Service::builder()
        .ttl(TTL)
        .heartbeat(Heartbeat::every(Duration::from_secs(3600)))
}

#[tokio::test(start_paused = true)]
async fn waiting_senders_have_no_task_of_their_own_and_time_out_at_the_ttl_exactly() {
    let pipe = quiet_pipe().build();
    let before = alive_tasks();
    let t0 = Instant::now();
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let res = pipe.respond(stalled_upload()).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        assert!(next_text(&mut body).await.starts_with("http://test/"));
        bodies.push(body);
    }
    // One sweeper for the whole registry; nothing per socket.
    assert_eq!(alive_tasks(), before + 1);
    assert_eq!(pipe.waiting(), 50);
    for body in &mut bodies {
        let line = next_text(body).await;
        assert!(line.starts_with("timeout: nobody fetched"), "{line}");
        assert_eq!(Instant::now(), t0 + TTL);
    }
    assert_eq!(pipe.waiting(), 0);
    drop(pipe);
    // The sweeper stops with the last clone of the service.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(alive_tasks(), before);
}

#[tokio::test(start_paused = true)]
async fn a_reservation_expires_at_its_ttl_exactly() {
    let pipe = quiet_pipe().reservations(true).build();
    let t0 = Instant::now();
    let res = pipe.respond(get_req("/reserve")).await.unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::advance(TTL - Duration::from_millis(1)).await;
    assert_eq!(pipe.waiting(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    // The sweeper's timer fired; let it run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pipe.waiting(), 0);
    assert_eq!(Instant::now(), t0 + TTL);
}

/// Hands out `first` twice, then `second` (a scheme that collides).
struct Colliding {
    calls: Arc<AtomicUsize>,
}

impl pipe::IdScheme for Colliding {
    fn generate(&self) -> Result<String, delayed_response::BoxError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(["first", "first", "second"][n.min(2)].to_owned())
    }
    fn is_valid(&self, id: &str) -> bool {
        id == "first" || id == "second"
    }
}

#[tokio::test(start_paused = true)]
async fn a_colliding_id_is_drawn_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pipe = quiet_pipe()
        .reservations(true)
        .ids(Colliding {
            calls: calls.clone(),
        })
        .build();
    let mut first = pipe.respond(stalled_upload()).await.unwrap().into_body();
    assert_eq!(next_text(&mut first).await, "http://test/first\n");
    let mut second = pipe.respond(stalled_upload()).await.unwrap().into_body();
    assert_eq!(next_text(&mut second).await, "http://test/second\n");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Every id is taken now: a reservation gives up after a few draws.
    let res = pipe.respond(get_req("/reserve")).await.unwrap();
    assert_eq!(res.status(), 503);
}
