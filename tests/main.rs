#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The one integration test binary: every module starts the real server (or an
//! origin client) on ephemeral ports and talks HTTP to it. One module per area.

mod access;
mod binary;
mod common;
mod metrics;
mod origins;
mod proxy;
mod remote;
