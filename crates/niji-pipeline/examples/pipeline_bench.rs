//! Full-pipeline benchmark: `cargo run -p niji-pipeline --release --example pipeline_bench -- [PERSONS]`.
//! Generates niji-synth sources for PERSONS (default 100000) persons, runs the shipped `ehr`,
//! `claims` and `care` pipelines (pipelines/*.toml) into a temp data dir, and prints persons/s,
//! peak RSS and the share of time per stage.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use niji_catalog::{Catalog, DatasetDef};
use niji_pipeline::{PipelineSpec, RunOptions, run_pipeline};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let persons: u64 = std::env::args().nth(1).map_or(100_000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let t = Instant::now();
    let cfg = niji_synth::SynthConfig { persons, ..Default::default() };
    niji_synth::generate(&cfg, &d.join("landing")).unwrap();
    let synth_s = t.elapsed().as_secs_f64();
    let catalog = Catalog::open_default(d).await.unwrap();
    catalog.load_datasets("bench", &DatasetDef::load_dir(&root.join("catalog")).unwrap()).await.unwrap();
    let key = niji_pseudo::PseudonymKey::from_bytes(&[7u8; 32]).unwrap();
    let mut stages: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    println!("| pipeline | persons | records | loaded | quarantined | excluded | rows | seconds | persons/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in ["ehr", "claims", "care"] {
        let spec = PipelineSpec::load(&root.join("pipelines").join(format!("{name}.toml"))).unwrap();
        let t = Instant::now();
        let out = run_pipeline(&spec, &catalog, &key, &RunOptions::new(d)).await.unwrap();
        let s = t.elapsed().as_secs_f64();
        total += s;
        let c = &out.report["counts"];
        for (k, v) in out.report["timings_s"].as_object().unwrap() {
            *stages.entry(k.clone()).or_default() += v.as_f64().unwrap();
        }
        println!(
            "| {name} | {persons} | {} | {} | {} | {} | {} | {s:.1} | {:.0} |",
            c["records"],
            c["loaded"],
            c["quarantined"],
            c["consent_excluded"],
            c["rows_appended"],
            persons as f64 / s
        );
    }
    println!();
    println!(
        "synth: {synth_s:.1} s; pipelines: {total:.1} s for {persons} persons = {:.0} persons/s (EHR + claims + care)",
        persons as f64 / total
    );
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
    let staged: f64 = stages.values().sum();
    for (k, v) in &stages {
        println!("  stage {k:<10} {v:>8.1} s  {:>5.1} %", 100.0 * v / staged);
    }
}
