//! The library's test fixtures, plus a way to start the real server binary.
#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod h2_frames;
#[path = "../../../tests/common/mod.rs"]
mod library;
pub mod metrics;

pub use library::*;
