//! `niji fhir view` and `niji ingest fhir`.

use std::path::PathBuf;

/// FHIR tools.
#[derive(Debug, clap::Subcommand)]
pub enum FhirCommand {
    /// Evaluate a ViewDefinition over FHIR input and print rows as NDJSON.
    View {
        /// The ViewDefinition (JSON).
        view: PathBuf,
        /// NDJSON of resources, a Bundle, or a JSON array.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// Arguments of `niji ingest fhir`.
#[derive(Debug, clap::Args)]
pub struct IngestFhirArgs {
    /// NDJSON files, Bundles or JSON arrays of FHIR resources.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder: one folder per CDM table, `_quarantine.ndjson`, `_report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Pseudonymization key file (hex). Defaults to NIJI_PSEUDONYM_KEY (hex) or a demo key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

pub fn run(_cmd: FhirCommand) -> anyhow::Result<()> {
    anyhow::bail!("niji fhir view is being built")
}

pub fn ingest(_args: &IngestFhirArgs) -> anyhow::Result<()> {
    anyhow::bail!("niji ingest fhir is being built")
}
