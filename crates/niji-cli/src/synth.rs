//! `niji synth`: deterministic synthetic sources.

use std::path::PathBuf;

/// Arguments of `niji synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Number of persons.
    #[arg(long, default_value_t = 1000)]
    pub persons: u64,
    /// Seed: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(_args: &SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("niji synth is being built")
}
