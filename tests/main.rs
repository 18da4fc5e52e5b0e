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
mod access_log;
mod auto_format;
mod bad_input;
mod binary;
mod bombs;
mod browser;
mod cache_budgets;
mod cdn_api;
mod cluster;
mod common;
mod connections;
mod deadlines;
mod deploy;
mod disk_tier;
mod env_config;
mod explain;
mod fuzz_replay;
mod hardening;
mod http_fit;
mod images;
mod install;
mod key_integrity;
mod metrics;
mod module_graph;
mod origin_budget;
mod originals;
mod origins;
mod overload;
mod proxy;
mod reload;
mod remote;
mod same_bytes;
mod ssrf;
mod startup_errors;
mod style_urls;
mod tls;
mod tls_acme;
mod watermark;
