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
    /// DP: groups one person may contribute to (L); default in docs/DP.md.
    #[serde(default)]
    pub max_groups_per_person: Option<u32>,
    /// DP: rows one person contributes per group (C); default in docs/DP.md.
    #[serde(default)]
    pub max_rows_per_person: Option<u32>,
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
    /// What the noise is on (`count`, `sum`, `avg_sum`, `avg_count`, `median`, `partition_selection`).
    pub statistic: String,
    /// Partition selection: the threshold a group's noisy person count had to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
}

/// An (ε, δ) amount.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
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
    /// `dp`: what this query costs (charged unless cached or a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// `dp`: contribution bounds in effect (groups per person, rows per person and group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_groups_per_person: Option<u32>,
    /// `dp`: rows one person contributes per group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows_per_person: Option<u32>,
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
#[derive(Clone)]
struct Prepared {
    project: niji_catalog::Project,
    mode: Mode,
    datasets: Vec<ExposedDataset>,
    defs: Vec<DatasetDef>,
    req: QueryRequest,
}

/// The strictest policy of the exposed datasets applies to the whole answer.
impl Prepared {
    fn k(&self) -> u32 {
        self.datasets.iter().map(|d| d.policy.k).max().unwrap_or(niji_policy::DEFAULT_K)
    }

    fn rounding(&self) -> u32 {
        self.datasets.iter().map(|d| d.policy.rounding).max().unwrap_or(1)
    }

    fn row_cap(&self) -> u64 {
        self.datasets.iter().map(|d| d.policy.extract_row_cap).min().unwrap_or(0)
    }
}

/// What the CPU side returns for sdc and extract.
struct Computed {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    plan_digest: String,
    suppressed: Option<u64>,
    truncated: Option<bool>,
}

/// A planned query in its session.
struct Planned {
    ctx: SessionContext,
    plan: datafusion::logical_expr::LogicalPlan,
    plan_digest: String,
}

/// What a `dp` answer carries in the result cache besides its rows.
#[derive(Serialize, serde::Deserialize)]
struct CachedEnvelope {
    query_id: String,
    noise: Vec<CachedNoise>,
    max_groups_per_person: u32,
    max_rows_per_person: u32,
}

#[derive(Serialize, serde::Deserialize)]
struct CachedNoise {
    column: String,
    mechanism: String,
    scale: f64,
    ci95: f64,
    statistic: String,
    threshold: Option<i64>,
}

impl From<&NoiseInfo> for CachedNoise {
    fn from(n: &NoiseInfo) -> Self {
        CachedNoise {
            column: n.column.clone(),
            mechanism: n.mechanism.clone(),
            scale: n.scale,
            ci95: n.ci95,
            statistic: n.statistic.clone(),
            threshold: n.threshold,
        }
    }
}

impl From<CachedNoise> for NoiseInfo {
    fn from(n: CachedNoise) -> Self {
        NoiseInfo {
            column: n.column,
            mechanism: n.mechanism,
            scale: n.scale,
            ci95: n.ci95,
            statistic: n.statistic,
            threshold: n.threshold,
        }
    }
}

fn noise_info(columns: &[niji_dp::DpColumn]) -> Vec<NoiseInfo> {
    columns
        .iter()
        .map(|c| NoiseInfo {
            column: c.column.clone(),
            mechanism: c.noise.mechanism.to_owned(),
            scale: c.noise.scale,
            ci95: c.noise.ci95,
            statistic: c.statistic.to_owned(),
            threshold: c.noise.threshold,
        })
        .collect()
}

/// Cache bytes: a length-prefixed JSON envelope, then the rows as an Arrow IPC stream.
fn encode_cached(env: &CachedEnvelope, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let head = serde_json::to_vec(env).map_err(|e| QueryError::Internal(e.to_string()))?;
    let len = u32::try_from(head.len()).map_err(|e| QueryError::Internal(e.to_string()))?;
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&encode::arrow_ipc(schema, batches)?);
    Ok(out)
}

fn decode_cached(bytes: &[u8]) -> Result<(CachedEnvelope, SchemaRef, Vec<RecordBatch>)> {
    let bad = |what: &str| QueryError::Internal(format!("a cached answer is corrupt: {what}"));
    let len = bytes.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).ok_or_else(|| bad("length"))?;
    let len = u32::from_le_bytes(len) as usize;
    let head = bytes.get(4..4 + len).ok_or_else(|| bad("header"))?;
    let env: CachedEnvelope = serde_json::from_slice(head).map_err(|_| bad("header json"))?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&bytes[4 + len..]), None)
        .map_err(|_| bad("arrow stream"))?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|_| bad("arrow batch"))?;
    Ok((env, schema, batches))
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

fn dp_error(e: niji_dp::DpError) -> QueryError {
    QueryError::Dp(e)
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
        Ok(Prepared { project, mode, datasets, defs, req: req.clone() })
    }

    /// Answer a query for an authenticated caller.
    #[tracing::instrument(skip(self, caller, req), fields(principal = %caller.name, project = %req.project))]
    pub async fn run(&self, caller: &Principal, req: &QueryRequest) -> Result<QueryAnswer> {
        if (req.epsilon.is_some() || req.delta.is_some()) && req.mode.is_some_and(|m| m != Mode::Dp) {
            return Err(QueryError::InvalidRequest("epsilon and delta apply to mode dp only"));
        }
        let prepared = self.permit(caller, req).await?;
        let limits = &self.inner.limits;
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.inner.slots.acquire())
            .await
            .map_err(|_| QueryError::Busy)?
            .map_err(|_| QueryError::Busy)?;
        match prepared.mode {
            Mode::Dp => self.run_dp(caller, prepared, deadline).await,
            _ => self.run_plain(caller, prepared, deadline).await,
        }
    }

    /// Run `fut` on the CPU runtime within the deadline; abort it when the deadline passes.
    async fn on_cpu<T: Send + 'static>(
        &self,
        deadline: tokio::time::Instant,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let handle = self.inner.cpu.handle().ok_or_else(|| QueryError::Internal("query runtime stopped".into()))?;
        let task = handle.spawn(fut);
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(QueryError::Internal(format!("query task failed: {join}"))),
            Err(_) => {
                abort.abort();
                let secs = self.inner.limits.timeout.as_secs();
                tracing::warn!(timeout_s = secs, "query timed out");
                Err(QueryError::Timeout(secs))
            }
        }
    }

    fn versions(p: &Prepared) -> BTreeMap<String, i64> {
        p.datasets.iter().map(|d| (d.policy.dataset.clone(), d.version_id)).collect()
    }

    async fn record(
        &self,
        caller: &Principal,
        p: &Prepared,
        query_id: &str,
        plan_digest: &str,
        cost: Budget,
        (rows, columns): (usize, usize),
    ) -> Result<()> {
        self.inner
            .catalog
            .record_query(&QueryRecord {
                query_id: query_id.to_owned(),
                project_id: p.project.id,
                principal: caller.name.clone(),
                sql_digest: sha256_hex(p.req.sql.as_bytes()),
                plan_digest: plan_digest.to_owned(),
                dataset_versions: Self::versions(p),
                mode: p.mode,
                cost,
                result_rows: i64::try_from(rows).unwrap_or(i64::MAX),
                result_columns: i64::try_from(columns).unwrap_or(i64::MAX),
            })
            .await?;
        Ok(())
    }

    fn privacy(p: &Prepared, remaining: Budget) -> Privacy {
        let mode = p.mode;
        Privacy {
            mode,
            epsilon_spent: 0.0,
            delta_spent: 0.0,
            budget_remaining: Remaining { epsilon: remaining.epsilon(), delta: remaining.delta() },
            noise: Vec::new(),
            cost: None,
            max_groups_per_person: None,
            max_rows_per_person: None,
            k: (mode == Mode::Sdc).then(|| p.k()),
            rounding: (mode == Mode::Sdc).then(|| p.rounding()),
            suppressed_rows: None,
            row_cap: (mode == Mode::Extract).then(|| p.row_cap()),
            truncated: None,
            cached: false,
            dry_run: p.req.dry_run,
        }
    }

    /// `sdc` and `extract`.
    async fn run_plain(&self, caller: &Principal, p: Prepared, deadline: tokio::time::Instant) -> Result<QueryAnswer> {
        let this = self.clone();
        let cpu_p = p.clone();
        let computed = self.on_cpu(deadline, async move { this.compute(cpu_p).await }).await?;
        let query_id = new_query_id();
        let rows: usize = computed.batches.iter().map(RecordBatch::num_rows).sum();
        if !p.req.dry_run {
            self.record(
                caller,
                &p,
                &query_id,
                &computed.plan_digest,
                Budget::default(),
                (rows, computed.schema.fields().len()),
            )
            .await?;
        }
        tracing::info!(query_id = %query_id, mode = %p.mode, rows, "query answered");
        let mut privacy = Self::privacy(&p, p.project.remaining());
        privacy.suppressed_rows = computed.suppressed;
        privacy.truncated = computed.truncated;
        Ok(QueryAnswer {
            query_id,
            schema: computed.schema,
            batches: computed.batches,
            privacy,
            dataset_versions: Self::versions(&p),
        })
    }

    /// `dp`: analyse, then a cached answer, or execute, charge atomically, cache and release.
    async fn run_dp(&self, caller: &Principal, p: Prepared, deadline: tokio::time::Instant) -> Result<QueryAnswer> {
        let epsilon = p
            .req
            .epsilon
            .ok_or(QueryError::InvalidRequest("mode dp needs epsilon (and delta > 0 for private GROUP BY keys)"))?;
        let params = niji_dp::DpParams {
            request: niji_dp::Request { epsilon, delta: p.req.delta.unwrap_or(0.0) },
            max_groups_per_person: p.req.max_groups_per_person,
            max_rows_per_person: p.req.max_rows_per_person,
        };
        let this = self.clone();
        let cpu_p = p.clone();
        let (planned, dp) = self
            .on_cpu(deadline, async move {
                let planned = this.plan(&cpu_p).await?;
                let default = cpu_p.datasets.first().map(|d| d.policy.dataset.clone()).unwrap_or_default();
                let resolve = move |t: &datafusion::common::TableReference| -> Option<(String, String)> {
                    use datafusion::common::TableReference as T;
                    match t {
                        T::Bare { table } => Some((default.clone(), table.to_string())),
                        T::Partial { schema, table } => Some((schema.to_string(), table.to_string())),
                        T::Full { catalog, schema, table } if catalog.as_ref() == session::CATALOG => {
                            Some((schema.to_string(), table.to_string()))
                        }
                        T::Full { .. } => None,
                    }
                };
                let dp = niji_dp::DpPlan::analyse(&planned.plan, &resolve, &cpu_p.defs, &params).map_err(dp_error)?;
                Ok((planned, dp))
            })
            .await?;
        let (eps, delta) = dp.cost();
        let cost = Budget::from_f64(eps, delta)?;
        let (groups, rows_per) = dp.bounds_in_effect();
        let mut privacy = Self::privacy(&p, p.project.remaining());
        privacy.cost = Some(Cost { epsilon: eps, delta });
        privacy.max_groups_per_person = Some(groups);
        privacy.max_rows_per_person = Some(rows_per);
        let versions = Self::versions(&p);
        if p.req.dry_run {
            privacy.noise = noise_info(&dp.expected_noise().map_err(dp_error)?);
            let schema: SchemaRef = Arc::new(planned.plan.schema().as_arrow().clone());
            return Ok(QueryAnswer {
                query_id: new_query_id(),
                schema,
                batches: Vec::new(),
                privacy,
                dataset_versions: versions,
            });
        }
        // T9: the same question (plan, versions, parameters) gets the same answer and no new charge.
        let key = sha256_hex(
            format!(
                "dp/v1\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}",
                p.project.id,
                serde_json::to_string(&versions).unwrap_or_default(),
                cost.epsilon_micro,
                cost.delta_pico,
                dp.normalized_key()
            )
            .as_bytes(),
        );
        if let Some(hit) = self.inner.catalog.cache_get(&key).await?
            && hit.project_id == p.project.id
        {
            let (env, schema, batches) = decode_cached(&hit.result)?;
            privacy.cached = true;
            privacy.noise = env.noise.into_iter().map(NoiseInfo::from).collect();
            tracing::info!(query_id = %env.query_id, "dp answer from cache");
            return Ok(QueryAnswer { query_id: env.query_id, schema, batches, privacy, dataset_versions: versions });
        }
        let query_id = new_query_id();
        // Charge first, atomically, and keep the charge whatever happens next: a failure that
        // depends on the data (a cast in WHERE, the memory limit) must not be free, or its
        // refusal would be an unpaid one-bit answer.
        let charge = match self.inner.catalog.charge(p.project.id, &caller.name, Some(&query_id), cost).await {
            Ok(c) => c,
            Err(niji_catalog::CatalogError::BudgetExceeded { .. }) => return Err(QueryError::BudgetExhausted),
            Err(niji_catalog::CatalogError::ProjectExpired { .. }) => {
                return Err(QueryError::ProjectExpired(p.project.name.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let ctx = planned.ctx.clone();
        let answer = self.on_cpu(deadline, async move { dp.execute(&ctx).await.map_err(dp_error) }).await?;
        privacy.epsilon_spent = eps;
        privacy.delta_spent = delta;
        privacy.budget_remaining = Remaining { epsilon: charge.remaining.epsilon(), delta: charge.remaining.delta() };
        privacy.noise = noise_info(&answer.columns);
        let env = CachedEnvelope {
            query_id: query_id.clone(),
            noise: privacy.noise.iter().map(CachedNoise::from).collect(),
            max_groups_per_person: groups,
            max_rows_per_person: rows_per,
        };
        self.inner
            .catalog
            .cache_put(&key, p.project.id, &query_id, &encode_cached(&env, &answer.schema, &answer.batches)?)
            .await?;
        let rows: usize = answer.batches.iter().map(RecordBatch::num_rows).sum();
        self.record(caller, &p, &query_id, &planned.plan_digest, cost, (rows, answer.schema.fields().len())).await?;
        tracing::info!(query_id = %query_id, rows, epsilon = eps, "dp query answered");
        Ok(QueryAnswer {
            query_id,
            schema: answer.schema,
            batches: answer.batches,
            privacy,
            dataset_versions: versions,
        })
    }

    /// Guard, session and plan (on the CPU runtime).
    async fn plan(&self, p: &Prepared) -> Result<Planned> {
        let limits = &self.inner.limits;
        let statement = niji_policy::guard::check(&p.req.sql, &limits.sql)?;
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
        let plan = ctx.state().statement_to_plan(statement).await.map_err(|e| plan_error(&e))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| QueryError::Policy(niji_policy::PolicyError::PlanRefused("DDL, DML or a statement")))?;
        niji_policy::check_plan(&plan)?;
        let plan_digest = sha256_hex(format!("{}", plan.display_indent()).as_bytes());
        Ok(Planned { ctx, plan, plan_digest })
    }

    /// Plan and execute `sdc` and `extract` on the CPU runtime.
    async fn compute(&self, p: Prepared) -> Result<Computed> {
        let limits = &self.inner.limits;
        let Planned { ctx, plan, plan_digest } = self.plan(&p).await?;
        let (k, rounding, cap) = (p.k(), p.rounding(), p.row_cap());
        let dry_run = p.req.dry_run;
        match p.mode {
            Mode::Sdc => {
                let sdc = niji_policy::sdc_rewrite(&plan)?;
                let visible_schema = Arc::new(plan.schema().as_arrow().clone());
                if dry_run {
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
                if dry_run {
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
            Mode::Dp => Err(QueryError::Internal("dp queries do not run through compute".into())),
        }
    }
}

fn niji_catalog_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
