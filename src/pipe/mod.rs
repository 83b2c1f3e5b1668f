//! The ephemeral pipe: an upload is held open and streamed into a later
//! download; nothing is stored.
//!
//! A sender uploads (`POST /` or `PUT /{name}`, raw or `multipart/form-data`).
//! Its response goes out at once — `200 OK`, `text/plain` — and its first
//! line is the download URL. The upload is not read yet: the response is a
//! held [`DelayedResponse`](crate::DelayedResponse) whose heartbeats keep it
//! alive behind proxies and reveal a sender that went away. When a receiver
//! asks for `GET /{id}`, the upload streams straight into the receiver's
//! response, with backpressure both ways, and the sender's response ends with
//! a completion line (`done: 11 bytes in 0.002 s`).
//!
//! ```text
//! sender$   curl -T file.tar http://127.0.0.1:9000/
//! http://127.0.0.1:9000/Xb3k_9aQ-ZtE
//!                                         receiver$ curl -o file.tar http://127.0.0.1:9000/Xb3k_9aQ-ZtE
//! done: 10485760 bytes in 0.021 s
//! ```
//!
//! # Routes
//!
//! | request | answer |
//! |---|---|
//! | `POST /`, `PUT /`, `PUT /{name}` | opens a socket: `200`, the download URL, heartbeats, then `done: …` or why it was cut |
//! | `GET /{id}` | the upload, once: `Content-Type`, `Content-Length` when known, `Content-Disposition: attachment; filename="…"` |
//! | `GET /reserve` (with [`reservations`](Builder::reservations)) | a fresh id (`200`, the id and a newline) |
//! | `POST /reserve/{id}` (with reservations) | opens the reserved socket |
//!
//! Raw uploads (`curl -T`, `--data-binary`, chunked or with `Content-Length`)
//! are forwarded frame by frame, without copies. For multipart uploads
//! (`curl -F f=@file`) the first part with a file name is streamed; its
//! `Content-Type` and file name are forwarded.
//!
//! # Errors
//!
//! | case | answer |
//! |---|---|
//! | unknown, used or malformed id; stray path | `404` |
//! | `GET` of a reservation no upload has opened | `409`, the reservation is kept |
//! | declared `Content-Length` over the limit | `413`, the body is not read |
//! | chunked upload passing the limit | the receiver's body ends abnormally (curl exit 18); the sender gets `cut: …` |
//! | sender leaves mid-transfer | the receiver's body ends abnormally, at once |
//! | receiver leaves mid-transfer | the sender's response ends with `cut: the receiver went away …` |
//! | sender leaves while waiting | the id is freed within two heartbeat intervals |
//! | nobody asks within the TTL | the sender's response ends with `timeout: …` |
//! | `GET /reserve` without the required Referer/Origin | `403` |
//! | too many sockets waiting | `503` with `Retry-After` |
//!
//! Every answer comes from a [`Hooks`] method with a default; override the
//! ones you want.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`ttl`](Builder::ttl) | 600 s ([`DEFAULT_TTL`]), from creation or reservation |
//! | [`max_upload_bytes`](Builder::max_upload_bytes) | 1 GiB ([`DEFAULT_MAX_UPLOAD_BYTES`]); 0 = no limit |
//! | [`max_waiting`](Builder::max_waiting) | 10 000 sockets ([`DEFAULT_MAX_WAITING`]) |
//! | [`reservations`](Builder::reservations) | off |
//! | [`required_referer`](Builder::required_referer) | none |
//! | [`heartbeat`](Builder::heartbeat) | a space every 15 s ([`DEFAULT_HEARTBEAT`]) |
//! | [`base_url`](Builder::base_url) | `http://{Host}` (`https://` over TLS) |
//! | [`ids`](Builder::ids) | [`RandomIds`]: 12 base64url characters, 72 bits from the OS CSPRNG |
//! | [`hooks`](Builder::hooks) | [`DefaultHooks`] |
//!
//! # Examples
//!
//! With plain hyper, through [`server::serve`](crate::server::serve):
//!
//! ```no_run
//! use std::time::Duration;
//! use delayed_response::{pipe::Pipe, server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let pipe = Pipe::builder().ttl(Duration::from_secs(300)).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! server::serve(listener, pipe, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! Nested in an axum router (set a [`base_url`](Builder::base_url) so the
//! download URL includes the prefix):
//!
//! ```
//! use delayed_response::pipe::Pipe;
//!
//! let app: axum::Router = axum::Router::new().nest_service(
//!     "/pipe",
//!     Pipe::builder().base_url("https://example.com/pipe").build(),
//! );
//! # let _ = app;
//! ```
//!
//! # Limits
//!
//! A waiting sender's upload is not read, so hyper cannot see it close its
//! connection; the next heartbeat write fails and frees the id (within two
//! heartbeat intervals). A transfer in progress has no time limit. Memory per
//! transfer is bounded by hyper's connection buffers (plus one frame for
//! multipart parsing).

mod hooks;
mod ids;
mod registry;
mod service;
mod transfer;

pub use hooks::{Cut, DefaultHooks, Hooks, Socket, Stats};
pub use ids::{IdScheme, RandomIds, RANDOM_ID_LEN};
pub use service::{
    Builder, Pipe, PipeFuture, DEFAULT_HEARTBEAT, DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_WAITING,
    DEFAULT_TTL,
};
