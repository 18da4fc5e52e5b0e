//! cargo-fuzz target; the property lives in tests/fuzz/checks.rs.
#![no_main]

#[path = "../checks.rs"]
mod checks;
#[path = "../fixed_random.rs"]
mod fixed_random;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::oss_process_parser(data));
