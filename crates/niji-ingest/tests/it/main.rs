//! The single integration-test binary of niji-ingest.

mod care;
mod consent;
mod fhir;
mod receipt;
