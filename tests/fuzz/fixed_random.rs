//! Fixed "randomness" for the fuzz binaries only (never the test suite: tests/fuzz_replay.rs
//! does not include this file).
//!
//! std's `HashMap` keys, ahash and moka seed themselves from getrandom(2) once per process.
//! The hash keys decide which probe paths hashbrown takes, and those paths are coverage:
//! with fresh keys per process the seed corpus alone covered 4,341 edges in one run and 4,343
//! in another, and a fixed-seed mutation run explored differently every time (the same binary
//! and `-seed=1` ended at 5,292-5,754 edges). This definition overrides libc's `getrandom`
//! in the fuzz executable, so every run of the same tree sees the same "random" bytes and
//! tests/fuzz/run.sh's "same tree, same result" holds. Nothing in the fuzz targets needs
//! real randomness.

/// The getrandom(2) signature; fills `buf` with a fixed pattern and reports it all written.
///
/// # Safety
/// `buf` must be valid for `len` bytes, as for the libc function it replaces.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    for i in 0..len {
        *buf.add(i) = (i as u8).wrapping_mul(167).wrapping_add(13);
    }
    len as isize
}
