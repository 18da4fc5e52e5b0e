//! Shared helpers for the integration tests: start the real server on ephemeral
//! ports, talk HTTP to it, mock and fault-injecting origins, a real S3 server.

#![allow(dead_code)]

pub mod mock_origin;
pub mod moto;
pub mod server;
