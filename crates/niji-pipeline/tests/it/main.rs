//! Integration tests of niji-pipeline: real Delta tables in temp folders, the real SQLite
//! catalog, synthetic sources from niji-synth, and the `niji-pipeline-run` binary for the
//! crash-injection test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod consent;
mod crash;
mod e2e;
mod lease;
mod s3;
mod support;
