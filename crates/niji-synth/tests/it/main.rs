//! Integration tests of niji-synth: determinism, FHIR shapes against the JP-CLINS fixtures,
//! UKE layout against the real receipt sample, and ground truth against the files.
#![allow(clippy::unwrap_used)] // A failing test is a panic with its message.

mod common;
mod fhir;
mod tree;
mod truth;
mod uke;
