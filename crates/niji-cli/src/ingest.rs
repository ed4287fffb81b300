//! `niji ingest fhir|receipt|care`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use niji_ingest::care::{self, CareLayouts};
use niji_ingest::consent::{ConsentGate, ConsentPolicy, ConsentRegistry};
use niji_ingest::report::IngestReport;

use crate::{fhir, keys, output};

/// Ingest commands.
#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// FHIR R4 NDJSON, Bundles or arrays → CDM Parquet.
    Fhir(fhir::IngestFhirArgs),
    /// レセプト電算 receipt files (.UKE, CP932) → CDM Parquet.
    Receipt(SourceArgs),
    /// Long-term-care CSV (benefit statements, certifications; CP932) → CDM Parquet.
    Care(CareArgs),
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
    /// Consent registry (consent.csv, UTF-8). Without it no record is excluded by consent.
    #[arg(long)]
    pub consent: Option<PathBuf>,
    /// Purpose the data is ingested for: research, public-health or commercial-research.
    #[arg(long, default_value = "research", requires = "consent")]
    pub purpose: String,
    /// The dataset's policy for people without a consent record: opt-out (include) or opt-in (exclude).
    #[arg(long, default_value = "opt-out", requires = "consent")]
    pub consent_policy: String,
}

/// Arguments of `niji ingest care`.
#[derive(Debug, clap::Args)]
pub struct CareArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Folder with corrected layouts (care_benefit.toml, care_certification.toml); defaults to the built-in ones.
    #[arg(long)]
    pub layout_dir: Option<PathBuf>,
}

pub fn run(cmd: IngestCommand) -> anyhow::Result<()> {
    match cmd {
        IngestCommand::Fhir(args) => fhir::ingest(&args),
        IngestCommand::Receipt(args) => receipt(&args),
        IngestCommand::Care(args) => care_cmd(&args),
    }
}

fn gate(args: &SourceArgs, key: &niji_pseudo::PseudonymKey) -> anyhow::Result<Option<ConsentGate>> {
    let Some(path) = &args.consent else { return Ok(None) };
    let policy: ConsentPolicy =
        args.consent_policy.parse().map_err(|e: String| anyhow::anyhow!("--consent-policy: {e}"))?;
    if !["research", "public-health", "commercial-research"].contains(&args.purpose.as_str()) {
        anyhow::bail!("--purpose: expected research, public-health or commercial-research");
    }
    let registry = ConsentRegistry::load(path, key).context("loading the consent registry")?.with_policy(policy);
    Ok(Some(ConsentGate::today(registry, &args.purpose)))
}

fn receipt(args: &SourceArgs) -> anyhow::Result<()> {
    let key = keys::load(args.key_file.as_deref())?;
    let consent = gate(args, &key)?;
    let (report, stats) = niji_ingest::receipt::run(&args.inputs, &args.out, &key, consent.as_ref())?;
    summary(&report, &args.out);
    let by_type: Vec<String> = stats.loaded_by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    output::line(format_args!("receipts: {}; loaded lines by type: {}", stats.receipts, by_type.join(", ")));
    fail_if_unread(&report)
}

fn care_cmd(args: &CareArgs) -> anyhow::Result<()> {
    let key = keys::load(args.source.key_file.as_deref())?;
    let consent = gate(&args.source, &key)?;
    let layouts = match &args.layout_dir {
        Some(dir) => CareLayouts::load(dir)?,
        None => CareLayouts::builtin()?,
    };
    let report = care::run(&args.source.inputs, &args.source.out, &key, consent.as_ref(), &layouts)?;
    summary(&report, &args.source.out);
    fail_if_unread(&report)
}

fn summary(r: &IngestReport, out: &Path) {
    output::line(format_args!(
        "{} records: {} loaded, {} quarantined, {} consent-excluded ({} inputs) → {}",
        r.records,
        r.loaded,
        r.quarantined,
        r.consent_excluded,
        r.inputs.len(),
        out.display()
    ));
    for (t, n) in &r.rows_per_table {
        output::line(format_args!("  {t}: {n} rows"));
    }
    for (reason, n) in &r.quarantined_by_reason {
        output::line(format_args!("  quarantined {reason}: {n}"));
    }
    for (w, n) in &r.warnings {
        output::line(format_args!("  warning {w}: {n}"));
    }
    for i in r.inputs.iter().filter(|i| i.error.is_some()) {
        output::line(format_args!("  not read: {}", i.error.as_deref().unwrap_or("")));
    }
}

/// Exit non-zero when an input could not be read at all (the outputs and report are still written).
fn fail_if_unread(r: &IngestReport) -> anyhow::Result<()> {
    let unread = r.inputs.iter().filter(|i| i.error.is_some()).count();
    if unread > 0 {
        anyhow::bail!("{unread} of {} inputs could not be read (see _report.json)", r.inputs.len());
    }
    Ok(())
}
