//! FHIR: the SQL-on-FHIR v2 conformance suite, and ingest of the third-party fixtures.

mod conformance;
mod ingest;
