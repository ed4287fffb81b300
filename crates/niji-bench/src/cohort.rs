//! The CDM data the real pipelines produce, for the `query` and `serve` items.
//!
//! `niji-synth` sources for `--persons` persons → the shipped `ehr`, `claims` and `care`
//! pipelines (`pipelines/*.toml`) → Delta tables under `<work>/cohort-<persons>/lake`, each
//! version approved by a steward, exactly as `niji quickstart` builds its data directory. The
//! folder is kept and reused by later runs at the same scale (delete it to rebuild).
//!
//! Each run adds a fresh project (so `dp` answers are never served from an earlier run's
//! cache) with its own access policies (`sdc` and `dp`, k = 10, rounding 5, every column
//! visible), and researchers who are members of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use niji_catalog::project::NewProject;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Principal, Role, VersionStatus};
use niji_pipeline::lake::Lake;
use niji_pipeline::{PipelineSpec, RunOptions, run_pipeline};
use niji_query::{QueryService, ServiceConfig, ServiceLimits};

use crate::Opts;

/// The datasets the pipelines register, in run order.
pub const DATASETS: &[&str] = &["ehr", "claims", "care"];

/// The repository root (catalog/, pipelines/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A prepared data directory.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// The data directory (catalog.db, lake/, policies/).
    pub dir: PathBuf,
    /// `dataset.table` → the Parquet files of the table's approved Delta version.
    pub files: BTreeMap<String, Vec<PathBuf>>,
}

/// A project for this run and its researchers.
#[derive(Debug, Clone)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Researchers (members of the project).
    pub researchers: Vec<Principal>,
}

/// The data directory for `opts`, built if it is not there yet.
pub async fn prepare(opts: &Opts) -> anyhow::Result<Cohort> {
    let dir = std::path::absolute(opts.work.join(format!("cohort-{}", opts.persons)))?;
    let ready = dir.join("ready");
    if ready.exists() {
        eprintln!("cohort: reusing {} (delete it to rebuild)", dir.display());
    } else {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        build(&dir, opts.persons).await?;
        std::fs::write(ready, b"")?;
    }
    let mut files = BTreeMap::new();
    for ds in DATASETS {
        let ds_dir = dir.join("lake").join(ds);
        let Ok(entries) = std::fs::read_dir(ds_dir) else { continue };
        let mut tables: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        tables.sort();
        for t in tables {
            let live = delta_files(&t)?;
            if !live.is_empty() {
                let name = t.file_name().and_then(|n| n.to_str()).context("table folder name")?;
                files.insert(format!("{ds}.{name}"), live);
            }
        }
    }
    anyhow::ensure!(!files.is_empty(), "no Delta tables under {}", dir.join("lake").display());
    Ok(Cohort { dir, files })
}

async fn build(dir: &Path, persons: u64) -> anyhow::Result<()> {
    let t = Instant::now();
    let cfg = niji_synth::SynthConfig { persons, ..Default::default() };
    let s = niji_synth::generate(&cfg, &dir.join("landing")).context("generating synthetic sources")?;
    eprintln!(
        "cohort: {} persons of synthetic sources ({:.1} MB) in {:.1} s",
        s.persons,
        s.bytes_written as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let root = repo_root();
    let catalog = Catalog::open_default(dir).await?;
    catalog.load_datasets("bench", &DatasetDef::load_dir(&root.join("catalog"))?).await?;
    let steward = catalog.create_principal("bench", "bench-steward", Role::Steward).await?;
    let key = niji_pseudo::PseudonymKey::from_bytes(&[7u8; 32])?;
    for name in DATASETS {
        let t = Instant::now();
        let spec = PipelineSpec::load(&root.join("pipelines").join(format!("{name}.toml")))?;
        let out = run_pipeline(&spec, &catalog, &key, &RunOptions::new(dir))
            .await
            .with_context(|| format!("pipeline {name}"))?;
        eprintln!("cohort: pipeline {name}: {} in {:.1} s", out.report["counts"], t.elapsed().as_secs_f64());
    }
    for v in catalog.versions(Some(VersionStatus::Pending), None).await? {
        catalog.approve(v.id, &steward.actor(), "niji-bench").await?;
    }
    Ok(())
}

/// The live Parquet files of a local Delta table: `add` minus `remove` over its log.
fn delta_files(table: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let log = table.join("_delta_log");
    let Ok(entries) = std::fs::read_dir(log) else { return Ok(Vec::new()) };
    let mut commits: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    let mut live = std::collections::BTreeSet::new();
    for c in commits {
        for line in std::fs::read_to_string(&c)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| c.display().to_string())?;
            if let Some(p) = v.pointer("/add/path").and_then(|p| p.as_str()) {
                anyhow::ensure!(!p.contains('%'), "escaped Delta path in {}", c.display());
                live.insert(p.to_owned());
            }
            if let Some(p) = v.pointer("/remove/path").and_then(|p| p.as_str()) {
                live.remove(p);
            }
        }
    }
    Ok(live.into_iter().map(|p| table.join(p)).collect())
}

/// A fresh project over every dataset with `researchers` members, and its policy files.
pub async fn project(cohort: &Cohort, catalog: &Catalog, researchers: usize) -> anyhow::Result<Project> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros();
    let name = format!("bench{stamp}");
    let policies = cohort.dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for ds in DATASETS {
        std::fs::write(
            policies.join(format!("{name}-{ds}.toml")),
            format!("project = \"{name}\"\ndataset = \"{ds}\"\nmodes = [\"sdc\", \"dp\"]\nk = 10\nrounding = 5\n"),
        )?;
    }
    let steward = catalog.principal_by_name("bench-steward").await?;
    let p = NewProject {
        name: name.clone(),
        purpose: "niji-bench".into(),
        datasets: DATASETS.iter().map(|d| (*d).to_owned()).collect(),
        modes: vec![Mode::Sdc, Mode::Dp],
        budget: Budget::from_f64(10_000.0, 0.5)?,
        expires_at: None,
    };
    let id = catalog.create_project(&steward.actor(), &p).await?;
    let mut members = Vec::new();
    for i in 0..researchers.max(1) {
        let r = catalog.create_principal("bench", &format!("{name}-r{i}"), Role::Researcher).await?;
        catalog.grant(&steward.actor(), id, r.id).await?;
        members.push(r);
    }
    Ok(Project { name, researchers: members })
}

/// The query service over the data directory, as `niji query` and `niji serve` build it.
pub async fn service(dir: &Path, catalog: &Catalog) -> anyhow::Result<QueryService> {
    let lake = Lake::new(None, dir, Default::default())?;
    let policies = QueryService::load_policies(catalog, &dir.join("policies")).await?;
    Ok(QueryService::new(
        catalog.clone(),
        ServiceConfig { lake, policies, extract_key: None, limits: ServiceLimits::default() },
    )?)
}
