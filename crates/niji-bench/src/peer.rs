//! Peers run in Python (DuckDB, polars) from a virtual environment this command creates.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Python packages the peers need, with pinned major versions.
const PEER_PACKAGES: &[&str] = &["duckdb>=1.1", "polars>=1.0"];

/// The virtual environment's python, created and populated on first use.
pub fn python() -> anyhow::Result<PathBuf> {
    let venv = Path::new("target/bench-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!("creating {} with {}", venv.display(), PEER_PACKAGES.join(", "));
        let ok = Command::new("python3").args(["-m", "venv"]).arg(venv).status().context("python3 -m venv")?.success();
        if !ok {
            bail!("python3 -m venv failed");
        }
    }
    let check = Command::new(&py).args(["-c", "import duckdb, polars"]).output().context("run venv python")?;
    if !check.status.success() {
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PEER_PACKAGES)
            .status()
            .context("pip install peers")?
            .success();
        if !ok {
            bail!("pip install {} failed", PEER_PACKAGES.join(" "));
        }
    }
    Ok(py)
}

/// Run a Python snippet in the peer environment; returns its stdout. Snippets print their
/// own measurements (e.g. `seconds=1.234`) so that interpreter start-up is not timed.
pub fn run(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let py = python()?;
    let out = Command::new(py).arg("-c").arg(script).args(args).output().context("run peer script")?;
    if !out.status.success() {
        bail!("peer script failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Read `key=value` from a peer's output.
pub fn value(out: &str, key: &str) -> anyhow::Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .with_context(|| format!("peer output lacks {key}"))?
        .trim()
        .parse()
        .with_context(|| format!("peer value {key}"))
}

/// One result row: ours against the peer, printed now and recorded for the summary and JSON.
pub fn row(key: &str, item: &str, unit: &str, ours: f64, peer_name: &str, peer: f64) {
    row_noted(key, item, unit, ours, peer_name, peer, "");
}

/// As [`row`], with a note for the summary and JSON (how the figures were taken).
pub fn row_noted(key: &str, item: &str, unit: &str, ours: f64, peer_name: &str, peer: f64, note: &str) {
    let ratio = if peer > 0.0 { ours / peer } else { f64::NAN };
    println!("{item:<36} {ours:>14.1} {unit:<12} {peer_name:<10} {peer:>14.1} {unit:<12} ratio {ratio:>6.2}x");
    crate::report::pair(key, item, unit, ours, peer_name, peer, note);
}
