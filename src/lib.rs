//! imgedge: an on-the-fly image processing edge proxy.
//!
//! One binary is both a caching CDN node and an OSS-compatible image service.
//! A request flows: `server` (accept, route) → `request` (parse into typed values:
//! object key, processing `Pipeline`, range, validators) → `cache` (lookup by
//! `CacheKey`, single-flight fill) → `origin` (fetch the original) → `process`
//! (decode → ops → encode on the bounded CPU pool in `workers`) → `handler`
//! (response headers, range slicing). Errors from every step are one
//! [`error::Error`], turned into a status and an OSS XML body in one place.

pub mod config;
pub mod error;
pub mod origin;
pub mod process;

pub use config::Config;
pub use error::{Error, Result};
