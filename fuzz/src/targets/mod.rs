//! The body of each fuzz target, as a plain function: `fuzz_targets/*.rs`
//! wrap them for libFuzzer, and `tests/corpus.rs` replays the checked-in
//! corpus through them on stable Rust.

mod hub;
mod pipe;
mod piping;
mod prefer;
mod query;
mod signal;
mod sse_roundtrip;

pub use hub::hub_cursor;
pub use pipe::{pipe_multipart, pipe_routes};
pub use piping::piping_routes;
pub use prefer::prefer;
pub use query::query;
pub use signal::signal_bodies;
pub use sse_roundtrip::sse_roundtrip;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const ALL: &[(&str, Target)] = &[
    ("pipe_routes", pipe_routes),
    ("pipe_multipart", pipe_multipart),
    ("piping_routes", piping_routes),
    ("signal_bodies", signal_bodies),
    ("prefer", prefer),
    ("query", query),
    ("sse_roundtrip", sse_roundtrip),
    ("hub_cursor", hub_cursor),
];
