//! `niji ingest fhir|receipt|care`.

use std::path::PathBuf;

use crate::fhir;

/// Ingest commands.
#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// FHIR R4 NDJSON, Bundles or arrays → CDM Parquet.
    Fhir(fhir::IngestFhirArgs),
    /// レセプト電算 receipt files (.UKE, CP932) → CDM Parquet.
    Receipt(SourceArgs),
    /// Long-term-care CSV (benefit statements, certifications; CP932) → CDM Parquet.
    Care(SourceArgs),
}

/// Arguments shared by the receipt and care ingest commands.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Input files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder: one folder per CDM table, `_quarantine.ndjson`, `_report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Pseudonymization key file (hex). Defaults to NIJI_PSEUDONYM_KEY (hex) or a demo key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

pub fn run(cmd: IngestCommand) -> anyhow::Result<()> {
    match cmd {
        IngestCommand::Fhir(args) => fhir::ingest(&args),
        IngestCommand::Receipt(_) | IngestCommand::Care(_) => anyhow::bail!("niji ingest receipt|care is being built"),
    }
}
