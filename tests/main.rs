#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes,
    clippy::result_large_err,
    clippy::field_reassign_with_default
)]
//! The one integration test binary: every module starts the real server (or an
//! origin client) on ephemeral ports and talks HTTP to it. One module per area.

mod access;
mod auto_format;
mod bad_input;
mod binary;
mod browser;
mod cdn_api;
mod common;
mod explain;
mod fuzz_replay;
mod http_fit;
mod images;
mod metrics;
mod origins;
mod overload;
mod proxy;
mod remote;
mod ssrf;
mod watermark;
