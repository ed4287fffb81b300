//! Integration tests of niji-pseudo (one binary, modules inside).
#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests: panics are failures; linkage figures are printed on purpose.

mod dictionary;
mod properties;
#[cfg(feature = "datafusion")]
mod reid;
mod synth;
#[cfg(feature = "datafusion")]
mod udf;
