//! `niji query`: answer one researcher query in-process against the data directory, exactly as
//! `POST /v1/queries` would (same service, same policy, same logging), and print the answer
//! with its privacy accounting.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use niji_catalog::{Catalog, Mode};
use niji_pipeline::lake::Lake;
use niji_pseudo::PseudonymKey;
use niji_query::{QueryAnswer, QueryRequest, QueryService, ServiceConfig, ServiceLimits, encode};

use crate::{catalog, output};

/// Environment variable with the extract master key (hex); else `<data-dir>/keys/extract.key`.
pub const EXTRACT_KEY_ENV: &str = "NIJI_EXTRACT_KEY";

/// Where the query service reads from (shared by `query`, `serve` and `quickstart`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Access policies folder (`<project>-<dataset>.toml`).
    #[arg(long, env = "NIJI_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Lake root (folder, file:// or s3:// URL); default `<data-dir>/lake`, where pipelines write.
    #[arg(long, env = "NIJI_LAKE_URL")]
    pub lake: Option<String>,
    /// Wall-clock limit of one query, in seconds (planning included).
    #[arg(long, default_value_t = 60)]
    pub query_timeout: u64,
    /// Memory limit of one query, in MiB.
    #[arg(long, default_value_t = 512)]
    pub query_memory_mib: usize,
}

/// Output format of `niji query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A text table and the privacy accounting.
    Table,
    /// The JSON of `POST /v1/queries`.
    Json,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC stream (binary, to stdout).
    Arrow,
}

/// Arguments of `niji query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Project id or name.
    #[arg(long)]
    pub project: String,
    /// Release mode (default: the policy's default for the project's first dataset).
    #[arg(long)]
    pub mode: Option<String>,
    /// DP: ε to spend.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// DP: δ to spend.
    #[arg(long)]
    pub delta: Option<f64>,
    /// Check (and for dp, cost) the query without running or charging it.
    #[arg(long)]
    pub dry_run: bool,
    /// DP: groups one person may contribute to (L).
    #[arg(long)]
    pub max_groups_per_person: Option<u32>,
    /// DP: rows one person contributes per group (C).
    #[arg(long)]
    pub max_rows_per_person: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The researcher's bearer token.
    #[arg(long, env = "NIJI_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Service settings.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// One SQL query.
    pub sql: String,
}

/// The extract master key: `NIJI_EXTRACT_KEY`, else `<data-dir>/keys/extract.key`, created with
/// fresh random bytes (mode 0600) on first use. It is not the pipeline key.
pub fn extract_key(data_dir: &Path) -> anyhow::Result<PseudonymKey> {
    if std::env::var_os(EXTRACT_KEY_ENV).is_some() {
        return PseudonymKey::from_env(EXTRACT_KEY_ENV).context("loading NIJI_EXTRACT_KEY");
    }
    let path = data_dir.join("keys").join("extract.key");
    if !path.exists() {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let bytes: [u8; 32] = rand::random();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(hex_encode(&bytes).as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    PseudonymKey::from_file(&path).with_context(|| format!("loading {}", path.display()))
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Build the query service over the data directory.
pub async fn service(c: &Catalog, data_dir: &Path, args: &ServiceArgs) -> anyhow::Result<QueryService> {
    let lake = Lake::new(args.lake.as_deref(), data_dir, Default::default()).context("opening the lake")?;
    let policies = QueryService::load_policies(c, &args.policies).await.context("loading the access policies")?;
    let limits = ServiceLimits {
        timeout: std::time::Duration::from_secs(args.query_timeout.max(1)),
        memory_bytes: args.query_memory_mib.max(16) * 1024 * 1024,
        ..ServiceLimits::default()
    };
    let extract_key = Some(extract_key(data_dir)?);
    Ok(QueryService::new(c.clone(), ServiceConfig { lake, policies, extract_key, limits })?)
}

/// Print an answer as a table with its accounting.
pub fn print_answer(a: &QueryAnswer) -> anyhow::Result<()> {
    output::line(encode::pretty(&a.batches)?);
    let p = &a.privacy;
    let mut notes = vec![format!("mode {}", p.mode)];
    match p.mode {
        Mode::Dp => {
            notes.push(format!("spent ε={} δ={:e}", p.epsilon_spent, p.delta_spent));
            for n in &p.noise {
                notes.push(format!("{}: {} noise, scale {:.3}, ±{:.1} (95 %)", n.column, n.mechanism, n.scale, n.ci95));
            }
        }
        Mode::Sdc => {
            if let (Some(k), Some(r)) = (p.k, p.rounding) {
                notes.push(format!("cells under k={k} persons withheld: {}", p.suppressed_rows.unwrap_or(0)));
                notes.push(format!("counts rounded to {r}"));
            }
        }
        Mode::Extract => {
            notes.push(format!(
                "person_id re-keyed for this project; row cap {}{}",
                p.row_cap.unwrap_or(0),
                if p.truncated == Some(true) { " (cut)" } else { "" }
            ));
        }
    }
    notes.push(format!("budget left ε={} δ={:e}", p.budget_remaining.epsilon, p.budget_remaining.delta));
    if p.cached {
        notes.push("cached answer, no new charge".into());
    }
    output::line(format_args!("  {} · query {}", notes.join(" · "), a.query_id));
    Ok(())
}

/// The JSON body of an answer, as the HTTP API returns it.
pub fn answer_json(a: &QueryAnswer) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "columns": encode::columns(&a.schema),
        "rows": encode::json_rows(&a.schema, &a.batches)?,
        "privacy": a.privacy,
        "dataset_versions": a.dataset_versions,
        "query_id": a.query_id,
    }))
}

/// Run `niji query`.
pub fn run(args: &QueryArgs, data_dir: &Path) -> anyhow::Result<()> {
    let mode = args.mode.as_deref().map(str::parse::<Mode>).transpose().context("--mode: dp, sdc or extract")?;
    catalog::runtime()?.block_on(async {
        let c = catalog::open(data_dir).await?;
        let caller = c.authenticate(&args.token).await.context("authenticating the token")?;
        let svc = service(&c, data_dir, &args.service).await?;
        let req = QueryRequest {
            project: args.project.clone(),
            sql: args.sql.clone(),
            mode,
            epsilon: args.epsilon,
            delta: args.delta,
            dry_run: args.dry_run,
            max_groups_per_person: args.max_groups_per_person,
            max_rows_per_person: args.max_rows_per_person,
        };
        let a = svc
            .run(&caller, &req)
            .await
            .map_err(|e| anyhow::anyhow!("refused ({}): {}", e.code(), e.public_message()))?;
        match args.format {
            Format::Table => print_answer(&a)?,
            Format::Json => output::line(serde_json::to_string_pretty(&answer_json(&a)?)?),
            Format::Csv => output::raw(&String::from_utf8_lossy(&encode::csv(&a.schema, &a.batches)?)),
            Format::Arrow => output::bytes(&encode::arrow_ipc(&a.schema, &a.batches)?)?,
        }
        anyhow::Ok(())
    })
}
