//! `niji fhir view` and `niji ingest fhir`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use niji_ingest::fhir::read;
use niji_ingest::fhir::{Env, FhirIngestOptions, View};

use crate::{keys, output};

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

pub fn run(cmd: FhirCommand) -> anyhow::Result<()> {
    match cmd {
        FhirCommand::View { view, inputs } => view_cmd(&view, &inputs),
    }
}

/// Print the view's rows as NDJSON. Records that are not resources, and resources the view
/// fails on, are reported on stderr by location and the run continues; the exit status is
/// an error if any were found.
fn view_cmd(view_path: &Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let text = std::fs::read(view_path).with_context(|| format!("reading {}", view_path.display()))?;
    let def: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", view_path.display()))?;
    let view = View::compile(&def).with_context(|| format!("compiling {}", view_path.display()))?;
    let mut problems = 0u64;
    for input in inputs {
        let file = input.display().to_string();
        read::read_input(input, &mut |unit| {
            let place = match (unit.loc.line, unit.loc.entry) {
                (Some(l), _) => format!("{file}:{l}"),
                (None, Some(e)) => format!("{file} entry {e}"),
                (None, None) => file.clone(),
            };
            match unit.resource {
                Err(bad) => {
                    problems += 1;
                    tracing::warn!("{place}: {} ({})", bad.reason, bad.detail);
                }
                Ok(res) => {
                    let env = Env { aliases: unit.aliases, resource_key: unit.full_url };
                    match view.eval(res, &env) {
                        Ok(rows) => {
                            let mut out = String::new();
                            for r in rows {
                                out.push_str(&view.row_json(&r).to_string());
                                out.push('\n');
                            }
                            output::raw(&out);
                        }
                        Err(e) => {
                            problems += 1;
                            tracing::warn!("{place}: {e}");
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    if problems > 0 {
        anyhow::bail!("{problems} record(s) could not be evaluated (see above)");
    }
    Ok(())
}

pub fn ingest(args: &IngestFhirArgs) -> anyhow::Result<()> {
    let key = keys::load(args.key_file.as_deref())?;
    let opts = FhirIngestOptions {
        inputs: args.inputs.clone(),
        out: args.out.clone(),
        batch_rows: niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS,
    };
    let report = niji_ingest::fhir::ingest(&opts, &key)?;
    output::line(format!(
        "fhir: {} records: {} loaded, {} quarantined; output in {}",
        report.records,
        report.loaded,
        report.quarantined,
        args.out.display()
    ));
    for (table, rows) in &report.rows_per_table {
        output::line(format!("  {table}: {rows} rows"));
    }
    for (reason, n) in &report.quarantined_by_reason {
        output::line(format!("  quarantined {reason}: {n}"));
    }
    for (code, n) in &report.warnings {
        output::line(format!("  warning {code}: {n}"));
    }
    Ok(())
}
