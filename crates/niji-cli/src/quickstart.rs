//! `niji quickstart`: the whole platform as far as it goes today, end to end on embedded
//! defaults (local files, SQLite) in the data directory:
//!
//! 1. synthetic sources for N persons (`<data-dir>/landing`, kept between runs);
//! 2. FHIR, receipt and care ingest with the consent registry applied (opt-out, purpose
//!    research), CDM Parquet under `<data-dir>/staging/<source>`, each run report checked to add up;
//! 3. the catalog: dataset definitions from `catalog/*.toml`, a demo steward and researcher, a
//!    demo project with a budget, a researcher token, and the audit chain verified;
//! 4. the pipelines in `./pipelines` (ehr, claims, care) into Delta tables, each registering a
//!    dataset version pending review, which the demo steward then approves.
//!
//! Reruns reuse the landing zone and redo the ingest into a clean staging folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Role, VersionStatus, project::NewProject};
use niji_ingest::care::CareLayouts;
use niji_ingest::consent::{ConsentGate, ConsentPolicy, ConsentRegistry};
use niji_ingest::fhir::{FhirIngestOptions, ingest as fhir_ingest};
use niji_ingest::report::IngestReport;
use niji_ingest::sink::CdmSink;
use niji_synth::SynthConfig;

use crate::{catalog, keys, output, pipeline};

/// The dataset definitions shipped with the repository, embedded so quickstart runs from any folder.
const DATASETS: &[(&str, &str)] = &[
    ("catalog/ehr.toml", include_str!("../../../catalog/ehr.toml")),
    ("catalog/claims.toml", include_str!("../../../catalog/claims.toml")),
    ("catalog/care.toml", include_str!("../../../catalog/care.toml")),
];

/// Arguments of `niji quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Synthetic persons to generate (only when the landing zone is empty).
    #[arg(long, default_value_t = 10_000)]
    pub persons: u64,
    /// Seed of the synthetic sources.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Files directly in `dir` whose name ends with one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_file() && suffixes.iter().any(|s| name.ends_with(s)) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn fresh(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_owned())
}

fn print_report(label: &str, r: &IngestReport) {
    output::line(format_args!(
        "{label:<8} {:>9} records  {:>9} loaded  {:>6} quarantined  {:>6} consent-excluded",
        r.records, r.loaded, r.quarantined, r.consent_excluded
    ));
    for (reason, n) in &r.quarantined_by_reason {
        output::line(format_args!("{:<8}   quarantined {reason}: {n}", ""));
    }
}

/// Run `niji quickstart`.
pub fn run(args: &QuickstartArgs, data_dir: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let landing = data_dir.join("landing");
    if landing.join("manifest.json").exists() {
        output::line(format_args!("1. sources: reusing {}", landing.display()));
    } else {
        fresh(&landing)?;
        let cfg = SynthConfig { persons: args.persons, seed: args.seed, ..SynthConfig::default() };
        let s = niji_synth::generate(&cfg, &landing).context("generating synthetic sources")?;
        output::line(format_args!(
            "1. sources: {} synthetic persons, {:.1} MB → {}",
            s.persons,
            s.bytes_written as f64 / 1e6,
            landing.display()
        ));
    }

    // The quickstart always uses the public demo key unless the operator set one.
    let key = keys::load(None)?;
    let registry = ConsentRegistry::load(&landing.join("consent/consent.csv"), &key)
        .context("loading the consent registry")?
        .with_policy(ConsentPolicy::OptOut);
    let gate = ConsentGate::today(registry, "research");
    let staging = data_dir.join("staging");
    output::line(format_args!(
        "2. ingest (key id {}; consent opt-out, purpose research, gated at receipt and care ingest; \
         FHIR has no ingest-time gate yet: `niji pipeline run ehr` applies consent to its rows):",
        key.key_id()
    ));

    let mut fhir_inputs = files(&landing.join("fhir"), &[".ndjson"])?;
    fhir_inputs.extend(files(&landing.join("fhir/bundles"), &[".json"])?);
    let opts = FhirIngestOptions {
        inputs: fhir_inputs,
        out: fresh(&staging.join("fhir"))?,
        batch_rows: CdmSink::DEFAULT_BATCH_ROWS,
    };
    let fhir = fhir_ingest(&opts, &key).context("FHIR ingest")?;
    print_report("fhir", &fhir);
    let receipts = files(&landing.join("receipts"), &[".UKE"])?;
    let (receipt, _) = niji_ingest::receipt::run(&receipts, &fresh(&staging.join("receipt"))?, &key, Some(&gate))
        .context("receipt ingest")?;
    print_report("receipt", &receipt);
    let care_inputs = files(&landing.join("care"), &[".csv"])?;
    let care = niji_ingest::care::run(
        &care_inputs,
        &fresh(&staging.join("care"))?,
        &key,
        Some(&gate),
        &CareLayouts::builtin()?,
    )
    .context("care ingest")?;
    print_report("care", &care);
    for (label, r) in [("fhir", &fhir), ("receipt", &receipt), ("care", &care)] {
        r.check_balanced().with_context(|| format!("{label} report"))?;
        let rows: Vec<String> = r.rows_per_table.iter().map(|(t, n)| format!("{t} {n}")).collect();
        output::line(format_args!("{label:<8}   rows: {}", rows.join(", ")));
    }

    catalog::runtime()?.block_on(async {
        let c = catalog::open(data_dir).await?;
        setup_catalog(&c).await
    })?;

    let specs = Path::new("pipelines");
    if specs.is_dir() {
        output::line("4. pipelines (Delta tables under <data-dir>/lake, a dataset version pending review each):");
        for name in ["ehr", "claims", "care"] {
            let cmd = pipeline::PipelineCommand::Run {
                name: name.to_owned(),
                common: pipeline::Common { dir: specs.to_owned(), key_file: None },
                wait: 0,
                json: false,
                quiet: true,
            };
            pipeline::run(cmd, data_dir).with_context(|| format!("pipeline {name}"))?;
        }
        catalog::runtime()?.block_on(async {
            let c = catalog::open(data_dir).await?;
            let steward = c.principal_by_name("demo-steward").await?.actor();
            let pending = c.versions(Some(VersionStatus::Pending), None).await?;
            for v in &pending {
                c.approve(v.id, &steward, "quickstart demo approval").await?;
                output::line(format_args!("5. approved {} version {} as demo-steward", v.dataset, v.id));
            }
            anyhow::Ok(())
        })?;
    } else {
        output::line("4. pipelines: no ./pipelines folder here (run from the repository root to load Delta tables)");
    }
    output::line(format_args!("done in {:.1} s; data in {}", started.elapsed().as_secs_f64(), data_dir.display()));
    Ok(())
}

async fn principal(c: &Catalog, name: &str, role: Role) -> anyhow::Result<niji_catalog::Principal> {
    match c.principal_by_name(name).await {
        Ok(p) => Ok(p),
        Err(_) => Ok(c.create_principal("cli:quickstart", name, role).await?),
    }
}

async fn setup_catalog(c: &Catalog) -> anyhow::Result<()> {
    let defs = DATASETS
        .iter()
        .map(|(path, text)| DatasetDef::parse(text, Path::new(path)))
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the dataset definitions")?;
    c.load_datasets("cli:quickstart", &defs).await?;
    let steward = principal(c, "demo-steward", Role::Steward).await?;
    let researcher = principal(c, "demo-researcher", Role::Researcher).await?;
    let project = match c.project_by_name("demo").await {
        Ok(p) => p.id,
        Err(_) => {
            let p = NewProject {
                name: "demo".into(),
                purpose: "Quickstart demonstration on synthetic data".into(),
                datasets: defs.iter().map(|d| d.name.clone()).collect(),
                modes: vec![Mode::Dp, Mode::Sdc],
                budget: Budget::from_f64(3.0, 1e-6)?,
                expires_at: None,
            };
            let id = c.create_project(&steward.actor(), &p).await?;
            c.grant(&steward.actor(), id, researcher.id).await?;
            id
        }
    };
    let token = c.issue_token("cli:quickstart", researcher.id, None).await?;
    let audit = c.verify_audit().await?;
    output::line(format_args!(
        "3. catalog: {} datasets; project demo (id {project}) with researcher demo-researcher",
        defs.len()
    ));
    output::line(format_args!("   researcher token (shown once): {}", token.token));
    output::line(format_args!(
        "   audit chain: {} entries, {}",
        audit.entries,
        if audit.is_valid() { "verified" } else { "BROKEN (run `niji audit verify`)" }
    ));
    if !audit.is_valid() {
        anyhow::bail!("the audit chain did not verify");
    }
    Ok(())
}
