//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod mock_origin;
pub mod moto;
