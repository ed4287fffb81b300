//! `niji`: the command line of the Niji platform.
//!
//! This is the only crate that knows clap; each command group lives in its own module and
//! turns its arguments into the typed calls of the core crates.

mod catalog;
mod fhir;
mod ingest;
mod keys;
mod output;
mod pipeline;
mod query;
mod quickstart;
mod serve;
mod synth;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Privacy-preserving secondary use of health data.
#[derive(Debug, Parser)]
#[command(name = "niji", version, about)]
struct Cli {
    /// Data directory: local object store and the embedded catalog.
    #[arg(long, global = true, env = "NIJI_DATA_DIR", default_value = "./niji-data")]
    data_dir: PathBuf,
    /// More log output (-v info, -vv debug). Logs go to stderr and never contain identifiers.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate deterministic synthetic source files (FHIR, receipts, care, consent).
    Synth(synth::SynthArgs),
    /// Read source files and write CDM tables as Parquet, with a quarantine file and a report.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// FHIR tools for stewards: evaluate a SQL-on-FHIR ViewDefinition.
    #[command(subcommand)]
    Fhir(fhir::FhirCommand),
    /// Steward: dataset definitions, versions and their review (load, datasets, versions, review, approve, reject).
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Steward: projects, members, budgets and expiry.
    #[command(subcommand)]
    Project(catalog::ProjectCommand),
    /// Admin: principals and their tokens.
    #[command(subcommand)]
    Principal(catalog::PrincipalCommand),
    /// Steward: read and verify the audit chain.
    #[command(subcommand)]
    Audit(catalog::AuditCommand),
    /// Pipelines: run one now, list them, show run history, or run them by schedule.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Researcher: answer one SQL query under the project's policy (sdc, extract or dp).
    Query(query::QueryArgs),
    /// Run the platform end to end on synthetic data in the data directory (start here).
    Quickstart(quickstart::QuickstartArgs),
    /// Serve the HTTP API (queries, datasets, projects, steward, audit, metrics) on loopback.
    Serve(serve::ServeArgs),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIJI_LOG")
        // The Delta kernel logs a missing table (normal before a table's first commit) as an error.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},buoyant_kernel::snapshot=off")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// mimalloc instead of the system allocator: the FHIR ingest's two threads allocate rows on
/// one thread and free them on the other, where glibc's arenas cost more than a third of the
/// run (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Synth(args) => synth::run(&args),
        Command::Ingest(cmd) => ingest::run(cmd),
        Command::Fhir(cmd) => fhir::run(cmd),
        Command::Catalog(cmd) => catalog::run_catalog(cmd, &cli.data_dir),
        Command::Project(cmd) => catalog::run_project(cmd, &cli.data_dir),
        Command::Principal(cmd) => catalog::run_principal(cmd, &cli.data_dir),
        Command::Audit(cmd) => catalog::run_audit(cmd, &cli.data_dir),
        Command::Pipeline(cmd) => pipeline::run(cmd, &cli.data_dir),
        Command::Serve(args) => serve::run(&args, &cli.data_dir),
        Command::Query(args) => query::run(&args, &cli.data_dir),
        Command::Quickstart(args) => quickstart::run(&args, &cli.data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
