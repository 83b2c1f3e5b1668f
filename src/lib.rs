//! HTTP responses that cannot be answered at once, on tokio and hyper 1.x.
//!
//! TODO crate docs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod body;
pub mod delayed;
mod error;
#[cfg(feature = "pipe")]
pub mod pipe;
pub mod server;

pub use body::Body;
#[cfg(feature = "json")]
pub use delayed::Json;
pub use delayed::{
    AbortReason, Completion, DelayedResponse, Heartbeat, IntoReply, Outcome, Reply, ResponseFuture,
    Shutdown,
};
pub use error::{BoxError, Error, Result};
