//! `niji quickstart`: the whole platform as far as it goes today, end to end on embedded
//! defaults (local files, SQLite) in the data directory:
//!
//! 1. synthetic sources for N persons (`<data-dir>/landing`, kept between runs);
//! 2. the catalog: dataset definitions from `catalog/*.toml`, a demo steward and researcher, a
//!    demo project with a budget, a researcher token, and the audit chain verified;
//! 3. the pipelines in `./pipelines` (ehr, claims, care): ingest with the consent registry
//!    applied, Delta tables under `<data-dir>/lake`, each registering a dataset version pending
//!    review, which the demo steward then approves.
//!
//! 4. one example query per release mode as the demo researcher (`sdc`, `dp`, `extract`),
//!    printed with its privacy accounting;
//! 5. the HTTP API on loopback, with the researcher token and a curl example (`--no-serve`
//!    stops after step 4).
//!
//! Reruns reuse the landing zone; the pipelines then find no new files and register nothing.

use std::path::Path;

use anyhow::Context;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Role, VersionStatus, project::NewProject};
use niji_synth::SynthConfig;

use crate::{catalog, output, pipeline, query, serve};

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
    /// Stop after the example queries instead of serving the API.
    #[arg(long)]
    pub no_serve: bool,
    /// Address to serve the API on (a free port is taken if it is busy).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Query service settings.
    #[command(flatten)]
    pub service: query::ServiceArgs,
}

/// The example queries, one per release mode.
const EXAMPLES: &[(&str, Mode, Option<f64>, &str)] = &[
    (
        "Persons with type 2 diabetes (ICD-10 E11) by prefecture, top 5",
        Mode::Sdc,
        None,
        "SELECT p.prefecture_code, count(DISTINCT c.person_id) AS persons \
         FROM ehr.condition_occurrence c JOIN ehr.person p ON p.person_id = c.person_id \
         WHERE c.icd10_code LIKE 'E11%' GROUP BY p.prefecture_code ORDER BY persons DESC LIMIT 5",
    ),
    (
        "Persons by sex, differentially private (ε = 0.5, δ = 1e-7; each person in one group)",
        Mode::Dp,
        Some(0.5),
        "SELECT sex, count(DISTINCT person_id) AS persons FROM ehr.person GROUP BY sex ORDER BY sex",
    ),
    (
        "Five rows of person, re-keyed for the project",
        Mode::Extract,
        None,
        "SELECT person_id, sex, year_of_birth FROM ehr.person ORDER BY year_of_birth, person_id LIMIT 5",
    ),
];

/// Run `niji quickstart`.
pub fn run(args: &QuickstartArgs, data_dir: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let specs = Path::new("pipelines");
    if !specs.is_dir() {
        anyhow::bail!("no ./pipelines folder here: run quickstart from the repository root");
    }
    let landing = data_dir.join("landing");
    if landing.join("manifest.json").exists() {
        output::line(format_args!("1. sources: reusing {}", landing.display()));
    } else {
        if landing.exists() {
            std::fs::remove_dir_all(&landing).with_context(|| format!("clearing {}", landing.display()))?;
        }
        let cfg = SynthConfig { persons: args.persons, seed: args.seed, ..SynthConfig::default() };
        let s = niji_synth::generate(&cfg, &landing).context("generating synthetic sources")?;
        output::line(format_args!(
            "1. sources: {} synthetic persons, {:.1} MB → {}",
            s.persons,
            s.bytes_written as f64 / 1e6,
            landing.display()
        ));
    }

    let token = catalog::runtime()?.block_on(async {
        let c = catalog::open(data_dir).await?;
        setup_catalog(&c).await
    })?;

    output::line("3. pipelines (consent opt-out, purpose research; Delta tables under <data-dir>/lake):");
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
        for v in c.versions(Some(VersionStatus::Pending), None).await? {
            c.approve(v.id, &steward, "quickstart demo approval").await?;
            output::line(format_args!("4. approved {} version {} as demo-steward", v.dataset, v.id));
        }
        anyhow::Ok(())
    })?;
    let rt = catalog::runtime()?;
    rt.block_on(async {
        let c = catalog::open(data_dir).await?;
        let svc = query::service(&c, data_dir, &args.service).await?;
        let researcher = c.authenticate(&token).await?;
        output::line("5. example queries as demo-researcher in project demo:");
        for (title, mode, epsilon, sql) in EXAMPLES {
            output::line(format_args!("\n   {title} [{mode}]\n   {sql}"));
            let req = niji_query::QueryRequest {
                project: "demo".into(),
                sql: (*sql).into(),
                mode: Some(*mode),
                epsilon: *epsilon,
                delta: epsilon.map(|_| 1e-7),
                max_groups_per_person: epsilon.map(|_| 1),
                ..niji_query::QueryRequest::default()
            };
            match svc.run(&researcher, &req).await {
                Ok(a) => query::print_answer(&a)?,
                Err(e) => output::line(format_args!("   refused ({}): {}", e.code(), e.public_message())),
            }
        }
        output::line(format_args!(
            "\ndone in {:.1} s; data in {}",
            started.elapsed().as_secs_f64(),
            data_dir.display()
        ));
        if args.no_serve {
            return anyhow::Ok(());
        }
        let listener = match tokio::net::TcpListener::bind(args.addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(addr = %args.addr, error = %e, "address busy; taking a free port");
                tokio::net::TcpListener::bind((args.addr.ip(), 0)).await.context("binding a free port")?
            }
        };
        let bound = listener.local_addr()?;
        output::line(format_args!("\n6. the API is at http://{bound} (Ctrl-C to stop). Try:"));
        output::line(format_args!(
            "   curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n     \
             -d '{{\"project\": \"demo\", \"sql\": \"SELECT sex, count(*) AS n FROM ehr.person GROUP BY sex\"}}' \\\n     \
             http://{bound}/v1/queries"
        ));
        serve::serve_listener(c, svc, listener).await
    })
}

async fn principal(c: &Catalog, name: &str, role: Role) -> anyhow::Result<niji_catalog::Principal> {
    match c.principal_by_name(name).await {
        Ok(p) => Ok(p),
        Err(_) => Ok(c.create_principal("cli:quickstart", name, role).await?),
    }
}

/// Set up the catalog; returns a fresh researcher token.
async fn setup_catalog(c: &Catalog) -> anyhow::Result<String> {
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
                modes: vec![Mode::Sdc, Mode::Dp, Mode::Extract],
                budget: Budget::from_f64(3.0, 1e-5)?,
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
        "2. catalog: {} datasets; project demo (id {project}) with researcher demo-researcher",
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
    Ok(token.token)
}
