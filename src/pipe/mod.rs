//! The ephemeral pipe: an upload is held open and streamed into a later
//! download; nothing is stored. It speaks its own protocol (below), or
//! Piping Server's ([the Piping mode](#the-piping-mode)).
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
//! | `GET /reserve` (with [`reservations`](Builder::reservations)) | a reservation: `200` with two lines, the download URL to share, then the upload URL with its secret (JSON `{"id", "download", "upload"}` with `Accept: application/json`) |
//! | `POST /reserve/{id}/{secret}` (with reservations) | opens the reserved socket, as `POST /` does |
//! | `GET /` (with [`page`](Builder::page)) | the web page: reserve a link, share it, send a file or text with progress; receive one |
//!
//! Raw uploads (`curl -T`, `--data-binary`, chunked or with `Content-Length`)
//! are forwarded frame by frame, without copies. For multipart uploads
//! (`curl -F f=@file`) the first part with a file name is streamed; its
//! `Content-Type` and file name are forwarded.
//!
//! # Who may do what
//!
//! The download id allows one `GET`, nothing else. A reservation's upload is
//! authorised by a secret of its own (128 bits from the OS CSPRNG, compared
//! in constant time) that only the client that asked `GET /reserve` got:
//! a download link that leaks lets its finder download, never upload. In
//! the ephemeral mode (`POST /`) there is nothing to authorise: the
//! sender's request is the upload, and closing it cancels the socket; so no
//! secret is handed out there, and no route takes a download id to change a
//! socket (`PUT /{id}` uploads a new file named like it).
//!
//! Beside the global cap ([`max_waiting`](Builder::max_waiting)), each
//! client may have [`max_waiting_per_client`](Builder::max_waiting_per_client)
//! uploads waiting and hold
//! [`max_reservations_per_client`](Builder::max_reservations_per_client)
//! reservations; one at its cap gets `429` with `Retry-After`, and others
//! are unaffected. Clients are told apart by
//! [`ClientKey`](crate::limit::ClientKey): a key the application puts in the
//! request's extensions, else the peer's address (behind a reverse proxy,
//! supply a key: every request comes from the proxy).
//!
//! # Errors
//!
//! | case | answer |
//! |---|---|
//! | unknown, used or malformed id; stray path; an upload URL with a wrong or no secret | `404` |
//! | `GET` of a reservation no upload has opened | `409`, the reservation is kept |
//! | the upload fails before its first byte (a raw upload, or a multipart one before its file part) | the receiver gets `502`; a reservation is kept for another upload until its TTL |
//! | declared `Content-Length` over the limit | `413`, the body is not read |
//! | chunked upload passing the limit | the receiver's body ends abnormally (curl exit 18); the sender gets `cut: …` |
//! | sender leaves mid-transfer | the receiver's body ends abnormally, at once |
//! | receiver leaves mid-transfer | the sender's response ends with `cut: the receiver went away …` |
//! | sender leaves while waiting | the id is freed within two heartbeat intervals (a reservation is kept for another upload) |
//! | sender leaves (or half-closes, as `nc -N` does) after its whole upload arrived | the upload is kept for its receiver, until the TTL |
//! | nobody asks within the TTL | the sender's response ends with `timeout: …` |
//! | `GET /reserve` without the required Referer/Origin | `403` |
//! | too many sockets waiting | `503` with `Retry-After` |
//! | this client has too many uploads waiting, or reservations | `429` with `Retry-After` |
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
//! | [`max_waiting_per_client`](Builder::max_waiting_per_client) | 100 ([`DEFAULT_MAX_WAITING_PER_CLIENT`]) |
//! | [`max_reservations_per_client`](Builder::max_reservations_per_client) | 100 ([`DEFAULT_MAX_RESERVATIONS_PER_CLIENT`]) |
//! | [`reservations`](Builder::reservations) | off |
//! | [`required_referer`](Builder::required_referer) | none |
//! | [`heartbeat`](Builder::heartbeat) | a space every 15 s ([`Heartbeat::DEFAULT_INTERVAL`](crate::Heartbeat::DEFAULT_INTERVAL)) |
//! | [`base_url`](Builder::base_url) | `http://{Host}` (`https://` over TLS) |
//! | [`ids`](Builder::ids) | [`RandomIds`]: 12 base64url characters, 72 bits from the OS CSPRNG |
//! | [`hooks`](Builder::hooks) | [`DefaultHooks`] |
//! | [`protocol`](Builder::protocol) | [`Protocol::Ephemeral`] |
//! | [`max_receivers`](Builder::max_receivers) | 64 ([`DEFAULT_MAX_RECEIVERS`]), Piping mode |
//! | [`page`](Builder::page) | on: the web page at `GET /` |
//! | [`backplane`](Builder::backplane), [`advertise`](Builder::advertise) (feature `redis`) | none: one instance |
//! | [`forward_timeout`](Builder::forward_timeout) (feature `redis`) | 5 s ([`DEFAULT_FORWARD_TIMEOUT`]) |
//!
//! # The Piping mode
//!
//! With [`Protocol::Piping`] ([`Builder::protocol`]) the pipe speaks
//! [Piping Server](https://github.com/nwtgck/piping-server)'s protocol, so
//! its command-line and browser clients, scripts and tutorials work against
//! it unchanged, on this pipe's core: a waiting side that leaves frees its
//! path, a transfer never wedges, and the TTL, the upload limit and the
//! per-client caps hold.
//!
//! ```text
//! sender$   curl -T file.tar http://127.0.0.1:9000/mypath
//! [INFO] Waiting for 1 receiver(s)...
//!                                 receiver$ curl http://127.0.0.1:9000/mypath > file.tar
//! [INFO] A receiver was connected.
//! [INFO] Start sending to 1 receiver(s)!
//! [INFO] Sent successfully!
//! [INFO] All receiver(s) was/were received successfully.
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `POST` or `PUT` of a path | a sender: `200`, `text/plain`, progress lines, then the end line |
//! | `GET` of a path | a receiver: the upload, with the sender's headers |
//! | `?n=N` on every side | `N` receivers, each gets every byte; the transfer starts when all are there |
//! | `GET /` | the web page (send a file or text to a path, with progress; receive one) |
//! | `GET /noscript?path=P` | the same as an HTML form, with no JavaScript |
//! | `GET /help`, `/version` | usage with this server's URL; the version |
//! | `GET /favicon.ico`, `/robots.txt` | `204`; `404` |
//! | `OPTIONS` of any path | the CORS preflight, private-network preflights too |
//!
//! Any path but those is a pipe, and the sender and the receivers may come
//! in either order: the first waits for the others. A waiting sender's
//! response carries Piping Server's lines (waiting for N receivers, how
//! many are connected, a receiver connected, start, sent, all received);
//! between them, its heartbeats are lines too (`[INFO] Waiting for 2
//! receiver(s)... 1 connected.`, `[INFO] Sending: N bytes so far.`), which
//! keep it alive behind proxies as the ephemeral mode's spaces do.
//!
//! Receivers get the sender's `Content-Type` (but `text/html`, which
//! becomes `text/plain`, so that a pipe cannot serve a page on the server's
//! origin), `Content-Length`, `Content-Disposition` and `X-Piping` headers
//! (the latter exposed to scripts of other origins); a `multipart/form-data`
//! upload sends its first part, with that part's type and disposition. Every
//! answer carries `Access-Control-Allow-Origin: *`; receivers' answers also
//! `X-Robots-Tag: none` and `X-Content-Type-Options: nosniff`.
//!
//! | case | answer |
//! |---|---|
//! | a sender or receiver whose `n` differs from the path's; an extra receiver; a second sender; a path whose transfer runs | `400` |
//! | `n` not a number, under 1, or over [`max_receivers`](Builder::max_receivers) | `400` |
//! | a `GET` with `Service-Worker: script`; an upload with `Content-Range`; an upload to a reserved path | `400` |
//! | any other method | `405` with `Allow: GET, HEAD, POST, PUT, OPTIONS` |
//! | a waiting receiver leaves | its place is free at once (hyper drops its request) |
//! | a waiting sender leaves | its path is free at once when its upload fits in the 16 KiB read ahead, or over HTTP/2; else within two heartbeat intervals |
//! | a transfer is cut (either side leaves, the upload fails or passes the limit) | cut on every side, visibly: receivers' bodies end abnormally, the sender gets a line saying why and an abnormal end |
//! | nobody comes within the [TTL](Builder::ttl) | a waiting sender gets `[ERROR] No receiver came within …` and an abnormal end; a waiting receiver `504` |
//! | server shutdown | waiting receivers `503`, waiting senders end; transfers in progress get the grace period |
//!
//! Waiting senders and receivers each count against
//! [`max_waiting_per_client`](Builder::max_waiting_per_client) (`429`), and
//! [`max_waiting`](Builder::max_waiting) caps the paths in use (`503`).
//! One receiver reads the upload straight through, without copies, as in
//! the ephemeral mode. Several are fed chunk by chunk: the next chunk is
//! read only when every receiver has room for it (at most four chunks wait
//! per receiver, shared, not copied), so the slowest sets the pace and
//! memory stays bounded; a receiver that leaves cuts the transfer for all,
//! as in Piping Server.
//!
//! A waiting receiver is held without a head: its head must carry the
//! sender's headers, so nothing can go out before the transfer starts (as
//! in Piping Server). Behind a proxy that closes quiet requests, a receiver
//! should come second, or the proxy's timeout be long enough.
//!
//! The hooks that answer ([`Hooks::opened`], [`end`](Hooks::end),
//! [`cut`](Hooks::cut), [`timeout`](Hooks::timeout), …) belong to the
//! ephemeral mode: the Piping mode answers as Piping Server does. It calls
//! [`Hooks::connected`] and [`Hooks::progress`] (a [`Socket`]'s id is the
//! path), and uses [`Hooks::busy`], [`Hooks::client_limit`],
//! [`Hooks::too_large`] and [`Hooks::bad_request`] for its own limits.
//!
//! # Examples
//!
//! With plain hyper, through [`server::serve`](crate::server::serve):
//!
//! ```no_run
//! use std::time::Duration;
//! use delayed_response::{pipe, server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let pipe = pipe::Service::builder().ttl(Duration::from_secs(300)).build();
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
//! use delayed_response::pipe;
//!
//! let app: axum::Router = axum::Router::new().nest_service(
//!     "/pipe",
//!     pipe::Service::builder().base_url("https://example.com/pipe").build(),
//! );
//! # let _ = app;
//! ```
//!
//! # Several instances
//!
//! With feature `redis`, several instances behind one public address (a
//! load balancer) serve one pipe: give each a
//! [`backplane`](Builder::backplane) (a
//! [`RedisBackplane`](crate::backplane::RedisBackplane), the same Redis and
//! prefix) and its own [`advertise`](Builder::advertise) URL, the address
//! at which the other instances reach it.
//!
//! - An instance that makes a socket (`POST /`, `PUT`, `GET /reserve`)
//!   holds its id in Redis (`SET` with the backplane's
//!   [lease](crate::backplane::RedisBuilder::lease), 15 s by default,
//!   renewed every third of it while the socket waits; released at once
//!   when the socket is taken, within a third of the lease when it expired
//!   or its sender left, and by itself within one lease when the instance
//!   died). The hold is atomic: two instances never hand out one id.
//! - A `GET /{id}` that lands on another instance is **streamed through**
//!   to the owner over HTTP/1.1 (no redirect): the receiver gets the
//!   owner's answer, head and body, as if it had asked there (the same
//!   `200`, `404`, `409` or `502`). The socket is taken in the owner's
//!   registry, so two `GET`s on two instances cannot both take it.
//!   Backpressure holds end to end; a receiver that leaves cuts the
//!   sender's transfer (`cut: the receiver went away`), and a sender that
//!   leaves ends the receiver's body abnormally, as on one instance.
//! - A reservation's upload (`POST /reserve/{id}/{secret}`) that lands on
//!   another instance is streamed through to the reservation's owner the
//!   same way, with the sender's held response coming back.
//! - The forwarded request carries a secret that the instances share
//!   through Redis (made at first use), in `X-Pipe-Forward`; a wrong one
//!   gets `403`. It grants nothing a client cannot do (a `GET` still takes
//!   only the id it names, an upload still needs its reservation's
//!   secret); it tells the owner to answer from its own registry, and to
//!   count the client (`X-Pipe-Client`), not the instance, against its
//!   per-client caps.
//!
//! The [`Hooks`] of a socket run on its owner (a forwarding instance only
//! relays), and each instance's caps ([`max_waiting`](Builder::max_waiting)
//! and the per-client ones) count the sockets waiting on it.
//!
//! | case | answer |
//! |---|---|
//! | an id no instance holds | `404`, as on one instance |
//! | Redis fails or is too slow (its [timeout](crate::backplane::RedisBuilder::timeout)) while an id is made or looked up | `503` with `Retry-After` ([`Hooks::busy`]) |
//! | the owner does not answer within [`forward_timeout`](Builder::forward_timeout) (5 s) | `502` |
//! | the owner died | `502` until its holds expire (one lease), then `404` |
//!
//! In the ephemeral protocol a `GET` never comes first: an id exists only
//! once its socket was made, so a `GET` before it is `404` on every
//! instance, as on one. The [Piping mode](#the-piping-mode), whose paths
//! any side may name first, stays on one instance: its senders and
//! receivers must reach the same one (sticky routing by path).
//!
//! # Limits
//!
//! A waiting sender's upload is not read, so hyper cannot see it close its
//! connection; the next heartbeat write fails and frees the id (within two
//! heartbeat intervals). A transfer in progress has no time limit. Memory per
//! transfer is bounded by hyper's connection buffers (plus one frame for
//! multipart parsing).
//!
//! The receiver's response head waits for the upload's first byte, so that
//! a `200` always has data behind it.
//!
//! A sender that half-closes its connection after its whole body (`nc -N`,
//! some HTTP clients) is gone for hyper, which closes the connection: its
//! upload, already read in full, is delivered to the receiver, but its own
//! response ends without the `done:` line. (hyper keeps such a connection
//! open only when built with `half_close(true)`, which would also hide
//! clients that leave a long-poll.)

mod body;
mod builder;
#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod forward;
mod headers;
mod hooks;
mod ids;
mod page;
mod piping;
mod receiver;
mod registry;
mod reserve;
mod routes;
mod sender;
mod service;
mod transfer;
mod upload;

#[cfg(feature = "redis")]
pub use builder::DEFAULT_FORWARD_TIMEOUT;
pub use builder::{
    Builder, Protocol, DEFAULT_MAX_RECEIVERS, DEFAULT_MAX_RESERVATIONS_PER_CLIENT,
    DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_WAITING, DEFAULT_MAX_WAITING_PER_CLIENT, DEFAULT_TTL,
};
pub use hooks::{ClientLimit, Cut, DefaultHooks, Hooks, Reservation, Socket, Stats};
pub use ids::{IdScheme, RandomIds, RANDOM_ID_LEN};
pub use service::Service;

/// The future of [`Service`]'s `hyper` and `tower` `call`: it never fails,
/// every problem is an HTTP answer.
pub use crate::http::ResponseFuture;
