//! `niji-bench`: prints our figure, the peer's figure and the ratio, measured in one run on
//! one machine. Peers (DuckDB, polars) are installed from PyPI into a virtual environment
//! that this command creates under `target/bench-venv`.
//!
//! Usage: `cargo run --release -p niji-bench -- <item>... [--persons N] [--work DIR] [--runs R]
//! [--researchers N] [--seconds S] [--json FILE] [--no-peers]`
//!
//! At the end the summary table goes to stdout and every figure to `--json`
//! (default `<work>/results.json`).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark's output is its product

mod cohort;
mod dp;
mod fhir;
mod peer;
mod pseudo;
mod query;
mod receipt;
mod report;
mod serve;

use std::path::PathBuf;

/// Common options of every benchmark item.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Synthetic persons to generate.
    pub persons: u64,
    /// Working folder for generated sources and outputs.
    pub work: PathBuf,
    /// Timed runs per query (median reported), after one warm-up.
    pub runs: usize,
    /// Whether to run the Python peers (off: ours only, no network).
    pub peers: bool,
    /// Concurrent researchers for `serve`.
    pub researchers: usize,
    /// Time limit of the `serve` load, in seconds.
    pub seconds: u64,
    /// Queries per researcher for `serve` (the load stops at whichever limit comes first).
    pub per_researcher: usize,
    /// Where the JSON results go.
    pub json: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            persons: 10_000,
            work: PathBuf::from("target/bench-work"),
            runs: 3,
            peers: true,
            researchers: 8,
            seconds: 30,
            per_researcher: 25,
            json: None,
        }
    }
}

fn number<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(args.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?.parse()?)
}

fn parse() -> anyhow::Result<(Vec<String>, Opts)> {
    let mut items = Vec::new();
    let mut opts = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--persons" => opts.persons = number(&mut args, "--persons")?,
            "--runs" => opts.runs = number::<usize>(&mut args, "--runs")?.max(1),
            "--researchers" => opts.researchers = number::<usize>(&mut args, "--researchers")?.clamp(1, 256),
            "--seconds" => opts.seconds = number::<u64>(&mut args, "--seconds")?.clamp(1, 600),
            "--queries" => opts.per_researcher = number::<usize>(&mut args, "--queries")?.clamp(1, 10_000),
            "--work" => opts.work = args.next().ok_or_else(|| anyhow::anyhow!("--work needs a folder"))?.into(),
            "--json" => opts.json = Some(args.next().ok_or_else(|| anyhow::anyhow!("--json needs a file"))?.into()),
            "--no-peers" => opts.peers = false,
            "-h" | "--help" => {
                println!(
                    "usage: niji-bench <item>... [--persons N] [--work DIR] [--runs R] [--researchers N] \
                     [--seconds S] [--queries Q] [--json FILE] [--no-peers]\nitems: all, {}",
                    ITEMS.join(", ")
                );
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
const ITEMS: &[&str] = &["fhir", "receipt", "pseudo", "query", "serve", "dp"];

/// The allocator of `niji` (niji-cli), so the figures are those of the shipped binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // The `serve` item's server child: `niji-bench __serve <data-dir>`.
    let mut raw = std::env::args().skip(1);
    if raw.next().as_deref() == Some(serve::CHILD_ARG) {
        let dir = raw.next().ok_or_else(|| anyhow::anyhow!("{} needs the data directory", serve::CHILD_ARG))?;
        return serve::child(&PathBuf::from(dir));
    }
    let (items, opts) = parse()?;
    std::fs::create_dir_all(&opts.work)?;
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for item in &items {
        if !opts.peers && item == "receipt" {
            println!("{item}: skipped (--no-peers)");
            continue;
        }
        let outcome = match item.as_str() {
            "fhir" => fhir::run(&opts),
            "receipt" => receipt::run(&opts),
            "pseudo" => pseudo::run(&opts),
            "query" => query::run(&opts),
            "serve" => serve::run(&opts),
            // dp.rs prints its own table (stdout only).
            "dp" => dp::run(&opts).map(|()| {
                report::detail("dp", serde_json::json!("printed to stdout only (see the dp table above)"));
            }),
            other => anyhow::bail!("unknown benchmark item `{other}`; items: all, {}", ITEMS.join(", ")),
        };
        // One failing item does not lose the others' figures: it is reported and the run goes on.
        if let Err(e) = outcome {
            eprintln!("{item}: FAILED: {e:#}");
            report::record(report::Row {
                item: item.clone(),
                what: "item failed".into(),
                unit: "-".into(),
                ours: None,
                peer: "-".into(),
                peer_value: None,
                note: format!("{e:#}").replace('|', "/").replace('\n', " "),
            });
            failed.push(item.clone());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("\n## Summary ({} persons, {seconds:.0} s)\n\n{}", opts.persons, report::table());
    let path = opts.json.clone().unwrap_or_else(|| opts.work.join("results.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&report::json(opts.persons, &items, seconds))?)?;
    println!("results: {}", path.display());
    anyhow::ensure!(failed.is_empty(), "items failed: {}", failed.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests;
