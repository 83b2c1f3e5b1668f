//! A server out of file descriptors (issue 9): it backs off instead of
//! spinning, says so once instead of 20 times a second, and serves again as
//! soon as descriptors are free.
//!
//! Alone in its binary: it uses up the process's descriptors.

mod support;

use std::time::Duration;

use delayed_response::server::Server;
use support::*;

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
    let (logs, _guard) = Logs::capture();

    let server = hello(Server::new()).await;

    let Some(mut files) = use_up_descriptors() else {
        eprintln!("skipped: the descriptor limit is too high to use up");
        return;
    };
    // One descriptor for the client; the server has none left to accept it.
    files.pop();
    let mut client = send_raw(server.addr, "GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let failing = "accept failed; backing off";
    eventually("the server to warn", || logs.count(failing) > 0).await;
    // Several back-offs later: still one warning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(logs.count(failing), 1);

    drop(files);
    let res = read_response(&mut client).await;
    assert_eq!((res.status, res.text().as_str()), (200, "hi"));
    server.stop().await;
}
