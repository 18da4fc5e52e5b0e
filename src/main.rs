//! The `imgedge` binary.
fn main() {}
