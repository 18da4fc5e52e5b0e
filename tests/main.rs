//! The one integration test binary: every module starts the real server on
//! ephemeral ports and talks HTTP to it.

mod access;
mod binary;
mod common;
mod proxy;
