//! `Server::http1_only`: HTTP/1.1 is served, an h2c client is refused.
mod support;

use std::convert::Infallible;
use std::time::Duration;

use delayed_response::server::Server;
use http_body_util::{BodyExt, Empty};
use support::*;

#[tokio::test]
async fn http1_only_serves_http1_and_refuses_h2c() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = signal::<()>();
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, Infallible>(http::Response::new(delayed_response::Body::from("hi")))
    });
    let server = tokio::spawn(
        Server::new()
            .http1_only(true)
            .grace_period(Duration::from_secs(1))
            .serve(listener, service, async {
                let _ = stopped.await;
            }),
    );

    let mut s = get(addr, "/").await;
    let res = read_response(&mut s).await;
    assert_eq!((res.status, res.text().as_str()), (200, "hi"));

    let mut send = h2_connect(addr).await;
    let req = http::Request::get("http://test/")
        .body(Empty::<bytes::Bytes>::new().boxed())
        .unwrap();
    let res = within("the h2c request to fail", send.send_request(req)).await;
    assert!(res.is_err(), "an h2c request was served: {res:?}");

    let _ = stop.send(());
    within("the server to stop", server).await.unwrap().unwrap();
}
