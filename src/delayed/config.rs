//! What the [`DelayedResponse`](super::DelayedResponse) settings set.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::deadline::OnDeadline;
use super::{AbortReason, Heartbeat, Outcome, Shutdown};
use crate::body::Body;
use crate::error::Error;
use crate::http::Prefer;

/// The default [`max_buffered`](super::DelayedResponse::max_buffered): 1 MiB.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 20;

/// The default [`min_interval`](super::DelayedResponse::min_interval).
pub(super) const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Below any floor: a zero interval would spin.
const MIN_PERIOD: Duration = Duration::from_millis(1);

pub(super) type AbortHook = Arc<dyn Fn(AbortReason) + Send + Sync>;
type ResponseHook = Arc<dyn Fn() -> Response<Body> + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Error) -> Response<Body> + Send + Sync>;
type TickHook = Arc<dyn Fn(u64) + Send + Sync>;
type HeartbeatHook = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;
pub(super) type OutcomeHook = Arc<dyn Fn(Outcome) + Send + Sync>;

/// The hooks, shared (a builder that sets none copies a pointer).
#[derive(Clone, Default)]
pub(super) struct Hooks {
    pub(super) on_deadline: Option<DeadlineHook>,
    pub(super) on_timeout: Option<ResponseHook>,
    pub(super) on_error: Option<ErrorHook>,
    pub(super) on_tick: Option<TickHook>,
    pub(super) on_heartbeat: Option<HeartbeatHook>,
}

/// The [`OnDeadline`] of a `wait`.
#[derive(Clone)]
pub(super) struct DeadlineHook {
    pub(super) hook: Arc<dyn OnDeadline>,
    /// The same value as `Any`, when a module of this crate set it, so that
    /// a later setting of that module finds its own type again (`park_owner`
    /// after `park`). `None` for a user's hook.
    pub(super) typed: Option<Arc<dyn Any + Send + Sync>>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(super) timeout: Option<Duration>,
    pub(super) heartbeat: Heartbeat,
    pub(super) min_interval: Duration,
    pub(super) status: StatusCode,
    pub(super) pending_status: StatusCode,
    /// Shared, so that a per-request change to another setting (a hook that
    /// captures the request) copies a pointer, not the map.
    pub(super) headers: Arc<HeaderMap>,
    pub(super) accepted_at_start: bool,
    pub(super) detach: bool,
    pub(super) max_buffered: usize,
    /// Shared like the headers.
    pub(super) hooks: Arc<Hooks>,
}

/// The settings a builder keeps by value, beside the shared [`Config`], so
/// that setting them per request copies no configuration: what it takes
/// from its request (every request of [`server::serve`](crate::server::serve)
/// carries a [`Shutdown`]), and the abort and outcome hooks (services set
/// them per response).
#[derive(Clone, Default)]
pub(crate) struct Unshared {
    pub(super) shutdown: Option<Shutdown>,
    /// A HEAD request: hyper sends the head and drops the body unpolled.
    pub(super) head_request: bool,
    /// The request's `Prefer` header, for the layers that honour it (`park`).
    pub(super) prefer: Prefer,
    pub(super) on_abort: Option<AbortHook>,
    pub(super) on_outcome: Option<OutcomeHook>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: None,
            heartbeat: Heartbeat::default(),
            min_interval: DEFAULT_MIN_INTERVAL,
            status: StatusCode::OK,
            pending_status: StatusCode::ACCEPTED,
            headers: Arc::new(HeaderMap::new()),
            accepted_at_start: false,
            detach: false,
            max_buffered: DEFAULT_MAX_BUFFERED,
            hooks: Arc::default(),
        }
    }
}

impl Config {
    /// The heartbeat interval, raised to the floor.
    pub(super) fn beat_interval(&self) -> Duration {
        self.heartbeat.interval().max(self.min_interval)
    }

    /// A poll interval, raised to the floor.
    pub(super) fn poll_interval(&self, interval: Duration) -> Duration {
        interval.max(self.min_interval).max(MIN_PERIOD)
    }
}
