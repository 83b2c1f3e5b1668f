//! Where a user's `Duration` meets an `Instant`.
//!
//! `Instant + Duration` panics on overflow ("overflow when adding duration to
//! instant"), and every duration here comes from a user, maybe from a
//! client (`Heartbeat::every(Duration::MAX)`, a TTL from a command line).
//! A duration too long to add means "never": the instant saturates at a
//! far future, as `tokio::time::sleep` does.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: tokio's own "far future".
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, or a far future (30 years on) when that overflows.
pub(crate) fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_duration_saturates_at_a_far_future() {
        let now = Instant::now();
        assert_eq!(instant_after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            instant_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
