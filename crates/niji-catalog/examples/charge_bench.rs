//! Budget-charge throughput: `cargo run -p niji-catalog --release --example charge_bench -- [URL] [N]`.
//! URL defaults to a SQLite file in a temp dir; N (default 2000) charges are fired from 64
//! concurrent tasks against a budget that fits half of them. Prints a table row per run.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use niji_catalog::project::NewProject;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().unwrap();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("catalog.db").display()));
    let n: i64 = args.get(2).map_or(2000, |s| s.parse().unwrap());
    let c = Catalog::connect(&url).await.unwrap();
    let defs = DatasetDef::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog")).unwrap();
    c.load_datasets("bench", &defs).await.unwrap();
    let name = format!("bench-{}", chrono::Utc::now().timestamp_micros());
    let project = NewProject {
        name,
        purpose: "benchmark".into(),
        datasets: vec!["claims".into()],
        modes: vec![Mode::Dp],
        budget: Budget::new(n / 2 * 1000, 0).unwrap(),
        expires_at: None,
    };
    let id = c.create_project("bench", &project).await.unwrap();
    let per_task = n / 64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..per_task {
                    if c.charge(id, "bench", None, Budget::new(1000, 0).unwrap()).await.is_ok() {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = per_task * 64;
    println!("backend\tcharges\taccepted\tseconds\tcharges/s");
    println!("{:?}\t{total}\t{ok}\t{secs:.3}\t{:.0}", c.backend(), total as f64 / secs);
    let spent = c.project(id).await.unwrap().spent.epsilon_micro;
    assert!(spent <= n / 2 * 1000);
}
