#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The one integration test binary: every module starts the real server on
//! ephemeral ports and talks HTTP to it.

mod access;
mod binary;
mod common;
mod metrics;
mod proxy;
