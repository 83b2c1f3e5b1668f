//! Abuse limits: token buckets per identity, and a cap on connections per
//! identity.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::request::Parts;
use tokio::time::Instant;

use super::auth::Identity;
use crate::http::lock;

/// A token bucket's settings: `per_second` tokens flow in, up to `burst`
/// saved.
///
/// # Examples
///
/// ```
/// use delayed_response::hub::Rate;
///
/// // 5 publishes a second on average, 20 at once after a quiet spell.
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
    /// The default publish rate: 20 a second, bursts of 40.
    pub const DEFAULT_PUBLISH: Rate = Rate {
        per_second: 20.0,
        burst: 40.0,
    };

    /// The default connect rate: 10 a second, bursts of 30.
    pub const DEFAULT_CONNECT: Rate = Rate {
        per_second: 10.0,
        burst: 30.0,
    };

    /// `n` a second (at least one every ~11 days), bursts of `n` (at least 1).
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
}

/// Whom a limit counts against: the user, else the IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    User(String),
    Ip(IpAddr),
    /// Neither is known (a server that does not pass the peer address):
    /// one shared bucket.
    Unknown,
}

impl Key {
    pub(crate) fn of(identity: &Identity) -> Key {
        match (&identity.user, identity.addr) {
            (Some(user), _) => Key::User(user.clone()),
            (None, Some(ip)) => Key::Ip(ip),
            (None, None) => Key::Unknown,
        }
    }
}

/// The client's IP address, from the [`RemoteAddr`](crate::server::RemoteAddr)
/// that [`server::Server`](crate::server::Server) puts into every request.
pub(crate) fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<crate::server::RemoteAddr>()
        .map(|a| a.0.ip())
}

/// One token bucket per key.
#[derive(Debug)]
pub(crate) struct Buckets {
    rate: Rate,
    state: Mutex<BucketMap>,
}

#[derive(Debug, Default)]
struct BucketMap {
    map: HashMap<Key, (f64, Instant)>,
    prune_at: usize,
}

const PRUNE_FLOOR: usize = 4096;

impl Buckets {
    pub(crate) fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            state: Mutex::new(BucketMap {
                map: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Takes a token for `key`; when there is none, how long until there
    /// is.
    pub(crate) fn take(&self, key: &Key) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = self.rate;
        let mut st = lock(&self.state);
        if st.map.len() >= st.prune_at {
            // Buckets that are full again carry no information.
            st.map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate.per_second < rate.burst
            });
            st.prune_at = (st.map.len() * 2).max(PRUNE_FLOOR);
        }
        let (tokens, at) = st.map.entry(key.clone()).or_insert((rate.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * rate.per_second).min(rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate.per_second))
        }
    }
}

/// Open connections per key.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    map: Mutex<HashMap<Key, usize>>,
}

impl Connections {
    /// Counts one more for `key`, unless it already has `max`.
    pub(crate) fn acquire(&self, key: &Key, max: Option<usize>) -> bool {
        let mut map = lock(&self.map);
        let n = map.entry(key.clone()).or_insert(0);
        if max.is_some_and(|max| *n >= max) {
            if *n == 0 {
                map.remove(key);
            }
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn release(&self, key: &Key) {
        let mut map = lock(&self.map);
        if let Some(n) = map.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b = Buckets::new(Rate::per_second(2.0).burst(3));
        let k = Key::Unknown;
        for _ in 0..3 {
            assert!(b.take(&k).is_ok());
        }
        let wait = b.take(&k).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.take(&k).is_ok());
        assert!(b.take(&Key::User("other".into())).is_ok());
    }

    #[test]
    fn connections_are_capped_per_key() {
        let c = Connections::default();
        let k = Key::User("a".into());
        assert!(c.acquire(&k, Some(2)));
        assert!(c.acquire(&k, Some(2)));
        assert!(!c.acquire(&k, Some(2)));
        c.release(&k);
        assert!(c.acquire(&k, Some(2)));
        assert!(!c.acquire(&Key::Unknown, Some(0)));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
