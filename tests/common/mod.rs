//! Shared helpers for the integration tests: start the real server on ephemeral
//! ports, talk HTTP to it, and make throwaway origin folders.

#![allow(dead_code)]

pub mod server;
