//! What an idle keep-alive connection costs the server in live heap bytes,
//! counted by a global allocator (not RSS, so it holds on a noisy machine).
//!
//! The default server (HTTP/1.1 and h2c on one port) must not cost an
//! HTTP/1.1 connection more than 10 % over `http1_only`: telling the two
//! protocols apart used to cost 4.6 KiB per connection (issue 12).
//!
//! One test in this binary, so that nothing else allocates meanwhile. The
//! clients are blocking `std` sockets, which allocate nothing, so every byte
//! counted per connection is the server's (and the runtime's registration of
//! its socket).

use std::alloc::System;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cap::Cap;
use delayed_response::server::Server;
use delayed_response::Body;
use http::Response;

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
