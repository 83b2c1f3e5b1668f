//! Placeholder for the core's criterion micro-benches.

fn main() {}
