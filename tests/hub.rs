//! The hub over real sockets: publish, SSE subscribe (single and
//! multiplexed), replay with cursors, gaps, in-process subscriptions,
//! shutdown, and every bad input.
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use delayed_response::backplane::MemoryBackplane;
use delayed_response::hub::{Builder, Hub, Item, Namespace, Publishers};
use futures_util::StreamExt;
use serde_json::Value;
use support::sse::{SseEvent, SseStream};
use support::*;

/// Anyone may publish; no limits.
fn open() -> Builder {
    Hub::builder()
        .default_namespace(Namespace::new().publishers(Publishers::Anyone))
        .no_limits()
}

async fn publish(addr: SocketAddr, channel: &str, body: &str) -> RawResponse {
    post(addr, &format!("/pub/{channel}"), Some("text/plain"), body).await
}

async fn get_raw(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let mut stream = send_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n"),
    )
    .await;
    read_response(&mut stream).await
}

fn json(res: &RawResponse) -> Value {
    serde_json::from_slice(&res.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.text()))
}

async fn next(s: &mut SseStream) -> SseEvent {
    s.next_event().await.expect("the stream ended")
}

/// Waits until `hub` has `n` connections (a stream is registered before
/// its head goes out, so this is only for streams opened elsewhere).
async fn connections(hub: &Hub, n: usize) {
    eventually("the connection count", || hub.stats().connections == n).await;
}

#[tokio::test]
async fn publish_answers_202_without_subscribers_and_201_with_the_count() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let res = publish(server.addr, "news", "hello").await;
    assert_eq!(res.status, 202);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let body = json(&res);
    assert_eq!(body["subscribers"], 0);
    assert!(body["id"].is_string());

    let mut sub = SseStream::open(server.addr, "/sub/news").await;
    assert_eq!(sub.status, 200);
    assert_eq!(
        sub.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(sub.header("cache-control"), Some("no-cache"));
    assert_eq!(sub.header("x-accel-buffering"), Some("no"));
    let res = publish(server.addr, "news", "second").await;
    assert_eq!(res.status, 201);
    assert_eq!(json(&res)["subscribers"], 1);
    let event = next(&mut sub).await;
    assert_eq!(event.event, "message");
    assert_eq!(event.data, "second");
    assert_eq!(event.id.as_deref(), json(&res)["id"].as_str());
    server.stop().await;
}

#[tokio::test]
async fn data_arrives_byte_for_byte_with_lines_and_unicode() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let mut sub = SseStream::open(server.addr, "/sub/t").await;
    let body = "line one\nline two: {\"x\": 1}\n\n  spaced ünïcødé";
    assert_eq!(publish(server.addr, "t", body).await.status, 201);
    assert_eq!(next(&mut sub).await.data, body);
    server.stop().await;
}

#[tokio::test]
async fn a_multiplexed_stream_names_each_event_by_its_channel() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let mut sub = SseStream::open(server.addr, "/sub?channel=b&channel=a&channel=b").await;
    assert_eq!(sub.status, 200);
    hub.publish("a", "to a").await.unwrap();
    hub.publish("b", "to b").await.unwrap();
    hub.publish("c", "to nobody").await.unwrap();
    let first = next(&mut sub).await;
    assert_eq!((first.event.as_str(), first.data.as_str()), ("a", "to a"));
    let second = next(&mut sub).await;
    assert_eq!((second.event.as_str(), second.data.as_str()), ("b", "to b"));
    // One cursor covers both channels: two positions.
    assert_eq!(second.id.unwrap().split('.').count(), 2);
    assert_eq!(hub.stats().channels, 2);
    server.stop().await;
}

#[tokio::test]
async fn reconnecting_with_last_event_id_replays_exactly_what_was_missed() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let mut sub = SseStream::open(server.addr, "/sub/room").await;
    for i in 0..3 {
        hub.publish("room", format!("m{i}")).await.unwrap();
    }
    let mut last = None;
    for i in 0..3 {
        let e = next(&mut sub).await;
        assert_eq!(e.data, format!("m{i}"));
        last = e.id;
    }
    drop(sub);
    connections(&hub, 0).await;
    for i in 3..6 {
        hub.publish("room", format!("m{i}")).await.unwrap();
    }
    let header = format!("Last-Event-ID: {}\r\n", last.unwrap());
    let mut sub = SseStream::open_with(server.addr, "/sub/room", &header).await;
    hub.publish("room", "m6").await.unwrap();
    for i in 3..7 {
        assert_eq!(next(&mut sub).await.data, format!("m{i}"));
    }
    hub.publish("room", "m7").await.unwrap();
    assert_eq!(next(&mut sub).await.data, "m7");
    server.stop().await;
}

#[tokio::test]
async fn a_multiplexed_replay_covers_every_channel_in_order_once() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let path = "/sub?channel=x&channel=y";
    let mut sub = SseStream::open(server.addr, path).await;
    hub.publish("x", "x0").await.unwrap();
    hub.publish("y", "y0").await.unwrap();
    next(&mut sub).await;
    let cursor = next(&mut sub).await.id.unwrap();
    drop(sub);
    connections(&hub, 0).await;
    for (ch, data) in [("y", "y1"), ("x", "x1"), ("y", "y2"), ("x", "x2")] {
        hub.publish(ch, data).await.unwrap();
    }
    let mut sub =
        SseStream::open_with(server.addr, path, &format!("Last-Event-ID: {cursor}\r\n")).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = next(&mut sub).await;
        got.push(format!("{}:{}", e.event, e.data));
    }
    got.sort();
    assert_eq!(got, ["x:x1", "x:x2", "y:y1", "y:y2"]);
    // Nothing twice: the next event is live.
    hub.publish("x", "x3").await.unwrap();
    assert_eq!(next(&mut sub).await.data, "x3");
    server.stop().await;
}

#[tokio::test]
async fn a_first_connect_resumes_from_the_last_event_id_query() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let first = hub.publish("q", "seen at render").await.unwrap();
    hub.publish("q", "after render").await.unwrap();
    let path = format!("/sub/q?last_event_id={}", first.id);
    let mut sub = SseStream::open(server.addr, &path).await;
    assert_eq!(next(&mut sub).await.data, "after render");
    server.stop().await;
}

#[tokio::test]
async fn an_evicted_cursor_gets_a_gap_naming_only_that_channel_then_live() {
    let hub = open()
        .namespace(
            "short.",
            Namespace::new()
                .history(2, Duration::from_secs(60))
                .publishers(Publishers::Anyone),
        )
        .build();
    let server = serve(hub.service()).await;
    let old_short = hub.publish("short.a", "0").await.unwrap();
    let keep = hub.publish("long", "0").await.unwrap();
    for i in 1..4 {
        hub.publish("short.a", format!("{i}")).await.unwrap();
    }
    hub.publish("long", "1").await.unwrap();
    // Cursor order is the sorted channel order: "long", then "short.a".
    let cursor = format!("{}.{}", keep.id, old_short.id);
    let path = format!("/sub?channel=short.a&channel=long&last_event_id={cursor}");
    let mut sub = SseStream::open(server.addr, &path).await;
    let gap = next(&mut sub).await;
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.json()["channels"], serde_json::json!(["short.a"]));
    let replayed = next(&mut sub).await;
    assert_eq!(
        (replayed.event.as_str(), replayed.data.as_str()),
        ("long", "1")
    );
    hub.publish("short.a", "live").await.unwrap();
    assert_eq!(next(&mut sub).await.data, "live");
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_from_another_epoch_gets_a_gap() {
    let other = open().build();
    let foreign = other.publish("e", "elsewhere").await.unwrap();
    let hub = open().build();
    let server = serve(hub.service()).await;
    hub.publish("e", "here").await.unwrap();
    let mut sub = SseStream::open_with(
        server.addr,
        "/sub/e",
        &format!("Last-Event-ID: {}\r\n", foreign.id),
    )
    .await;
    let gap = next(&mut sub).await;
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.json()["channels"], serde_json::json!(["e"]));
    hub.publish("e", "live").await.unwrap();
    assert_eq!(next(&mut sub).await.data, "live");
    server.stop().await;
}

#[tokio::test]
async fn in_process_subscriptions_replay_and_resume_from_a_cursor() {
    let hub = open().build();
    let mut sub = hub.subscribe(&["a", "b"], None).await.unwrap();
    hub.publish("b", "1").await.unwrap();
    let cursor = match sub.next().await.unwrap() {
        Item::Message {
            channel,
            data,
            cursor,
            ..
        } => {
            assert_eq!((&*channel, &data[..]), ("b", &b"1"[..]));
            cursor
        }
        other => panic!("{other:?}"),
    };
    drop(sub);
    hub.publish("a", "2").await.unwrap();
    let mut sub = hub.subscribe(&["b", "a"], Some(&cursor)).await.unwrap();
    match sub.next().await.unwrap() {
        Item::Message { channel, data, .. } => assert_eq!((&*channel, &data[..]), ("a", &b"2"[..])),
        other => panic!("{other:?}"),
    }
    assert!(hub
        .subscribe(&["a"], Some("junk"))
        .await
        .unwrap_err()
        .is_invalid());
    assert!(hub
        .subscribe(&["no space"], None)
        .await
        .unwrap_err()
        .is_invalid());
}

#[tokio::test]
async fn broadcast_reaches_every_stream_once_without_moving_cursors() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let mut single = SseStream::open(server.addr, "/sub/a").await;
    let mut multi = SseStream::open(server.addr, "/sub?channel=a&channel=b").await;
    let mut inproc = hub.subscribe(&["z"], None).await.unwrap();
    let sent = hub.broadcast("all hands").await.unwrap();
    assert_eq!(sent.subscribers, 3);
    let e = next(&mut single).await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("message", "all hands")
    );
    let e = next(&mut multi).await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("broadcast", "all hands")
    );
    assert!(matches!(inproc.next().await, Some(Item::Broadcast { .. })));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_and_reports_shutdown() {
    let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = reasons.clone();
    let hub = open()
        .on_unsubscribe(move |_, _, reason| r.lock().unwrap().push(reason))
        .build();
    let server = serve(hub.service()).await;
    let mut sub = SseStream::open(server.addr, "/sub/a").await;
    server.shutdown.trigger();
    assert!(!sub.end().await, "a shutdown cuts the stream");
    eventually("the hook", || reasons.lock().unwrap().len() == 1).await;
    assert_eq!(
        reasons.lock().unwrap()[0],
        delayed_response::hub::Reason::Shutdown
    );
    server.stop().await;
}

#[tokio::test]
async fn two_hubs_on_one_backplane_see_each_others_messages_and_history() {
    let backplane = Arc::new(MemoryBackplane::new());
    let a = open().backplane(backplane.clone()).build();
    let b = open().backplane(backplane).build();
    let server_b = serve(b.service()).await;
    let mut sub = SseStream::open(server_b.addr, "/sub/shared").await;
    let first = a.publish("shared", "from a").await.unwrap();
    assert_eq!(first.subscribers, 0, "a has no local subscribers");
    assert_eq!(next(&mut sub).await.data, "from a");
    a.publish("shared", "again").await.unwrap();
    let mut replay = b.subscribe(&["shared"], Some(&first.id)).await.unwrap();
    assert!(
        matches!(replay.next().await, Some(Item::Message { data, .. }) if &data[..] == b"again")
    );
    server_b.stop().await;
}

// ---- bad input: a clear 4xx, and nothing changes ----

#[tokio::test]
async fn bad_channel_names_are_400() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let long = "a".repeat(129);
    for path in [
        "/sub/a%20b".to_string(),
        "/sub/a/b".into(),
        format!("/sub/{long}"),
        "/sub/".into(),
        "/sub?channel=ok&channel=b%2Fad".into(),
        "/sub".into(),
        "/poll/".into(),
        "/presence/a*b".into(),
    ] {
        let res = get_raw(server.addr, &path, "").await;
        assert_eq!(res.status, 400, "{path}: {}", res.text());
    }
    assert_eq!(publish(server.addr, "bad%20name", "x").await.status, 400);
    assert_eq!(publish(server.addr, &long, "x").await.status, 400);
    assert_eq!(hub.stats().messages_in, 0);
    assert_eq!(hub.stats().connections, 0);
    server.stop().await;
}

#[tokio::test]
async fn too_many_channels_and_reserved_names_on_a_multiplexed_stream_are_400() {
    let hub = open().max_channels(3).build();
    let server = serve(hub.service()).await;
    let res = get_raw(
        server.addr,
        "/sub?channel=a&channel=b&channel=c&channel=d",
        "",
    )
    .await;
    assert_eq!(res.status, 400);
    assert!(res.text().contains("too many"));
    // Duplicates count once.
    let ok = SseStream::open(server.addr, "/sub?channel=a&channel=a&channel=b&channel=c").await;
    assert_eq!(ok.status, 200);
    drop(ok);
    let res = get_raw(server.addr, "/sub?channel=a&channel=join", "").await;
    assert_eq!(res.status, 400);
    // A single-channel stream may use the name.
    assert_eq!(SseStream::open(server.addr, "/sub/join").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn malformed_cursors_are_400() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    for (path, extra) in [
        ("/sub/a?last_event_id=nope", ""),
        ("/sub/a", "Last-Event-ID: 1-1.2-2\r\n"),
        ("/sub?channel=a&channel=b", "Last-Event-ID: 1-1\r\n"),
        ("/poll/a?cursor=zz-1", ""),
    ] {
        let res = get_raw(server.addr, path, extra).await;
        assert_eq!(res.status, 400, "{path} {extra}");
        assert!(res.text().contains("cursor"));
    }
    assert_eq!(hub.stats().connections, 0);
    server.stop().await;
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let res = get_raw(server.addr, "/pub/a", "").await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("POST"));
    let res = post(server.addr, "/sub/a", None, "").await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("GET, HEAD"));
    let res = post(server.addr, "/stats", None, "").await;
    assert_eq!(res.status, 405);
    for path in ["/", "/nope", "/pub", "/subscribe/a", "/stats/x"] {
        assert_eq!(get_raw(server.addr, path, "").await.status, 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_and_not_utf8_is_400() {
    let hub = open().body_limit(1024).build();
    let server = serve(hub.service()).await;
    let res = publish(server.addr, "a", &"x".repeat(1025)).await;
    assert_eq!(res.status, 413);
    // Chunked, with no length to check first.
    let mut stream = send_raw(
        server.addr,
        &format!(
            "POST /pub/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            2000,
            "y".repeat(2000)
        ),
    )
    .await;
    assert_eq!(read_response(&mut stream).await.status, 413);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"POST /pub/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\n\xff\xfe")
        .await
        .unwrap();
    let res = read_response(&mut stream).await;
    assert_eq!(res.status, 400);
    assert!(res.text().contains("UTF-8"));
    assert_eq!(hub.stats().messages_in, 0);
    server.stop().await;
}

#[tokio::test]
async fn stats_count_channels_connections_and_messages() {
    let hub = open().build();
    let server = serve(hub.service()).await;
    let _a = SseStream::open(server.addr, "/sub/a").await;
    let _b = SseStream::open(server.addr, "/sub?channel=a&channel=b").await;
    hub.publish("a", "x").await.unwrap();
    let res = get_raw(server.addr, "/stats", "").await;
    assert_eq!(res.status, 200);
    let stats = json(&res);
    assert_eq!(stats["channels"], 2);
    assert_eq!(stats["connections"], 2);
    assert_eq!(stats["users"], 0);
    assert_eq!(stats["messages_in"], 1);
    assert_eq!(stats["messages_out"], 2);
    server.stop().await;
}

// ---- tower ----

#[tokio::test]
async fn the_service_mounts_under_axum_nest_service() {
    let hub = open().build();
    let app = axum::Router::new().nest_service("/hub", hub.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut sub = SseStream::open(addr, "/hub/sub/news").await;
    assert_eq!(sub.status, 200);
    let res = publish_at(addr, "/hub/pub/news", "via axum").await;
    assert_eq!(res.status, 201);
    assert_eq!(next(&mut sub).await.data, "via axum");
    let res = get_raw(addr, "/hub/stats", "").await;
    assert_eq!(json(&res)["connections"], 1);
    assert_eq!(get_raw(addr, "/hub/nope", "").await.status, 404);
    task.abort();
}

async fn publish_at(addr: SocketAddr, path: &str, body: &str) -> RawResponse {
    post(addr, path, Some("text/plain"), body).await
}

/// Regression (found by the soak harness, `soak/`): a publish kept its body
/// as the slice the server handed over, and hyper hands over a slice of the
/// connection's read buffer, so each message in history pinned that whole
/// buffer (kilobytes for a few bytes; +3 MiB of live heap after a minute of
/// small publishes, until history let them go). The hub keeps a copy.
#[tokio::test]
async fn a_published_message_does_not_pin_the_buffer_it_arrived_in() {
    let hub = open().build();
    let mut sub = hub.subscribe(&["pinned"], None).await.expect("subscribe");
    let buffer = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let body = http_body_util::Full::new(buffer.slice(..5));
    let req = http::Request::post("/pub/pinned")
        .body(body)
        .expect("a request");
    let res = match hub.service().respond(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    assert_eq!(res.status(), http::StatusCode::CREATED);
    let Some(Item::Message { data, .. }) = sub.next().await else {
        panic!("no message");
    };
    assert_eq!(&data[..], b"xxxxx");
    assert!(
        !buffer.as_ptr_range().contains(&data.as_ptr()),
        "the message is a slice of the buffer its request arrived in"
    );
}
