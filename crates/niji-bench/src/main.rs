//! `niji-bench`: prints our figure, the peer's figure and the ratio, measured in one run on
//! one machine. Peers (DuckDB, polars) are installed from PyPI into a virtual environment
//! that this command creates under `target/bench-venv`.
//!
//! Usage: `cargo run --release -p niji-bench -- <item>... [--persons N] [--work DIR]`
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark's output is its product

mod dp;
mod fhir;
mod peer;
mod receipt;

use std::path::PathBuf;

/// Common options of every benchmark item.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Synthetic persons to generate.
    pub persons: u64,
    /// Working folder for generated sources and outputs.
    pub work: PathBuf,
}

fn parse() -> anyhow::Result<(Vec<String>, Opts)> {
    let mut items = Vec::new();
    let mut opts = Opts { persons: 10_000, work: PathBuf::from("target/bench-work") };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--persons" => {
                opts.persons = args.next().ok_or_else(|| anyhow::anyhow!("--persons needs a number"))?.parse()?
            }
            "--work" => opts.work = args.next().ok_or_else(|| anyhow::anyhow!("--work needs a folder"))?.into(),
            "-h" | "--help" => {
                println!("usage: niji-bench <item>... [--persons N] [--work DIR]\nitems: {}", ITEMS.join(", "));
                std::process::exit(0);
            }
            other if other.starts_with('-') => anyhow::bail!("unknown option {other}"),
            other => items.push(other.to_owned()),
        }
    }
    if items.is_empty() || items.iter().any(|i| i == "all") {
        items = ITEMS.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok((items, opts))
}

/// Benchmark items, in run order.
const ITEMS: &[&str] = &["fhir", "receipt", "dp"];

fn main() -> anyhow::Result<()> {
    let (items, opts) = parse()?;
    std::fs::create_dir_all(&opts.work)?;
    for item in items {
        match item.as_str() {
            "fhir" => fhir::run(&opts)?,
            "receipt" => receipt::run(&opts)?,
            "dp" => dp::run(&opts)?,
            other => anyhow::bail!("unknown benchmark item `{other}`; items: {}", ITEMS.join(", ")),
        }
    }
    Ok(())
}
