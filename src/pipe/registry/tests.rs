//! The registry and its sweeper under paused time: exact expiry instants.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::*;
use crate::pipe::body::UploadBody;
use crate::pipe::hooks::Socket;

/// A registry whose expiries are reported on a channel, with the time
/// each happened.
fn registry() -> (Registry, mpsc::UnboundedReceiver<Instant>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let registry = Registry::new(Box::new(move |_state| {
        let _ = tx.send(Instant::now());
    }));
    (registry, rx)
}

const SECRET: &str = "0123456789abcdefghijkl";

fn reserve(registry: &Registry, id: &str, deadline: Instant) -> u64 {
    let ticket = Ticket::new(SECRET.to_owned(), None);
    match registry.insert(id, State::Reserved, Some(ticket), deadline, 1000) {
        Ok(serial) => serial,
        Err(_) => panic!("{id} refused"),
    }
}

fn upload() -> Box<Upload> {
    let (_response, completion) = crate::DelayedResponse::new().handle();
    Box::new(Upload {
        body: UploadBody::boxed(http_body_util::Empty::new().map_err(|e| match e {})),
        boundary: None,
        completion,
        socket: Socket {
            id: String::new(),
            url: String::new(),
            filename: None,
            content_type: None,
            content_length: None,
            query: None,
        },
        permit: None,
    })
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn sockets_expire_at_their_deadlines_exactly_in_deadline_order() {
    let (registry, mut expired) = registry();
    let t0 = Instant::now();
    reserve(&registry, "c", t0 + 30 * SEC);
    reserve(&registry, "a", t0 + 10 * SEC);
    reserve(&registry, "b", t0 + 20 * SEC);
    for due in [10, 20, 30] {
        // Paused time jumps straight to the sweeper's next timer.
        assert_eq!(expired.recv().await, Some(t0 + due * SEC));
        assert_eq!(registry.len(), 3 - due as usize / 10);
    }
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wakes_a_sleeping_sweeper() {
    let (registry, mut expired) = registry();
    let t0 = Instant::now();
    reserve(&registry, "late", t0 + 600 * SEC);
    // Let the sweeper go to sleep until t0 + 600 s.
    tokio::task::yield_now().await;
    reserve(&registry, "early", t0 + 5 * SEC);
    assert_eq!(expired.recv().await, Some(t0 + 5 * SEC));
    assert_eq!(registry.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_the_secret_opens_a_reservation_and_a_taken_one_never_expires() {
    let (registry, mut expired) = registry();
    let t0 = Instant::now();
    reserve(&registry, "r", t0 + SEC);
    reserve(&registry, "kept", t0 + 2 * SEC);
    assert!(registry.open_reserved("r", "wrong", upload()).is_err());
    assert!(registry.open_reserved("r", &SECRET[1..], upload()).is_err());
    assert!(registry.open_reserved("r", SECRET, upload()).is_ok());
    // Opened once: the secret does not open it again.
    assert!(registry.open_reserved("r", SECRET, upload()).is_err());
    assert!(matches!(registry.tap("r"), Tapped::Taken(_, Some(_))));
    assert_eq!(expired.recv().await, Some(t0 + 2 * SEC));
    assert_eq!(registry.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rearmed_reservation_keeps_its_deadline_and_secret() {
    let (registry, mut expired) = registry();
    let t0 = Instant::now();
    reserve(&registry, "r", t0 + 10 * SEC);
    assert!(registry.open_reserved("r", SECRET, upload()).is_ok());
    let Tapped::Taken(_, Some(rearm)) = registry.tap("r") else {
        panic!("not taken with its reservation");
    };
    assert_eq!(registry.len(), 0);
    registry.rearm("r", rearm);
    assert!(matches!(registry.tap("r"), Tapped::Reserved));
    assert!(registry.open_reserved("r", SECRET, upload()).is_ok());
    assert_eq!(expired.recv().await, Some(t0 + 10 * SEC));
}

#[tokio::test(start_paused = true)]
async fn a_left_sender_rearms_a_reservation_frees_a_socket_or_keeps_a_whole_upload() {
    let (registry, _expired) = registry();
    let weak = registry.downgrade();
    let t0 = Instant::now();
    reserve(&registry, "r", t0 + SEC);
    let serial = registry.open_reserved("r", SECRET, upload()).ok().unwrap();
    // A stale serial touches nothing.
    assert!(matches!(
        weak.sender_left("r", serial + 1, false, |_| false),
        Left::Gone
    ));
    assert!(matches!(
        weak.sender_left("r", serial, false, |_| true),
        Left::Kept
    ));
    assert!(matches!(
        weak.sender_left("r", serial, false, |_| false),
        Left::Rearmed(_)
    ));
    assert!(matches!(registry.tap("r"), Tapped::Reserved));
    let again = registry.open_reserved("r", SECRET, upload()).ok().unwrap();
    // The first upload's hook does not touch the second.
    assert!(matches!(
        weak.sender_left("r", serial, true, |_| true),
        Left::Gone
    ));
    // On shutdown even a reservation goes.
    assert!(matches!(
        weak.sender_left("r", again, true, |_| true),
        Left::Freed(_)
    ));
    assert_eq!(registry.len(), 0);
    let serial = registry
        .insert("s", State::Waiting(upload()), None, t0 + SEC, 10)
        .ok()
        .unwrap();
    assert!(matches!(
        weak.sender_left("s", serial, false, |_| false),
        Left::Freed(_)
    ));
    assert_eq!(registry.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_sweeper_serves_every_socket_and_stops_with_the_registry() {
    let (registry, mut expired) = registry();
    let before = alive_tasks();
    let t0 = Instant::now();
    for i in 0..100 {
        reserve(
            &registry,
            &i.to_string(),
            t0 + SEC + Duration::from_millis(i),
        );
    }
    assert_eq!(alive_tasks(), before + 1);
    assert_eq!(expired.recv().await, Some(t0 + SEC));
    let weak = registry.downgrade();
    drop(registry);
    // The sweeper wakes, stops, and lets the sockets go.
    while weak.0.strong_count() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(alive_tasks(), before);
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_and_taken_ids_refuse_and_give_the_state_back() {
    let (registry, _expired) = registry();
    let deadline = Instant::now() + SEC;
    let insert = |id| registry.insert(id, State::Reserved, None, deadline, 2);
    assert!(insert("a").is_ok());
    assert!(matches!(
        insert("a"),
        Err(Refused::Taken(State::Reserved, None))
    ));
    assert!(insert("b").is_ok());
    assert!(matches!(
        insert("c"),
        Err(Refused::Full(State::Reserved, None))
    ));
}
