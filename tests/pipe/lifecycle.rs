//! A waiting socket's life: the sender leaving, the TTL, shutdown; hooks; h2c and axum.

use super::*;

#[tokio::test]
async fn a_waiting_sender_that_leaves_frees_its_id_within_two_heartbeats() {
    // hyper does not see the FIN while the upload is unread; the failed
    // heartbeat write does.
    let pipe = pipe().build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(1000, "")).await;
    let id = sender.id.clone();
    assert_eq!(pipe.waiting(), 1);
    let left = std::time::Instant::now();
    drop(sender);
    eventually("the id to be freed", || pipe.waiting() == 0).await;
    // Two intervals, plus generous slack for a loaded machine.
    assert!(left.elapsed() < BEAT * 2 + Duration::from_secs(1));
    assert_eq!(download(server.addr, &id).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn ttl_expiry_ends_the_senders_response_and_frees_the_id() {
    let pipe = pipe().ttl(Duration::from_millis(200)).build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(5, "")).await;
    let id = sender.id.clone();
    let (text, complete) = sender.finish().await;
    assert!(complete, "{text}");
    assert!(
        text.contains("timeout: nobody fetched http://test/"),
        "{text}"
    );
    assert_eq!(pipe.waiting(), 0);
    assert_eq!(download(server.addr, &id).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn an_unbounded_ttl_is_accepted() {
    let server = serve(pipe().ttl(Duration::MAX).build()).await;
    let mut sender = open(server.addr, &post(1, "")).await;
    sender.send(b"!").await;
    assert_eq!(download(server.addr, &sender.id).await.text(), "!");
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_ends_waiting_senders_and_frees_ids() {
    let pipe = pipe().build();
    let server = serve(pipe.clone()).await;
    let sender = open(server.addr, &post(3, "")).await;
    server.shutdown.trigger();
    let (_text, complete) = sender.finish().await;
    assert!(!complete, "a held response ends abnormally on shutdown");
    eventually("the id to be freed", || pipe.waiting() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn works_nested_in_an_axum_router_as_a_tower_service() {
    let pipe = pipe().base_url("http://test/pipe/").build();
    let app = axum::Router::new().nest_service("/pipe", pipe);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let head =
        "POST /pipe/ HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 4\r\n\r\n";
    let mut sender = open(addr, head).await;
    assert!(
        sender.url.starts_with("http://test/pipe/"),
        "{}",
        sender.url
    );
    sender.send(b"axum").await;
    let res = download(addr, &format!("pipe/{}", sender.id)).await;
    assert_eq!(res.text(), "axum");
    let (text, _) = sender.finish().await;
    assert!(text.contains("done: 4 bytes"), "{text}");
    task.abort();
}

mod custom_hooks {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use delayed_response::pipe::{Hooks, Socket, Stats};

    use super::*;

    #[derive(Default)]
    struct Counting {
        progress: Arc<AtomicU64>,
        connected: Arc<AtomicU64>,
        ended_with: Arc<std::sync::Mutex<Option<String>>>,
    }

    impl Hooks for Counting {
        fn opened(&self, socket: &Socket) -> Bytes {
            format!("ID {} at {}\n", socket.id, socket.url).into()
        }
        fn connected(&self, _socket: &Socket) {
            self.connected.fetch_add(1, Ordering::SeqCst);
        }
        fn progress(&self, _socket: &Socket, stats: &Stats) {
            self.progress.store(stats.bytes, Ordering::SeqCst);
        }
        fn end(&self, socket: &Socket, stats: &Stats) -> Bytes {
            *self.ended_with.lock().unwrap() = socket.filename.clone();
            format!("\nUpload complete ({}). Socket deleted.\n", stats.bytes).into()
        }
        fn not_found(&self) -> http::Response<delayed_response::Body> {
            let mut res = http::Response::new("nope".into());
            *res.status_mut() = http::StatusCode::GONE;
            res
        }
    }

    #[tokio::test]
    async fn overridden_hooks_replace_the_defaults_and_see_every_event() {
        let hooks = Counting::default();
        let (progress, connected) = (hooks.progress.clone(), hooks.connected.clone());
        let server = serve(pipe().hooks(hooks).build()).await;
        let mut sender = open(server.addr, &post(4, "")).await;
        assert!(String::from_utf8_lossy(&sender.buf)
            .contains(&format!("ID {} at http://test/", sender.id)));
        sender.send(b"data").await;
        assert_eq!(download(server.addr, &sender.id).await.text(), "data");
        let (text, _) = sender.finish().await;
        assert!(
            text.contains("Upload complete (4). Socket deleted."),
            "{text}"
        );
        assert_eq!(progress.load(Ordering::SeqCst), 4);
        assert_eq!(connected.load(Ordering::SeqCst), 1);
        assert_eq!(download(server.addr, "AAAAAAAAAAAA").await.status, 410);
        server.stop().await;
    }

    #[tokio::test]
    async fn end_sees_the_multipart_file_name() {
        let hooks = Counting::default();
        let ended_with = hooks.ended_with.clone();
        let server = serve(pipe().hooks(hooks).build()).await;
        let body = multipart("b0", "photo.png", "PNG");
        let mut sender = open(
            server.addr,
            &post(
                body.len(),
                "Content-Type: multipart/form-data; boundary=b0\r\n",
            ),
        )
        .await;
        sender.send(body.as_bytes()).await;
        assert_eq!(download(server.addr, &sender.id).await.text(), "PNG");
        let _ = sender.finish().await;
        assert_eq!(ended_with.lock().unwrap().as_deref(), Some("photo.png"));
        server.stop().await;
    }
}

mod http2 {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use tokio::sync::mpsc;
    use tokio_stream_shim::ReceiverStream;

    use super::*;

    /// A tiny `Stream` over an mpsc receiver (no tokio-stream dependency).
    mod tokio_stream_shim {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub(crate) struct ReceiverStream<T>(pub(crate) tokio::sync::mpsc::Receiver<T>);

        impl<T> futures_util::Stream for ReceiverStream<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }

    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;

    async fn h2(
        addr: SocketAddr,
    ) -> hyper::client::conn::http2::SendRequest<StreamBody<ReceiverStream<Chunk>>> {
        h2_connect(addr).await
    }

    #[tokio::test]
    async fn sender_and_receiver_over_h2c() {
        let server = serve(pipe().build()).await;
        let mut tx_conn = h2(server.addr).await;
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let req = http::Request::post("http://test/")
            .body(StreamBody::new(ReceiverStream(rx)))
            .unwrap();
        let res = tx_conn.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut sender_body = res.into_body();
        let first = within("the URL line", sender_body.frame())
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        let url = String::from_utf8_lossy(&first).trim().to_owned();
        assert!(url.starts_with("http://test/"), "{url}");
        let id = url.rsplit('/').next().unwrap().to_owned();

        let mut rx_conn = h2(server.addr).await;
        let (_unused, empty) = mpsc::channel::<Chunk>(1);
        drop(_unused);
        let get = http::Request::get(format!("http://test/{id}"))
            .body(StreamBody::new(ReceiverStream(empty)))
            .unwrap();
        let download = tokio::spawn(async move {
            let res = rx_conn.send_request(get).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap().to_bytes()
        });
        tx.send(Ok(Frame::data(Bytes::from_static(b"over "))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"h2"))))
            .await
            .unwrap();
        drop(tx);
        let got = within("the download", download).await.unwrap();
        assert_eq!(&got[..], b"over h2");
        let rest = within("the sender's end", sender_body.collect())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&rest).contains("done: 7 bytes"),
            "{rest:?}"
        );
        server.stop().await;
    }
}
