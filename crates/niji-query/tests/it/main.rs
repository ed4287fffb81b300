//! niji-query integration tests: one binary, modules inside.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod cases;
mod dp;
mod service;
mod support;
