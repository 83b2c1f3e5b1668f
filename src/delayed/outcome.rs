//! How a delayed response ended, and why one was abandoned.

use std::fmt;

use crate::error::{Error, Kind};

/// Why a response was abandoned before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// The client disconnected (FIN, RST, RST_STREAM, or a failed write).
    ClientGone,
    /// The server is shutting down (see [`Shutdown`](super::Shutdown)).
    Shutdown,
}

impl AbortReason {
    pub(crate) fn to_error(self) -> Error {
        match self {
            AbortReason::ClientGone => Error::new(Kind::Aborted),
            AbortReason::Shutdown => Error::new(Kind::Shutdown),
        }
    }
}

/// How a delayed response ended; reported once per response to
/// [`on_outcome`](super::DelayedResponse::on_outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The result was rendered and its body fully handed to the server.
    Done,
    /// The deadline passed first (also when an
    /// [`OnDeadline`](super::OnDeadline) took the work over).
    Timeout,
    /// The work, or the body of its result, failed.
    Error,
    /// The client went away, or the server shut down, first.
    Aborted(AbortReason),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Done => "done",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Aborted(AbortReason::ClientGone) => "abort",
            Outcome::Aborted(AbortReason::Shutdown) => "shutdown",
        })
    }
}
