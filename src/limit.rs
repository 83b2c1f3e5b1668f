//! Per-client limits: who a request comes from ([`ClientKey`]), a cap on what
//! one client may hold at once, and a token bucket on how fast it may ask
//! (its settings: [`Rate`]).
//!
//! Every global cap of the crate's services (waiting pipe senders,
//! reservations, parked jobs, signal peers, hub connections) has a per-client
//! cap beside it, so that one client cannot fill the global cap for everyone.
//! A client at its limit is answered `429 Too Many Requests` with
//! `Retry-After`; other clients are unaffected.
//!
//! # Who is a client
//!
//! [`ClientKey::from_extensions`] looks, in this order, for:
//!
//! 1. a [`ClientKey`] in the request's extensions, put there by the
//!    application (an API key, a user id, the first address of a trusted
//!    `X-Forwarded-For`: only the application knows which proxy to trust);
//! 2. the peer address that [`server::Server`](crate::server::Server) puts in
//!    every request's extensions ([`RemoteAddr`]).
//!    An IPv6 peer is keyed by its /64 prefix, since one host usually owns a
//!    whole /64;
//! 3. otherwise every request shares one key: the per-client cap then acts as
//!    a second global cap. Behind a reverse proxy, every request comes from
//!    the proxy's address: supply a [`ClientKey`] there.
//!
//! # Examples
//!
//! An axum middleware, or any tower layer, can key clients by an API key:
//!
//! ```
//! use delayed_response::limit::ClientKey;
//!
//! fn tag(req: &mut http::Request<()>) {
//!     if let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
//!         let key = ClientKey::new(key);
//!         req.extensions_mut().insert(key);
//!     }
//! }
//! ```

// Each optional module uses a different part of this file.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::body::Body;
use crate::http::{lock, text};
use crate::server::RemoteAddr;

/// Who a request comes from, for per-client limits.
///
/// Cheap to clone. See the [module docs](self) for how it is found.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Key(Arc<str>),
    Ip(IpAddr),
    Unknown,
}

impl ClientKey {
    /// A key the application supplies (an API key, a user id, a trusted
    /// forwarded address). Insert it into the request's extensions.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        ClientKey(Repr::Key(key.into()))
    }

    /// The key of a peer address: the address itself for IPv4, its /64
    /// prefix for IPv6 (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(prefix.into())
                }
            },
            v4 => v4,
        };
        ClientKey(Repr::Ip(ip))
    }

    /// The key of a request: a [`ClientKey`] extension, else the peer
    /// address ([`RemoteAddr`]), else one key shared by every request.
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        if let Some(key) = extensions.get::<ClientKey>() {
            return key.clone();
        }
        match extensions.get::<RemoteAddr>() {
            Some(addr) => ClientKey::from_ip(addr.0.ip()),
            None => ClientKey::unknown(),
        }
    }

    /// The one key of every request with neither a [`ClientKey`] nor a
    /// peer address.
    pub(crate) fn unknown() -> Self {
        ClientKey(Repr::Unknown)
    }

    /// The key as text, for a request one instance streams through to
    /// another ([`from_wire`](Self::from_wire) reads it back there).
    #[cfg(all(feature = "pipe", feature = "redis"))]
    pub(crate) fn to_wire(&self) -> String {
        match &self.0 {
            Repr::Key(k) => format!("k{k}"),
            Repr::Ip(ip) => format!("i{ip}"),
            Repr::Unknown => "u".to_owned(),
        }
    }

    /// The key that [`to_wire`](Self::to_wire) wrote.
    #[cfg(all(feature = "pipe", feature = "redis"))]
    pub(crate) fn from_wire(s: &str) -> Option<ClientKey> {
        match s.split_at_checked(1)? {
            ("k", key) => Some(ClientKey::new(key)),
            ("i", ip) => ip.parse().ok().map(ClientKey::from_ip),
            ("u", "") => Some(ClientKey::unknown()),
            _ => None,
        }
    }

    /// The key as text, the same in every process: `key:{key}` for an
    /// application's key (as given: it may be a secret, so store a hash of
    /// it where others can see it, and do not log it), `ip:{address}`, or
    /// `unknown`. For a [`Backplane`](crate::backplane) that counts limits
    /// in a shared store.
    ///
    /// ```
    /// use delayed_response::limit::ClientKey;
    ///
    /// assert_eq!(ClientKey::new("alice").stable_id(), "key:alice");
    /// assert_eq!(ClientKey::from_ip([192, 0, 2, 7].into()).stable_id(), "ip:192.0.2.7");
    /// ```
    pub fn stable_id(&self) -> String {
        match &self.0 {
            Repr::Key(k) => format!("key:{k}"),
            Repr::Ip(ip) => format!("ip:{ip}"),
            Repr::Unknown => "unknown".to_string(),
        }
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ClientKey {
    /// An application key shows only its length: keys may be secrets, and
    /// this is what goes into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Key(k) => write!(f, "key({} bytes)", k.len()),
            Repr::Ip(ip) => write!(f, "{ip}"),
            Repr::Unknown => f.write_str("unknown"),
        }
    }
}

/// A cap on how many things one client may hold at once.
///
/// [`try_acquire`](Self::try_acquire) hands out a [`Permit`] that gives its
/// unit back when dropped; a client's entry is removed when its last permit
/// goes, so memory follows what is held, not who ever came.
#[derive(Debug)]
pub(crate) struct PerClient {
    max: usize,
    counts: Mutex<HashMap<ClientKey, usize>>,
}

/// One unit of a client's [`PerClient`] cap; given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    owner: Arc<PerClient>,
    key: ClientKey,
}

impl PerClient {
    /// A cap of `max` per client (`usize::MAX`: no cap, still counted).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PerClient {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// One unit for `key`, or `None` when the client holds `max` already.
    pub(crate) fn try_acquire(self: &Arc<Self>, key: &ClientKey) -> Option<Permit> {
        let mut counts = lock(&self.counts);
        let held = counts.entry(key.clone()).or_insert(0);
        if *held >= self.max {
            if *held == 0 {
                // max == 0: leave no empty entry behind.
                counts.remove(key);
            }
            return None;
        }
        *held += 1;
        Some(Permit {
            owner: self.clone(),
            key: key.clone(),
        })
    }

    /// How many units `key` holds now.
    pub(crate) fn held(&self, key: &ClientKey) -> usize {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }

    /// How many clients hold at least one unit.
    pub(crate) fn clients(&self) -> usize {
        lock(&self.counts).len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.owner.counts);
        if let Some(held) = counts.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A token bucket's settings: `per_second` tokens flow in, up to `burst`
/// banked. The hub's publish and connect rates and signal's
/// `signal_rate_per_client` take one.
///
/// # Examples
///
/// ```
/// use delayed_response::limit::Rate;
///
/// // 5 a second on average, 20 at once after a quiet spell.
/// let rate = Rate::per_second(5.0).burst(20);
/// # let _ = rate;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `n` a second, bursts of `n` rounded up (at least 1). An `n` that is
    /// not a positive, finite number, or is below one every ~11 days
    /// (`1e-6`), is taken as `1e-6`: a client gets its burst and then
    /// (practically) waits.
    pub fn per_second(n: f64) -> Self {
        let n = if n.is_finite() { n.max(1e-6) } else { 1e-6 };
        Rate {
            per_second: n,
            burst: n.ceil().max(1.0),
        }
    }

    /// How many may come at once after a quiet spell (at least 1).
    pub fn burst(mut self, n: u32) -> Self {
        self.burst = f64::from(n.max(1));
        self
    }

    /// The tokens that flow in per second.
    pub fn tokens_per_second(&self) -> f64 {
        self.per_second
    }

    /// The most tokens banked.
    pub fn burst_tokens(&self) -> f64 {
        self.burst
    }
}

/// A token bucket per client, filled at a [`Rate`].
///
/// Idle clients' buckets are dropped once they would be full again, in a
/// sweep that runs when the map has doubled since the last one, so memory
/// follows the clients of the last few seconds.
#[derive(Debug)]
pub(crate) struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<ClientKey, Bucket>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: Rate) -> Self {
        RateLimit {
            rate: rate.per_second,
            burst: rate.burst,
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    /// The settings.
    pub(crate) fn rate(&self) -> Rate {
        Rate {
            per_second: self.rate,
            burst: self.burst,
        }
    }

    /// Takes one token for `key`; `Err(wait)` says how long until one is
    /// there (for `Retry-After`).
    pub(crate) fn check(&self, key: &ClientKey) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if state.map.len() >= state.sweep_at {
            let full_after = Duration::from_secs_f64((self.burst / self.rate).min(86_400.0));
            state
                .map
                .retain(|_, b| now.saturating_duration_since(b.at) < full_after);
            state.sweep_at = (state.map.len() * 2).max(1024);
        }
        let bucket = state.map.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    /// How many clients have a bucket now.
    pub(crate) fn clients(&self) -> usize {
        lock(&self.state).map.len()
    }
}

/// `429 Too Many Requests` with `Retry-After` (whole seconds, at least 1)
/// and a short reason.
pub(crate) fn too_many_requests(retry_after: Duration, reason: &'static str) -> Response<Body> {
    let mut res = text(StatusCode::TOO_MANY_REQUESTS, reason);
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    #[test]
    fn an_application_key_wins_over_the_peer_address() {
        let mut ext = http::Extensions::new();
        ext.insert(RemoteAddr(SocketAddr::from(([10, 0, 0, 1], 5000))));
        assert_eq!(
            ClientKey::from_extensions(&ext),
            ClientKey::from_ip(Ipv4Addr::new(10, 0, 0, 1).into())
        );
        ext.insert(ClientKey::new("alice"));
        assert_eq!(ClientKey::from_extensions(&ext), ClientKey::new("alice"));
    }

    #[test]
    fn requests_without_a_key_or_address_share_one_key() {
        let ext = http::Extensions::new();
        assert_eq!(
            ClientKey::from_extensions(&ext),
            ClientKey::from_extensions(&http::Extensions::new())
        );
        assert_eq!(ClientKey::from_extensions(&ext).to_string(), "unknown");
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64_prefix() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from_ip(a.into()), ClientKey::from_ip(b.into()));
        assert_ne!(ClientKey::from_ip(a.into()), ClientKey::from_ip(c.into()));
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            ClientKey::from_ip(mapped.into()),
            ClientKey::from_ip(Ipv4Addr::new(192, 0, 2, 7).into())
        );
    }

    #[test]
    fn an_application_key_is_not_logged() {
        assert_eq!(ClientKey::new("s3cret").to_string(), "key(6 bytes)");
    }

    #[test]
    fn per_client_caps_one_client_and_not_another() {
        let cap = PerClient::new(2);
        let a = ClientKey::new("a");
        let b = ClientKey::new("b");
        let p1 = cap.try_acquire(&a).unwrap();
        let _p2 = cap.try_acquire(&a).unwrap();
        assert!(cap.try_acquire(&a).is_none());
        assert!(cap.try_acquire(&b).is_some());
        drop(p1);
        assert_eq!(cap.held(&a), 1);
        assert!(cap.try_acquire(&a).is_some());
    }

    #[test]
    fn per_client_forgets_a_client_whose_last_permit_went() {
        let cap = PerClient::new(1);
        let p = cap.try_acquire(&ClientKey::new("a")).unwrap();
        assert_eq!(cap.clients(), 1);
        drop(p);
        assert_eq!(cap.clients(), 0);
        let zero = PerClient::new(0);
        assert!(zero.try_acquire(&ClientKey::new("a")).is_none());
        assert_eq!(zero.clients(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limit = RateLimit::new(Rate::per_second(2.0).burst(3));
        let a = ClientKey::new("a");
        for _ in 0..3 {
            assert!(limit.check(&a).is_ok());
        }
        let wait = limit.check(&a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limit.check(&ClientKey::new("b")).is_ok());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limit.check(&a).is_ok());
        assert!(limit.check(&a).is_err());
    }

    #[test]
    fn a_rate_that_is_not_positive_and_finite_is_one_every_million_seconds() {
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9] {
            assert_eq!(Rate::per_second(n), Rate::per_second(1e-6), "{n}");
        }
        // Bursts of the rate rounded up, at least 1.
        assert_eq!(Rate::per_second(2.5), Rate::per_second(2.5).burst(3));
        assert_eq!(Rate::per_second(0.5), Rate::per_second(0.5).burst(1));
        assert_eq!(
            Rate::per_second(1.0).burst(0),
            Rate::per_second(1.0).burst(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_swept_when_the_map_grows() {
        let limit = RateLimit::new(Rate::per_second(1000.0).burst(1));
        for i in 0..1024 {
            limit.check(&ClientKey::new(i.to_string())).unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        limit.check(&ClientKey::new("new")).unwrap();
        assert_eq!(limit.clients(), 1);
    }

    #[test]
    fn too_many_requests_rounds_retry_after_up() {
        let res = too_many_requests(Duration::from_millis(1500), "slow down\n");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "2");
        let res = too_many_requests(Duration::ZERO, "slow down\n");
        assert_eq!(res.headers()[RETRY_AFTER], "1");
    }
}
