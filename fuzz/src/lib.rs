//! Shared pieces of the fuzz targets: the request-script format, an
//! in-process driver on a paused-time runtime, a spec-following SSE parser
//! and a strict multipart reference parser.
//!
//! Every use of a service *type* of the crate is in [`shim`], so renames
//! touch one file.

pub mod driver;
pub mod multipart;
pub mod script;
pub mod shim;
pub mod sse;
pub mod targets;
