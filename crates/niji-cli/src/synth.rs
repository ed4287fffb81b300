//! `niji synth`: deterministic synthetic sources.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use niji_synth::SynthConfig;

use crate::output;

/// Arguments of `niji synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Number of persons.
    #[arg(long, default_value_t = 1000)]
    pub persons: u64,
    /// Seed: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (created; must be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Probability of a true typo in a record's identifiers (breaks linkage).
    #[arg(long, default_value_t = 0.02)]
    pub typo_rate: f64,
    /// Probability of a normalizable identifier variant per record (width, kana, missing branch).
    #[arg(long, default_value_t = 0.1)]
    pub variant_rate: f64,
    /// First year of the period (starts January 1st).
    #[arg(long, default_value_t = 2023)]
    pub start_year: i32,
    /// Length of the period in months.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
}

pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        persons: args.persons,
        seed: args.seed,
        typo_rate: args.typo_rate,
        start_year: args.start_year,
        months: args.months,
        variant_rate: args.variant_rate,
    };
    let started = Instant::now();
    let summary = niji_synth::generate(&cfg, &args.out)
        .with_context(|| format!("generating synthetic sources into {}", args.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    output::line(format_args!("{:<28} {:>8} {:>12} {:>14}", "kind", "files", "records", "bytes"));
    for (kind, k) in &summary.kinds {
        output::line(format_args!("{kind:<28} {:>8} {:>12} {:>14}", k.files, k.records, k.bytes));
    }
    output::line(format_args!(
        "{} persons, {} bytes in {secs:.1} s ({:.0} persons/s) → {}",
        summary.persons,
        summary.bytes_written,
        summary.persons as f64 / secs.max(1e-9),
        args.out.display()
    ));
    Ok(())
}
