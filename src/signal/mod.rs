//! SSE signalling swarms: browsers find each other and exchange signals
//! (WebRTC offers and answers, presence) over Server-Sent Events and POSTs.
//!
//! The protocol is koa-signal's. The first peer opens an event stream with
//! `GET /` and becomes the *initiator* of a new swarm; others join with
//! `GET /{id}`; any member POSTs a `signal` to every peer or to one.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | `201`, a `text/event-stream` of a new swarm; this peer is its initiator; `429` at the client's [`max_peers_per_client`](Builder::max_peers_per_client) or [`max_swarms_per_client`](Builder::max_swarms_per_client); `503` at [`max_swarms`](Builder::max_swarms) |
//! | `GET /{id}` | `200`, a stream joined to swarm `id`; `404` if there is no such swarm; `429` at the client's [`max_peers_per_client`](Builder::max_peers_per_client); `503` at [`max_peers`](Builder::max_peers) |
//! | `POST /{id}` | sends a `signal` (body: `token`, `data`, optional `cid`); `200 OK` |
//! | other methods | `405`, `Allow: GET, POST` |
//! | other paths | `404` |
//!
//! A `GET` whose `Accept` header is present and excludes `text/event-stream`
//! (no `text/event-stream`, `text/*` or `*/*` with a `q` above 0) gets `406`.
//! Without entropy from the OS (ids cannot be made) a `GET` gets `503`. Every
//! refusal is one line of `text/plain`.
//!
//! Ids, cids and tokens are 32 lowercase hex characters (128 bits from the
//! operating system's CSPRNG). Leading slashes are collapsed (`//id` is `/id`)
//! and the query is ignored.
//!
//! # Events
//!
//! | event | to | data |
//! |---|---|---|
//! | `connect` | each new peer, first | `{"id": swarm, "cid": peer, "token": secret}` |
//! | `join` | the initiator | `{"id": swarm, "cid": joiner}` |
//! | `leave` | the initiator, when another peer leaves | `{"id": swarm, "cid": leaver}` |
//! | `signal` | every peer, or the one `cid` | `{"from": sender, "data": data}` (see [`envelope`](Builder::envelope)) |
//! | `close` | every other peer, when the initiator left; then the stream ends | `{"id": swarm}` |
//!
//! Streams carry `Content-Type: text/event-stream; charset=utf-8`,
//! `Cache-Control: no-cache` and `X-Accel-Buffering: no` (so nginx does not
//! hold events back), and no `Connection` header (HTTP/2-safe). Every peer's
//! stream is a handle-mode [`DelayedResponse`](crate::DelayedResponse) that
//! listens to the server's [`Shutdown`](crate::Shutdown) signal.
//!
//! When the initiator leaves, every other stream gets `close` and ends
//! cleanly (a browser should then `close()` its `EventSource`, which would
//! otherwise reconnect and get 404), and the swarm is
//! gone (its id gives 404). Between events the stream carries the SSE comment
//! `:\n\n` every [`keep_alive`](Builder::keep_alive) (15 s), so proxies
//! keep it open and peers that vanished without a FIN are found by a failed
//! write. A peer whose client reads too slowly (more than
//! [`peer_queue_bytes`](Builder::peer_queue_bytes) waiting) is
//! disconnected and counts as leaving; it never stalls the others.
//!
//! # POST /{id}
//!
//! The body is JSON (`application/json`, `application/*+json` types koa
//! accepted) or a form (`application/x-www-form-urlencoded`, with `qs`-style
//! brackets up to 5 levels: `data[x]=5` is `{"data": {"x": "5"}}`, `a[]=1&a[]=2`
//! and `a=1&a=2` are arrays, every form value is a string). Content types are
//! matched case-insensitively; anything else, `text/plain` included, is `415`.
//! A JSON body's `data` reaches the peers as it was sent, token for token
//! (numbers and strings byte for byte, keys in their order), without the
//! whitespace between tokens, so that the event stays one line.
//! The checks, in order:
//!
//! | check | status |
//! |---|---|
//! | the client is over its [`signal_rate_per_client`](Builder::signal_rate_per_client) (off by default) | `429`, `Retry-After` |
//! | path is not `/{id}`, or no such swarm | `404` |
//! | `Content-Length` over [`body_limit`](Builder::body_limit) | `413` |
//! | content type neither JSON nor form | `415` |
//! | body over the limit | `413` |
//! | body cut off, bad JSON, or JSON that is not an object or array | `400` |
//! | `token` is not the token of a current peer of this swarm | `401` |
//! | no `data` (missing or `null`; `0`, `false` and `""` are data) | `400` |
//! | `cid` is not a string | `400` |
//! | `cid` given and not a current peer (or too slow: it has just been disconnected) | `404` |
//! | sent | `200`, `OK` |
//!
//! A token belongs to one peer: the signal carries that peer's cid as
//! `from`, and the token dies when its peer leaves.
//!
//! # Per-client limits
//!
//! Beside each global cap there is one per client, so that one client
//! cannot fill the service for everyone. A client is a
//! [`ClientKey`](crate::limit::ClientKey): the application's key in the
//! request's extensions, else the peer's address (see
//! [`limit`](crate::limit); behind a reverse proxy, supply a key, or every
//! peer is one client). A client at its limit gets `429 Too Many Requests`
//! with `Retry-After`; other clients are unaffected.
//!
//! | what | global cap | per client | counts until |
//! |---|---|---|---|
//! | open streams (initiators and joiners) | [`max_peers`](Builder::max_peers) per swarm | [`max_peers_per_client`](Builder::max_peers_per_client), over all swarms | the stream is over: the client left, the swarm closed, it was too slow and its connection ended, or shutdown (given back before the initiator's `leave`) |
//! | open swarms | [`max_swarms`](Builder::max_swarms) | [`max_swarms_per_client`](Builder::max_swarms_per_client), by creator | the swarm closes |
//! | POSTs | none | [`signal_rate_per_client`](Builder::signal_rate_per_client), a token bucket (off by default) | (a rate) |
//!
//! The per-client caps answer `Retry-After: 5`; the rate answers the whole
//! seconds until the client's next token.
//!
//! # Several instances
//!
//! With a [`backplane`](Builder::backplane) (feature `redis`:
//! [`RedisBackplane`](crate::backplane::RedisBackplane)), several instances
//! of the service behind one address serve the same swarms: a swarm
//! created on one instance can be joined on another, and signals, `join`,
//! `leave` and `close` reach every peer wherever its stream is. The
//! registry (each swarm, its initiator, its peers with the instance that
//! holds each, and a hash of each token, never the token) lives in the
//! backplane; an instance keeps only its own peers' streams.
//!
//! - A POST may land on any instance. It costs one round trip to Redis
//!   (plus one to see whether the swarm exists when no peer of it is on
//!   that instance), whatever the number of peers.
//! - [`max_peers`](Builder::max_peers) and
//!   [`max_swarms`](Builder::max_swarms) count over every instance. The
//!   per-client caps and the signal rate stay per instance: a client
//!   spread over N instances may hold N times its cap.
//! - Each instance holds a lease ([`RedisBuilder::lease`], 15 s by default),
//!   renewed every third of it. When an instance dies without a word, its
//!   lease runs out and a surviving instance removes its peers: their
//!   `leave`s go out, and the swarms whose initiator was there end for
//!   everyone (`close`) within about one lease and a third. An instance
//!   that cannot reach Redis for a whole lease ends its own swarms too.
//! - A direct signal (`cid`) goes to the instance that holds its target,
//!   and is `200` once handed over: a target too slow to take it is then
//!   disconnected there (and leaves) rather than answering `404`. It
//!   travels apart from the swarm's other events and may overtake a
//!   broadcast sent just before it.
//! - Redis out of reach: a `GET` or `POST` that needs it answers `503` with
//!   `Retry-After: 1`; the streams here stay open.
//! - [`Service::swarm_count`] and [`Service::peer_count`] count this
//!   instance's view (the swarms with a peer here, and their peers here).
//!
//! [`RedisBuilder::lease`]: crate::backplane::RedisBuilder::lease
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`body_limit`](Builder::body_limit) | 10 KiB ([`DEFAULT_BODY_LIMIT`]) |
//! | [`keep_alive`](Builder::keep_alive) | 15 s ([`Heartbeat::DEFAULT_INTERVAL`](crate::Heartbeat::DEFAULT_INTERVAL)) |
//! | [`peer_queue_bytes`](Builder::peer_queue_bytes) | 64 KiB ([`DEFAULT_PEER_QUEUE_BYTES`]) |
//! | [`max_peers`](Builder::max_peers) | no limit |
//! | [`max_swarms`](Builder::max_swarms) | no limit |
//! | [`max_peers_per_client`](Builder::max_peers_per_client) | 64 open streams ([`DEFAULT_MAX_PEERS_PER_CLIENT`]) |
//! | [`max_swarms_per_client`](Builder::max_swarms_per_client) | 16 open swarms ([`DEFAULT_MAX_SWARMS_PER_CLIENT`]) |
//! | [`signal_rate_per_client`](Builder::signal_rate_per_client) | off |
//! | [`envelope`](Builder::envelope) | on: `{"from", "data"}` |
//! | [`echo`](Builder::echo) | on: a broadcast reaches its sender too |
//! | [`allow_origin`](Builder::allow_origin) | none: no CORS headers, `OPTIONS` is `405` |
//! | [`backplane`](Builder::backplane) | none: the swarms live in this instance's memory |
//!
//! # Examples
//!
//! With plain hyper, through [`server::serve`](crate::server::serve):
//!
//! ```no_run
//! use delayed_response::{server, signal};
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! server::serve(listener, signal::Service::new(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! As a `tower::Service`, for example under axum's `Router::nest_service`:
//!
//! ```
//! use std::time::Duration;
//! use delayed_response::signal;
//!
//! let signal = signal::Service::builder()
//!     .keep_alive(Duration::from_secs(20))
//!     .max_peers(16)
//!     .build();
//! // let app = axum::Router::new().nest_service("/signal", signal);
//! # let _ = signal;
//! ```

// builder: the settings; service: routing and the HTTP answers; registry:
// the swarms of one service and how streams join and leave them; swarm: one
// swarm's peers and the delivery of a signal; id: ids, cids and tokens;
// params: the body of a POST; remote: swarms across instances, through a
// backplane.
mod builder;
mod id;
mod params;
mod registry;
mod remote;
mod service;
mod swarm;

pub use crate::http::ResponseFuture;
pub use builder::{
    Builder, DEFAULT_BODY_LIMIT, DEFAULT_MAX_PEERS_PER_CLIENT, DEFAULT_MAX_SWARMS_PER_CLIENT,
    DEFAULT_PEER_QUEUE_BYTES,
};
pub use service::Service;
