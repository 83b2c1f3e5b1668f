//! Placeholder until the fast-path benchmark lands.
fn main() {}
