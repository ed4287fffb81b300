//! The query service: approved researchers' SQL in, released results out.
//!
//! [`QueryService::run`] takes a caller (an authenticated principal) and a [`QueryRequest`]:
//!
//! 1. **Permit** (catalog, on the caller's runtime): the project exists, has not expired, the
//!    caller is a current member; each dataset of the project with a steward-approved version
//!    whose policy allows the request's mode is exposed at exactly that version.
//! 2. **Guard** ([`niji_policy::guard`]): size, one statement, queries only, nesting depth,
//!    table functions — before anything plans.
//! 3. **Plan** in a fresh session ([`session`]) holding only the permitted views, with DDL, DML
//!    and statements off ([`SQLOptions`]), then [`niji_policy::check_plan`].
//! 4. **Release** by mode: `sdc` (distinct persons per cell computed beside the answer, cells
//!    under k withheld, counts rounded), `extract` (rows with `person_id` re-keyed per project,
//!    capped), `dp` (refused until the differential-privacy layer lands).
//! 5. **Record**: the query log and an audit entry (digests and shapes, never values).
//!
//! Planning and execution run on a dedicated CPU runtime (threads with large stacks), under a
//! per-query memory pool, a wall-clock deadline that covers planning too, and a cap on
//! concurrent queries: a runaway query fails alone while the rest are served.

pub mod encode;
mod error;
pub mod release;
pub mod session;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::SessionContext;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Principal, QueryRecord};
use niji_pipeline::lake::Lake;
use niji_policy::{Limits, PolicySet};
use niji_pseudo::{ProjectKey, PseudonymKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use error::{Kind, QueryError, Result};
pub use session::ExposedDataset;

/// Resource limits of the service.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// The SQL guard's limits.
    pub sql: Limits,
    /// Memory pool of one query, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one query (planning included).
    pub timeout: Duration,
    /// Queries running at once; more wait (within their deadline).
    pub max_concurrent: usize,
    /// Threads of the CPU runtime.
    pub cpu_threads: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            sql: Limits::default(),
            memory_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            max_concurrent: 4,
            cpu_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A researcher's request (`POST /v1/queries`).
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
pub struct QueryRequest {
    /// Project id or name.
    pub project: String,
    /// One SQL query.
    pub sql: String,
    /// Release mode; default: the first dataset policy's default mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// DP: ε to spend.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// DP: δ to spend.
    #[serde(default)]
    pub delta: Option<f64>,
    /// Check and cost the query without running or charging it.
    #[serde(default)]
    pub dry_run: bool,
}

/// Noise added to one output column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoiseInfo {
    /// Output column.
    pub column: String,
    /// OpenDP mechanism.
    pub mechanism: String,
    /// Noise scale.
    pub scale: f64,
    /// Half-width of the 95 % interval of the noise.
    pub ci95: f64,
}

/// Budget left, as (ε, δ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Remaining {
    /// ε left.
    pub epsilon: f64,
    /// δ left.
    pub delta: f64,
}

/// The privacy accounting of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Privacy {
    /// Release mode.
    pub mode: Mode,
    /// ε charged by this answer.
    pub epsilon_spent: f64,
    /// δ charged by this answer.
    pub delta_spent: f64,
    /// The project's budget left after it.
    pub budget_remaining: Remaining,
    /// Noise per output column (`dp`).
    pub noise: Vec<NoiseInfo>,
    /// `sdc`: the minimum distinct persons per released cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
    /// `sdc`: counts are rounded to a multiple of this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounding: Option<u32>,
    /// `sdc`: output rows (cells) withheld for counting fewer than k persons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_rows: Option<u64>,
    /// `extract`: the row cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_cap: Option<u64>,
    /// `extract`: whether rows beyond the cap were cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// Whether this is a stored answer to an identical earlier query (no new charge).
    pub cached: bool,
    /// Whether this was a dry run (nothing executed, nothing charged).
    pub dry_run: bool,
}

/// A released answer.
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    /// Query id.
    pub query_id: String,
    /// Schema of the released rows.
    pub schema: SchemaRef,
    /// The released rows.
    pub batches: Vec<RecordBatch>,
    /// Privacy accounting.
    pub privacy: Privacy,
    /// Dataset → approved dataset version id read.
    pub dataset_versions: BTreeMap<String, i64>,
}

impl QueryAnswer {
    /// Number of released rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Where the service reads from and how it is bounded.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The lake holding the Delta tables.
    pub lake: Lake,
    /// Access policies.
    pub policies: PolicySet,
    /// The extract master key (never the pipeline key): project keys derive from it.
    pub extract_key: Option<PseudonymKey>,
    /// Limits.
    pub limits: ServiceLimits,
}

/// A tokio runtime for CPU-bound DataFusion work, shut down without blocking when dropped.
struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl CpuRuntime {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    catalog: Catalog,
    policies: PolicySet,
    extract_key: Option<PseudonymKey>,
    limits: ServiceLimits,
    providers: session::Providers,
    cpu: CpuRuntime,
    slots: Semaphore,
}

/// The query service. Cheap to clone.
#[derive(Clone)]
pub struct QueryService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService").field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

/// What the CPU side needs, owned.
struct Prepared {
    project: niji_catalog::Project,
    mode: Mode,
    datasets: Vec<ExposedDataset>,
    sql: String,
    dry_run: bool,
}

/// What the CPU side returns.
struct Computed {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    plan_digest: String,
    suppressed: Option<u64>,
    truncated: Option<bool>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A fresh query id: 16 random bytes, hex.
fn new_query_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("q-{}", hex::encode(bytes))
}

/// Classify a DataFusion error raised while planning: its text names only what the researcher
/// wrote and the permitted schema.
fn plan_error(e: &DataFusionError) -> QueryError {
    let text = e.strip_backtrace();
    let first = text.lines().next().unwrap_or_default();
    QueryError::Plan(first.chars().take(400).collect())
}

/// Classify a DataFusion error raised while executing: never its text.
fn exec_error(e: &DataFusionError, memory_bytes: usize) -> QueryError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => QueryError::Memory(memory_bytes / (1024 * 1024)),
        // Spilling is off: asking for a temporary file means the pool was too small.
        other if other.to_string().contains("DiskManager is disabled") => {
            QueryError::Memory(memory_bytes / (1024 * 1024))
        }
        _ => QueryError::Execution,
    }
}

impl QueryService {
    /// Start the service (and its CPU runtime).
    pub fn new(catalog: Catalog, config: ServiceConfig) -> Result<QueryService> {
        let cpu = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.limits.cpu_threads.max(1))
            .thread_name("niji-query-cpu")
            .thread_stack_size(64 * 1024 * 1024)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;
        let max = config.limits.max_concurrent.max(1);
        Ok(QueryService {
            inner: Arc::new(Inner {
                catalog,
                policies: config.policies,
                extract_key: config.extract_key,
                providers: session::Providers::new(config.lake),
                limits: config.limits,
                cpu: CpuRuntime(Some(cpu)),
                slots: Semaphore::new(max),
            }),
        })
    }

    /// Load the policies of `dir` against the catalog's datasets.
    pub async fn load_policies(catalog: &Catalog, dir: &Path) -> Result<PolicySet> {
        let defs = catalog.datasets().await?;
        Ok(PolicySet::load_dir(dir, &defs)?)
    }

    /// The service's limits.
    pub fn limits(&self) -> &ServiceLimits {
        &self.inner.limits
    }

    /// The datasets a project may read in `mode`, at their approved versions.
    async fn permit(&self, caller: &Principal, req: &QueryRequest) -> Result<Prepared> {
        let catalog = &self.inner.catalog;
        let project = match catalog.find_project(&req.project).await {
            Ok(p) => p,
            Err(niji_catalog::CatalogError::UnknownProject(_)) => {
                return Err(QueryError::ProjectNotFound(req.project.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        if !project.is_member(caller.id) {
            return Err(QueryError::NotMember(project.name.clone()));
        }
        if project.is_expired(niji_catalog_now()) {
            return Err(QueryError::ProjectExpired(project.name.clone()));
        }
        let mut defs: Vec<DatasetDef> = Vec::new();
        for name in &project.datasets {
            defs.push(catalog.dataset(name).await?);
        }
        let policies: Vec<_> = defs.iter().map(|d| self.inner.policies.resolve(&project.name, d)).collect();
        let mode = match req.mode {
            Some(m) => m,
            None => policies.first().map_or(Mode::Sdc, niji_policy::Policy::default_mode),
        };
        if !project.modes.contains(&mode) {
            return Err(QueryError::ModeNotAllowed(mode));
        }
        let mut datasets = Vec::new();
        let mut any_allowing = false;
        for policy in policies {
            if !policy.allows(mode) {
                continue;
            }
            any_allowing = true;
            if let Some(v) = catalog.approved_version(&policy.dataset).await? {
                datasets.push(ExposedDataset { policy, version_id: v.id, delta_versions: v.delta_versions });
            }
        }
        if !any_allowing {
            return Err(QueryError::ModeNotAllowed(mode));
        }
        if datasets.is_empty() {
            return Err(QueryError::NoApprovedVersion);
        }
        Ok(Prepared { project, mode, datasets, sql: req.sql.clone(), dry_run: req.dry_run })
    }

    /// Answer a query for an authenticated caller.
    #[tracing::instrument(skip(self, caller, req), fields(principal = %caller.name, project = %req.project))]
    pub async fn run(&self, caller: &Principal, req: &QueryRequest) -> Result<QueryAnswer> {
        if (req.epsilon.is_some() || req.delta.is_some()) && req.mode.is_some_and(|m| m != Mode::Dp) {
            return Err(QueryError::InvalidRequest("epsilon and delta apply to mode dp only"));
        }
        let prepared = self.permit(caller, req).await?;
        if prepared.mode == Mode::Dp {
            return Err(QueryError::DpUnavailable("the differential-privacy layer is not installed in this build"));
        }
        let limits = &self.inner.limits;
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let secs = limits.timeout.as_secs();
        let _slot = tokio::time::timeout_at(deadline, self.inner.slots.acquire())
            .await
            .map_err(|_| QueryError::Busy)?
            .map_err(|_| QueryError::Busy)?;
        let handle = self.inner.cpu.handle().ok_or_else(|| QueryError::Internal("query runtime stopped".into()))?;
        let this = self.clone();
        let mode = prepared.mode;
        let project_name = prepared.project.name.clone();
        let datasets = prepared.datasets.clone();
        let dry_run = prepared.dry_run;
        let project_row = prepared.project.clone();
        let task = handle.spawn(async move { this.compute(prepared).await });
        let abort = task.abort_handle();
        let computed = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(join)) => return Err(QueryError::Internal(format!("query task failed: {join}"))),
            Err(_) => {
                abort.abort();
                tracing::warn!(timeout_s = secs, "query timed out");
                return Err(QueryError::Timeout(secs));
            }
        };
        let query_id = new_query_id();
        let dataset_versions: BTreeMap<String, i64> =
            datasets.iter().map(|d| (d.policy.dataset.clone(), d.version_id)).collect();
        let policy = &datasets[0].policy;
        let rows: usize = computed.batches.iter().map(RecordBatch::num_rows).sum();
        if !dry_run {
            self.inner
                .catalog
                .record_query(&QueryRecord {
                    query_id: query_id.clone(),
                    project_id: project_row.id,
                    principal: caller.name.clone(),
                    sql_digest: sha256_hex(req.sql.as_bytes()),
                    plan_digest: computed.plan_digest.clone(),
                    dataset_versions: dataset_versions.clone(),
                    mode,
                    cost: Budget::default(),
                    result_rows: i64::try_from(rows).unwrap_or(i64::MAX),
                    result_columns: i64::try_from(computed.schema.fields().len()).unwrap_or(i64::MAX),
                })
                .await?;
        }
        let remaining = project_row.remaining();
        tracing::info!(query_id = %query_id, mode = %mode, rows, project = %project_name, "query answered");
        Ok(QueryAnswer {
            query_id,
            schema: computed.schema,
            batches: computed.batches,
            privacy: Privacy {
                mode,
                epsilon_spent: 0.0,
                delta_spent: 0.0,
                budget_remaining: Remaining { epsilon: remaining.epsilon(), delta: remaining.delta() },
                noise: Vec::new(),
                k: (mode == Mode::Sdc).then_some(datasets.iter().map(|d| d.policy.k).max().unwrap_or(policy.k)),
                rounding: (mode == Mode::Sdc)
                    .then_some(datasets.iter().map(|d| d.policy.rounding).max().unwrap_or(policy.rounding)),
                suppressed_rows: computed.suppressed,
                row_cap: (mode == Mode::Extract)
                    .then_some(datasets.iter().map(|d| d.policy.extract_row_cap).min().unwrap_or(0)),
                truncated: computed.truncated,
                cached: false,
                dry_run,
            },
            dataset_versions,
        })
    }

    /// Plan and execute on the CPU runtime.
    async fn compute(&self, p: Prepared) -> Result<Computed> {
        let limits = &self.inner.limits;
        let statement = niji_policy::guard::check(&p.sql, &limits.sql)?;
        let project_key = match p.mode {
            Mode::Extract => {
                let master = self.inner.extract_key.as_ref().ok_or(QueryError::InvalidRequest(
                    "mode extract needs an extract key, and this service has none configured",
                ))?;
                Some(ProjectKey::derive(master, &p.project.name))
            }
            _ => None,
        };
        let ctx: SessionContext = session::build(
            &self.inner.providers,
            session::SessionSpec {
                datasets: &p.datasets,
                memory_bytes: limits.memory_bytes,
                batch_size: 8192,
                target_partitions: limits.cpu_threads,
                rekey: project_key.as_ref(),
            },
        )
        .await?;
        let state = ctx.state();
        let plan = state.statement_to_plan(statement).await.map_err(|e| plan_error(&e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| QueryError::Policy(niji_policy::PolicyError::PlanRefused("DDL, DML or a statement")))?;
        niji_policy::check_plan(&plan)?;
        let plan_digest = sha256_hex(format!("{}", plan.display_indent()).as_bytes());
        // The strictest policy of the exposed datasets applies to the whole answer.
        let k = p.datasets.iter().map(|d| d.policy.k).max().unwrap_or(niji_policy::DEFAULT_K);
        let rounding = p.datasets.iter().map(|d| d.policy.rounding).max().unwrap_or(1);
        let cap = p.datasets.iter().map(|d| d.policy.extract_row_cap).min().unwrap_or(0);
        match p.mode {
            Mode::Sdc => {
                let sdc = niji_policy::sdc_rewrite(&plan)?;
                let visible_schema = Arc::new(plan.schema().as_arrow().clone());
                if p.dry_run {
                    return Ok(Computed {
                        schema: visible_schema,
                        batches: Vec::new(),
                        plan_digest,
                        suppressed: None,
                        truncated: None,
                    });
                }
                let df = ctx.execute_logical_plan(sdc.plan).await.map_err(|e| plan_error(&e))?;
                let logical: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await.map_err(|e| exec_error(&e, limits.memory_bytes))?;
                let schema = batches.first().map_or(logical, RecordBatch::schema);
                let r = release::sdc(&schema, &batches, sdc.visible, &sdc.persons, &sdc.counts, k, rounding)?;
                Ok(Computed {
                    schema: r.batch.schema(),
                    batches: vec![r.batch],
                    plan_digest,
                    suppressed: Some(r.suppressed),
                    truncated: None,
                })
            }
            Mode::Extract => {
                let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
                if p.dry_run {
                    return Ok(Computed {
                        schema,
                        batches: Vec::new(),
                        plan_digest,
                        suppressed: None,
                        truncated: None,
                    });
                }
                let capped = LogicalPlanBuilder::from(plan)
                    .limit(0, Some(usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(1)))
                    .and_then(LogicalPlanBuilder::build)
                    .map_err(|e| plan_error(&e))?;
                let df = ctx.execute_logical_plan(capped).await.map_err(|e| plan_error(&e))?;
                let batches = df.collect().await.map_err(|e| exec_error(&e, limits.memory_bytes))?;
                let schema = batches.first().map_or(schema, RecordBatch::schema);
                let (batch, truncated) = release::cap_rows(&schema, &batches, cap)?;
                Ok(Computed { schema, batches: vec![batch], plan_digest, suppressed: None, truncated: Some(truncated) })
            }
            Mode::Dp => Err(QueryError::DpUnavailable("the differential-privacy layer is not installed in this build")),
        }
    }
}

fn niji_catalog_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
