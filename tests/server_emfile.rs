//! A server out of file descriptors (issue 9): it backs off instead of
//! spinning, says so once instead of 20 times a second, and serves again as
//! soon as descriptors are free.
//!
//! Alone in its binary: it uses up the process's descriptors.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delayed_response::server::Server;
use delayed_response::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Collects what the `tracing` events on this thread print.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

/// Opens files until the process has no descriptor left; `None` if the
/// limit is too high to reach quickly.
fn use_up_descriptors() -> Option<Vec<std::fs::File>> {
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) if files.len() < 200_000 => files.push(f),
            Ok(_) => return None,
            Err(e) if e.raw_os_error() == Some(24) => return Some(files), // EMFILE
            Err(e) => panic!("opening /dev/null: {e}"),
        }
    }
}

#[tokio::test]
async fn out_of_descriptors_the_server_backs_off_says_so_once_and_recovers() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Body::from("hi")))
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Server::new().serve(listener, service, async {
        let _ = stopped.await;
    }));

    let Some(mut files) = use_up_descriptors() else {
        eprintln!("skipped: the descriptor limit is too high to use up");
        return;
    };
    // One descriptor for the client; the server has none left to accept it.
    files.pop();
    let mut client = send_raw(addr, "GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let failing = "accept failed; backing off";
    eventually("the server to warn", || logs.count(failing) > 0).await;
    // Several back-offs later: still one warning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(logs.count(failing), 1);

    drop(files);
    let res = read_response(&mut client).await;
    assert_eq!((res.status, res.text().as_str()), (200, "hi"));
    let _ = stop.send(());
    within("the server to stop", server).await.unwrap().unwrap();
}
