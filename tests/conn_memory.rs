//! What an idle keep-alive connection costs the server in live heap bytes,
//! counted by a global allocator (not RSS, so it holds on a noisy machine).
//!
//! The default server (HTTP/1.1 and h2c on one port) must not cost an
//! HTTP/1.1 connection more than 10 % over `http1_only`: telling the two
//! protocols apart used to cost 4.6 KiB per connection (issue 12).
//!
//! A held `start` response must cost at most 5 % more than a bare hyper
//! connection holding a request it never answers (issue 12): every byte
//! over it is this crate's.
//!
//! The tests take turns (a lock), so that nothing else allocates while one
//! counts. The clients are blocking `std` sockets, which allocate nothing,
//! so every byte counted per connection is the server's (and the runtime's
//! registration of its socket).

use std::alloc::System;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cap::Cap;
use delayed_response::server::Server;
use delayed_response::{Body, DelayedResponse, Heartbeat};
use http::{Request, Response};
use hyper::body::Incoming;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Connections measured per server; enough that the runtime's allocations
/// in chunks (slab pages, timer wheel levels) average out.
const CONNECTIONS: usize = 400;
/// Connections opened before counting, so that lazily allocated runtime and
/// hyper state is already there.
const WARM_UP: usize = 32;

/// Opens a connection, makes one keep-alive request and reads the whole
/// response: once it is read, the server has accepted the connection and is
/// waiting for the next request on it.
fn idle_connection(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nhi") {
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed before the response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    s
}

/// One test counts at a time.
static TURN: Mutex<()> = Mutex::new(());

/// Live heap bytes per idle HTTP/1.1 connection on a server with these settings.
fn bytes_per_connection(server: Server) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, Infallible>(Response::new(Body::from("hi")))
    });
    let task = rt.spawn(server.serve(listener, service, async {
        let _ = stopped.await;
    }));

    let warm: Vec<_> = (0..WARM_UP).map(|_| idle_connection(addr)).collect();
    let before = ALLOCATOR.allocated();
    let open: Vec<_> = (0..CONNECTIONS).map(|_| idle_connection(addr)).collect();
    let after = ALLOCATOR.allocated();

    drop(open);
    drop(warm);
    let _ = stop.send(());
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server to stop")
            .unwrap()
            .unwrap();
    });
    (after as f64 - before as f64) / CONNECTIONS as f64
}

#[test]
fn an_http1_connection_costs_the_default_server_no_more_than_http1_only() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let http1_only = bytes_per_connection(Server::new().http1_only(true));
    let default = bytes_per_connection(Server::new());
    eprintln!(
        "live heap bytes per idle HTTP/1.1 connection: default {default:.0}, \
         http1_only {http1_only:.0} ({:+.1} %)",
        (default / http1_only - 1.0) * 100.0
    );
    assert!(
        default <= http1_only * 1.10,
        "the default server costs {default:.0} bytes per HTTP/1.1 connection, \
         http1_only {http1_only:.0}: more than 10 % apart"
    );
}

/// How long a held response waits for its first heartbeat here.
const BEAT: Duration = Duration::from_millis(50);

/// Opens a connection whose request the server holds; with `beats`, waits
/// until the head and the first heartbeat came (a chunk of one space).
fn held_connection(addr: SocketAddr, beats: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    if beats {
        // A fixed buffer: the client must not allocate.
        let mut got = [0u8; 512];
        let mut len = 0;
        while !got[..len].ends_with(b"1\r\n \r\n") {
            let n = s.read(&mut got[len..]).expect("a heartbeat");
            assert!(n > 0, "closed before the first heartbeat");
            len += n;
        }
        assert!(got.starts_with(b"HTTP/1.1 202"));
    }
    s
}

/// Live heap bytes per held request on the default server: `held` answers
/// with a `start` response and heartbeats, else hyper holds the request
/// unanswered.
fn bytes_per_held_request(held: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Made once, cloned per request: the way to hold many.
    let settings = Arc::new(DelayedResponse::new().heartbeat(Heartbeat::every(BEAT)));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let res = held.then(|| {
            DelayedResponse::clone(&settings)
                .with_request(&req)
                .start(std::future::pending::<()>())
        });
        async move {
            match res {
                Some(res) => Ok::<_, Infallible>(res.await),
                None => std::future::pending().await,
            }
        }
    });
    let task = rt.spawn(Server::new().serve(listener, service, async {
        let _ = stopped.await;
    }));

    let warm: Vec<_> = (0..WARM_UP).map(|_| held_connection(addr, held)).collect();
    if !held {
        // No answer to wait for: give the server time to read every request.
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = ALLOCATOR.allocated();
    let open: Vec<_> = (0..CONNECTIONS)
        .map(|_| held_connection(addr, held))
        .collect();
    if !held {
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = ALLOCATOR.allocated();

    drop(open);
    drop(warm);
    let _ = stop.send(());
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server to stop")
            .unwrap()
            .unwrap();
    });
    (after as f64 - before as f64) / CONNECTIONS as f64
}

#[test]
fn a_held_start_response_costs_at_most_five_percent_over_a_bare_held_request() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let bare = bytes_per_held_request(false);
    let held = bytes_per_held_request(true);
    eprintln!(
        "live heap bytes per held request: start + heartbeats {held:.0}, \
         bare hyper {bare:.0} ({:+.1} %)",
        (held / bare - 1.0) * 100.0
    );
    assert!(
        held <= bare * 1.05,
        "a held start response costs {held:.0} bytes, a bare held request {bare:.0}: \
         more than 5 % apart"
    );
}
