//! FHIR R4 ingest through SQL-on-FHIR v2 ViewDefinitions.
//!
//! - [`json`]: JSON parsed onto a flat tape (simd-json), the values every reader and view
//!   evaluates over.
//! - [`fhirpath`]: the FHIRPath subset, parsed once into an AST.
//! - [`view`]: the ViewDefinition engine (compiled plan → rows → Arrow record batches).
//! - [`read`]: readers for Bulk Data NDJSON, Bundles (collection, transaction, document,
//!   searchset) and JSON arrays, with reference aliases and contained resources.
//! - [`ingest`]: the mappings in `pipelines/views/*.json` → CDM tables, pseudonymized.

pub mod fhirpath;
pub mod ingest;
pub mod json;
pub mod read;
pub mod view;

pub use ingest::{FhirIngestOptions, Mappings, ingest, ingest_with_consent, ingest_with_threads};
pub use view::{Cell, Env, View};
