//! One pipeline run, end to end (see the crate docs for the steps and why they are safe).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, SessionContext, cast, col, lit};
use niji_catalog::Catalog;
use niji_catalog::pipeline::{LoadedFile, RunCompletion};
use niji_ingest::consent::{ConsentDecision, ConsentGate, ConsentPolicy, ConsentRegistry};
use niji_ingest::report::{IngestReport, InputReport};
use niji_pseudo::PseudonymKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lake::Lake;
pub use crate::source::sha256_file;
use crate::source::{SourceStore, rename_quarantine};
use crate::spec::{PipelineSpec, RuleAction, SourceFormat, SourceSpec};
use crate::{PipelineError, Result, crash_point};

/// Receives progress of a run (the CLI draws a progress bar with it).
pub trait Progress: Send + Sync {
    /// A new stage starts; `total` is its number of steps.
    fn stage(&self, name: &str, total: u64);
    /// One step of the current stage is done.
    fn step(&self, what: &str);
}

/// How a run is carried out.
#[derive(Clone)]
pub struct RunOptions {
    /// Data directory: lake (default), staging (`runs/`), relative source paths.
    pub data_dir: PathBuf,
    /// Who runs: written into the lease and the run row (`host:pid:nonce`).
    pub holder: String,
    /// Actor recorded in the catalog's audit trail.
    pub actor: String,
    /// Lease time-to-live; the lease is renewed every third of it.
    pub lease_ttl: Duration,
    /// How long to wait for a busy lease before failing with [`PipelineError::Busy`].
    pub lease_wait: Duration,
    /// Progress sink.
    pub progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions").field("data_dir", &self.data_dir).field("holder", &self.holder).finish()
    }
}

impl RunOptions {
    /// Defaults for a data directory: 30 s lease, no waiting, holder `host:pid:nonce`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            holder: default_holder(),
            actor: "pipeline".into(),
            lease_ttl: Duration::from_secs(30),
            lease_wait: Duration::ZERO,
            progress: None,
        }
    }
}

/// `host:pid:nonce`, unique per process and call.
pub fn default_holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let nonce: u32 = rand_nonce();
    format!("{host}:{}:{nonce:08x}", std::process::id())
}

fn rand_nonce() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    t ^ std::process::id().rotate_left(16)
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// Run sequence number.
    pub seq: i64,
    /// True when this attempt resumed an unfinished run.
    pub resumed: bool,
    /// The dataset version registered (None: nothing to do).
    pub version_id: Option<i64>,
    /// The run report (as registered with the version).
    pub report: Value,
}

/// One planned input file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedFile {
    source: String,
    path: String,
    /// None when the file could not be read to hash it.
    sha256: Option<String>,
    bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    as_of: NaiveDate,
    files: Vec<PlannedFile>,
    skipped_already_loaded: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io { path: path.to_owned(), source }
}

fn query_err(what: impl Into<String>) -> impl FnOnce(datafusion::error::DataFusionError) -> PipelineError {
    let what = what.into();
    move |source| PipelineError::Query { what, source }
}

async fn plan(spec: &PipelineSpec, catalog: &Catalog, data_dir: &Path) -> Result<Manifest> {
    let loaded: BTreeSet<String> = catalog.loaded_files(&spec.name).await?.into_iter().map(|f| f.sha256).collect();
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    let mut skipped = 0;
    for src in &spec.sources {
        let store = SourceStore::open(src, data_dir)?;
        for file in store.list(src).await? {
            match store.sha256(&file).await {
                Ok((sha, bytes)) => {
                    if loaded.contains(&sha) || !seen.insert(sha.clone()) {
                        skipped += 1;
                        continue;
                    }
                    files.push(PlannedFile {
                        source: src.name.clone(),
                        path: file,
                        sha256: Some(sha),
                        bytes,
                        error: None,
                    });
                }
                Err(e) => {
                    tracing::warn!(file = %file, error = %e, "source file cannot be read");
                    files.push(PlannedFile {
                        source: src.name.clone(),
                        path: file,
                        sha256: None,
                        bytes: 0,
                        error: Some(format!("cannot read: {e}")),
                    });
                }
            }
        }
    }
    Ok(Manifest { as_of: chrono::Utc::now().date_naive(), files, skipped_already_loaded: skipped })
}

/// Run a pipeline once: take the lease, resume or plan, stage, validate, write, register.
#[tracing::instrument(skip_all, fields(pipeline = %spec.name))]
pub async fn run_pipeline(
    spec: &PipelineSpec,
    catalog: &Catalog,
    key: &PseudonymKey,
    opts: &RunOptions,
) -> Result<RunOutcome> {
    if let Some(expected) = &spec.pseudonymization.key_id
        && expected != key.key_id()
    {
        return Err(PipelineError::WrongKey { expected: expected.clone(), actual: key.key_id().to_owned() });
    }
    catalog.dataset(&spec.dataset).await?;
    let ttl_ms = i64::try_from(opts.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let waited = Instant::now();
    while !catalog.acquire_lease(&spec.name, &opts.holder, ttl_ms).await? {
        if waited.elapsed() >= opts.lease_wait {
            let holder = catalog.lease_holder(&spec.name).await?.unwrap_or_else(|| "unknown".into());
            return Err(PipelineError::Busy { pipeline: spec.name.clone(), holder });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(holder = %opts.holder, "lease taken");
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (catalog, name, holder, lost) = (catalog.clone(), spec.name.clone(), opts.holder.clone(), lost.clone());
        let every = opts.lease_ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match catalog.renew_lease(&name, &holder, ttl_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::error!("lease lost");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                }
            }
        })
    };
    let mut seq_slot = None;
    let out = run_leased(spec, catalog, key, opts, &lost, &mut seq_slot).await;
    heartbeat.abort();
    if let (Err(e), Some(seq)) = (&out, seq_slot)
        && let Err(e2) = catalog.fail_run(&spec.name, seq, &e.to_string()).await
    {
        tracing::warn!(error = %e2, "cannot record the failed run");
    }
    if !lost.load(Ordering::SeqCst) {
        catalog.release_lease(&spec.name, &opts.holder).await?;
    }
    out
}

struct Timer(BTreeMap<String, f64>, Instant);
impl Timer {
    fn lap(&mut self, stage: &str) {
        *self.0.entry(stage.to_owned()).or_default() += self.1.elapsed().as_secs_f64();
        self.1 = Instant::now();
    }
}

fn check_lease(lost: &AtomicBool, name: &str) -> Result<()> {
    if lost.load(Ordering::SeqCst) { Err(PipelineError::LeaseLost(name.to_owned())) } else { Ok(()) }
}

fn load_consent(
    spec: &PipelineSpec,
    key: &PseudonymKey,
    data_dir: &Path,
    as_of: NaiveDate,
) -> Result<Option<ConsentGate>> {
    let Some(c) = &spec.consent else { return Ok(None) };
    let p = PathBuf::from(&c.registry);
    let path = if p.is_absolute() { p } else { data_dir.join(p) };
    let policy: ConsentPolicy = c.policy.parse().unwrap_or_default();
    let registry = ConsentRegistry::load(&path, key).map_err(PipelineError::Consent)?.with_policy(policy);
    Ok(Some(ConsentGate { registry, purpose: c.purpose.clone(), as_of }))
}

async fn run_leased(
    spec: &PipelineSpec,
    catalog: &Catalog,
    key: &PseudonymKey,
    opts: &RunOptions,
    lost: &AtomicBool,
    seq_slot: &mut Option<i64>,
) -> Result<RunOutcome> {
    let progress = opts.progress.clone();
    let stage = |name: &str, total: u64| {
        if let Some(p) = &progress {
            p.stage(name, total);
        }
    };
    let step = |what: &str| {
        if let Some(p) = &progress {
            p.step(what);
        }
    };
    let mut timer = Timer(BTreeMap::new(), Instant::now());
    stage("plan", 1);
    let (seq, manifest, resumed) = match catalog.open_run(&spec.name).await? {
        Some(run) => {
            let m: Manifest = serde_json::from_value(run.manifest)
                .map_err(|source| PipelineError::Json { what: "run manifest", source })?;
            catalog.resume_run(&spec.name, run.seq, &opts.holder).await?;
            tracing::info!(seq = run.seq, attempts = run.attempts + 1, "resuming unfinished run");
            (run.seq, m, true)
        }
        None => {
            let m = plan(spec, catalog, &opts.data_dir).await?;
            let mv = serde_json::to_value(&m).map_err(|source| PipelineError::Json { what: "run manifest", source })?;
            let seq = catalog.start_run(&spec.name, &opts.holder, &mv).await?;
            tracing::info!(seq, files = m.files.len(), skipped = m.skipped_already_loaded, "run planned");
            (seq, m, false)
        }
    };
    *seq_slot = Some(seq);
    timer.lap("plan");
    crash_point("planned");

    let gate = load_consent(spec, key, &opts.data_dir, manifest.as_of)?;
    let stage_dir = opts.data_dir.join("runs").join(&spec.name).join(seq.to_string());
    if stage_dir.exists() {
        std::fs::remove_dir_all(&stage_dir).map_err(io_err(&stage_dir))?;
    }
    std::fs::create_dir_all(&stage_dir).map_err(io_err(&stage_dir))?;

    // 1. Stage: readers → Parquet per source.
    stage("stage", spec.sources.len() as u64);
    let mut reports: Vec<(String, IngestReport)> = Vec::new();
    let mut sha_of: HashMap<String, (Option<String>, u64)> = HashMap::new();
    for f in &manifest.files {
        sha_of.insert(f.path.clone(), (f.sha256.clone(), f.bytes));
    }
    for src in &spec.sources {
        let files: Vec<&PlannedFile> = manifest.files.iter().filter(|f| f.source == src.name).collect();
        let out = stage_dir.join(&src.name);
        std::fs::create_dir_all(&out).map_err(io_err(&out))?;
        let download = out.join("_download");
        let fetched = fetch_inputs(src, &files, &download, &opts.data_dir).await?;
        let report = stage_source(src, fetched, &out, key, gate.as_ref(), &opts.data_dir);
        if download.exists() {
            std::fs::remove_dir_all(&download).map_err(io_err(&download))?;
        }
        let report = report?;
        report.check_balanced().map_err(|error| PipelineError::Unbalanced { source_name: src.name.clone(), error })?;
        reports.push((src.name.clone(), report));
        step(&src.name);
    }
    timer.lap("stage");
    crash_point("staged");

    // 2. Consent decisions over every person seen (staged or already in the lake). The readers
    //    already left out, and counted per record, every record the gate excludes; deciding
    //    again on the staged persons by `person_id` is a safety net that drops nothing unless
    //    the registry's answer for the person_id alone differs from the reader's answer over
    //    all linkage keys (then the rows are dropped, counted as rows, and logged).
    let dataset = catalog.dataset(&spec.dataset).await?;
    let lake = Lake::new(
        spec.target.url.as_deref(),
        &opts.data_dir,
        spec.target.storage_options.clone().into_iter().collect(),
    )?;
    let ctx = SessionContext::new();
    let mut staged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut not_in_dataset: BTreeMap<String, u64> = BTreeMap::new();
    for (src, report) in &reports {
        for (table, rows) in &report.rows_per_table {
            if *rows == 0 {
                continue;
            }
            if !dataset.has_table(table) {
                *not_in_dataset.entry(table.clone()).or_default() += rows;
                continue;
            }
            staged.entry(table.clone()).or_default().push(format!("{}/", stage_dir.join(src).join(table).display()));
        }
    }
    let mut existing: BTreeMap<String, deltalake_core::DeltaTable> = BTreeMap::new();
    for table in &dataset.tables {
        let t = lake.open(&spec.dataset, table).await?;
        if t.version().is_some() {
            lake.register(&ctx, &format!("lake_{table}"), &t).await?;
            existing.insert(table.clone(), t);
        }
    }
    let mut excluded: BTreeSet<String> = BTreeSet::new();
    // persons to delete per table: (person ids, rows)
    let mut withdraw: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    if let Some(g) = &gate {
        for (table, paths) in &staged {
            let df = read_staged(&ctx, table, paths).await?;
            for p in distinct_persons(df, table).await? {
                if matches!(g.registry.decision(&p.0, &g.purpose, g.as_of), ConsentDecision::Exclude(_)) {
                    excluded.insert(p.0);
                }
            }
        }
        for table in existing.keys() {
            let df =
                ctx.table(format!("lake_{table}")).await.map_err(query_err(format!("reading lake table `{table}`")))?;
            let mut ids = Vec::new();
            let mut rows = 0;
            for (p, n) in distinct_persons(df, table).await? {
                if matches!(g.registry.decision(&p, &g.purpose, g.as_of), ConsentDecision::Exclude(_)) {
                    ids.push(p);
                    rows += n;
                }
            }
            if !ids.is_empty() {
                withdraw.insert(table.clone(), (ids, rows));
            }
        }
    }
    let withdrawn_persons: BTreeSet<&String> = withdraw.values().flat_map(|(ids, _)| ids).collect();
    let withdrawn_persons = withdrawn_persons.len();
    timer.lap("consent");

    // 3. Generalize, filter consent, sort by person_id; quality rules.
    stage("transform", staged.len() as u64);
    let mut batches: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    let mut staged_excluded_rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut schemas: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut quality = Vec::new();
    let mut failed_rules = Vec::new();
    let qctx = SessionContext::new();
    for (table, paths) in &staged {
        let mut df = read_staged(&ctx, table, paths).await?;
        let before = count(df.clone(), table).await?;
        if !excluded.is_empty() {
            let list: Vec<Expr> = excluded.iter().map(|p| lit(p.as_str())).collect();
            df = df
                .filter(col("person_id").in_list(list, true))
                .map_err(query_err(format!("consent filter `{table}`")))?;
        }
        df = generalize(df, spec, table)?;
        df = df
            .sort(vec![col("person_id").sort(true, false)])
            .map_err(query_err(format!("sorting `{table}` by person_id")))?;
        let out = df.collect().await.map_err(query_err(format!("transforming `{table}`")))?;
        let after: u64 = out.iter().map(|b| b.num_rows() as u64).sum();
        if before > after {
            tracing::warn!(table = %table, rows = before - after, "consent: staged rows dropped by person_id");
        }
        staged_excluded_rows.insert(table.clone(), before - after);
        if let Some(b) = out.first() {
            schemas.insert(
                table.clone(),
                b.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect(),
            );
        }
        let rules: Vec<_> = spec.quality.iter().filter(|r| &r.table == table).collect();
        if !rules.is_empty() && !out.is_empty() {
            let mem = datafusion::datasource::MemTable::try_new(out[0].schema(), vec![out.clone()])
                .map_err(query_err(format!("quality rules on `{table}`")))?;
            let _ = qctx.deregister_table(table.as_str());
            qctx.register_table(table.as_str(), Arc::new(mem))
                .map_err(query_err(format!("quality rules on `{table}`")))?;
            for r in rules {
                let sql = format!("SELECT count(*) FROM {table} WHERE NOT ({})", r.check);
                let failing = scalar_count(&qctx, &sql, &format!("quality rule `{}`", r.name)).await?;
                let share = if after == 0 { 0.0 } else { failing as f64 / after as f64 };
                let passed = share <= r.max_share;
                if !passed && r.action == RuleAction::Fail {
                    failed_rules.push(format!("`{}` ({failing} of {after} rows of {table})", r.name));
                }
                let action = if r.action == RuleAction::Fail { "fail" } else { "warn" };
                quality.push(json!({
                    "rule": r.name, "table": table, "rows": after, "failing": failing, "share": share,
                    "max_share": r.max_share, "action": action, "passed": passed,
                }));
            }
        }
        batches.insert(table.clone(), out);
        step(table);
    }
    timer.lap("transform");
    if !failed_rules.is_empty() {
        return Err(PipelineError::QualityFailed(failed_rules.join(", ")));
    }

    // 4. Commit per table: consent delete, then append; each idempotent by (app id, seq).
    check_lease(lost, &spec.name)?;
    let app = format!("niji:{}", spec.name);
    let app_consent = format!("niji:{}:consent", spec.name);
    let mut delta_versions: BTreeMap<String, i64> = BTreeMap::new();
    let mut deleted_rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut appended_rows: BTreeMap<String, u64> = BTreeMap::new();
    stage("write", dataset.tables.len() as u64);
    for table in &dataset.tables {
        let mut t = lake.open(&spec.dataset, table).await?;
        if let Some(n) = lake.committed(&t, table, &app_consent, seq).await? {
            deleted_rows.insert(table.clone(), n);
        } else if let Some((ids, rows)) = withdraw.get(table) {
            crash_point(&format!("before_delete:{table}"));
            let (_, n) = lake.delete_persons(t, table, ids, &app_consent, seq, *rows).await?;
            deleted_rows.insert(table.clone(), n);
            crash_point(&format!("after_delete:{table}"));
            t = lake.open(&spec.dataset, table).await?;
        }
        let rows: u64 = batches.get(table).map_or(0, |b| b.iter().map(|b| b.num_rows() as u64).sum());
        if let Some(n) = lake.committed(&t, table, &app, seq).await? {
            appended_rows.insert(table.clone(), n);
        } else if rows > 0 {
            crash_point(&format!("before_append:{table}"));
            let b = batches.remove(table).unwrap_or_default();
            lake.append(t, table, b, &app, seq).await?;
            appended_rows.insert(table.clone(), rows);
            crash_point(&format!("after_append:{table}"));
            t = lake.open(&spec.dataset, table).await?;
        }
        if t.version().is_some() {
            delta_versions.insert(table.clone(), crate::lake::version_of(&t));
        }
        step(table);
    }
    timer.lap("write");

    // 5. Re-identification report of the person table, at the version being registered.
    let reid = if delta_versions.contains_key("person") {
        let rctx = SessionContext::new();
        let t = lake.open_version(&spec.dataset, "person", delta_versions["person"]).await?;
        lake.register(&rctx, "person", &t).await?;
        let qi: Vec<&str> = spec.reidentification.quasi_identifiers.iter().map(String::as_str).collect();
        let r = niji_pseudo::reid::reid_report_by_person(&rctx, "person", &qi, spec.reidentification.k, "person_id")
            .await
            .map_err(PipelineError::Reid)?;
        serde_json::to_value(r).map_err(|source| PipelineError::Json { what: "reid report", source })?
    } else {
        Value::Null
    };
    timer.lap("reid");

    // 6. The run report, and the schema diff against the last registered version.
    let previous = catalog.versions(None, Some(&spec.dataset)).await?;
    let prev_schemas = previous.first().and_then(|v| v.run_report.get("schemas").cloned()).unwrap_or(Value::Null);
    let mut all_schemas = prev_schemas.as_object().cloned().unwrap_or_default();
    for (t, cols) in &schemas {
        all_schemas.insert(t.clone(), json!(cols));
    }
    let schema_diff = diff_schemas(&prev_schemas, &Value::Object(all_schemas.clone()));
    let mut inputs = Vec::new();
    let (mut records, mut loaded, mut quarantined, mut cexcluded, mut failed_files) = (0, 0, 0, 0, 0);
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut files: Vec<LoadedFile> = Vec::new();
    for (src, r) in &reports {
        records += r.records;
        loaded += r.loaded;
        quarantined += r.quarantined;
        cexcluded += r.consent_excluded;
        for (k, v) in &r.quarantined_by_reason {
            *by_reason.entry(k.clone()).or_default() += v;
        }
        for i in &r.inputs {
            let (sha, bytes) = sha_of.get(&i.file).cloned().unwrap_or((None, 0));
            if i.error.is_some() {
                failed_files += 1;
            } else if let Some(sha) = &sha {
                files.push(LoadedFile {
                    sha256: sha.clone(),
                    path: i.file.clone(),
                    bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                    run_seq: seq,
                });
            }
            inputs.push(json!({
                "source": src, "file": i.file, "sha256": sha, "records": i.records, "loaded": i.loaded,
                "quarantined": i.quarantined, "consent_excluded": i.consent_excluded, "error": i.error,
            }));
        }
    }
    if records != loaded + quarantined + cexcluded {
        return Err(PipelineError::Unbalanced {
            source_name: "(all)".into(),
            error: niji_ingest::IngestError::Unbalanced { records, loaded, quarantined, excluded: cexcluded },
        });
    }
    let counts = json!({
        "files_planned": manifest.files.len(),
        "files_loaded": files.len(),
        "files_failed": failed_files,
        "files_skipped_already_loaded": manifest.skipped_already_loaded,
        "records": records, "loaded": loaded, "quarantined": quarantined, "consent_excluded": cexcluded,
        "rows_appended": appended_rows.values().sum::<u64>(),
        "rows_deleted_consent": deleted_rows.values().sum::<u64>(),
    });
    let report = json!({
        "pipeline": spec.name,
        "dataset": spec.dataset,
        "run_seq": seq,
        "resumed": resumed,
        "as_of": manifest.as_of.to_string(),
        "key_id": key.key_id(),
        "pseudonymization_profile": spec.pseudonymization.profile,
        "counts": counts,
        "inputs": inputs,
        "quarantined_by_reason": by_reason,
        "rows_per_table": appended_rows,
        "consent": {
            "excluded_rows_at_staging": staged_excluded_rows,
            "withdrawn_persons_deleted": withdrawn_persons,
            "deleted_rows": deleted_rows,
        },
        "tables_not_in_dataset": not_in_dataset,
        "quality": quality,
        "reidentification": reid,
        "schemas": all_schemas,
        "schema_diff": schema_diff,
        "delta_versions": delta_versions,
        "timings_s": timer.0,
    });
    let nothing = files.is_empty() && appended_rows.values().all(|n| *n == 0) && deleted_rows.values().all(|n| *n == 0);
    check_lease(lost, &spec.name)?;
    crash_point("before_register");
    let version_id = if nothing {
        catalog.noop_run(&spec.name, seq, &counts).await?;
        None
    } else {
        let id = catalog
            .complete_run(
                &opts.actor,
                &RunCompletion {
                    pipeline: &spec.name,
                    seq,
                    dataset: &spec.dataset,
                    delta_versions: &delta_versions,
                    run_report: &report,
                    summary: &counts,
                    files: &files,
                },
            )
            .await?;
        Some(id)
    };
    crash_point("after_register");
    // Staged table Parquet is no longer needed; reports and quarantine files stay for the operator.
    for (src, r) in &reports {
        for table in r.rows_per_table.keys() {
            let d = stage_dir.join(src).join(table);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
            }
        }
    }
    tracing::info!(seq, ?version_id, records, loaded, quarantined, consent_excluded = cexcluded, "run complete");
    Ok(RunOutcome { seq, resumed, version_id, report })
}

/// A source's planned files as the readers get them.
struct Fetched {
    /// Local paths to read.
    paths: Vec<PathBuf>,
    /// Local path (as the readers print it) → file identity (path or object URL).
    names: HashMap<String, String>,
    /// Files that could not be hashed or fetched: listed as failed, not given to the reader.
    failed: Vec<InputReport>,
}

/// Local paths for a source's planned files: local files in place, objects downloaded under
/// `download` and checked against their planned SHA-256. A file that cannot be fetched fails
/// alone.
async fn fetch_inputs(src: &SourceSpec, files: &[&PlannedFile], download: &Path, data_dir: &Path) -> Result<Fetched> {
    let mut f = Fetched { paths: Vec::new(), names: HashMap::new(), failed: Vec::new() };
    let mut fail = |file: &str, error: String| {
        f.failed.push(InputReport { file: file.to_owned(), error: Some(error), ..Default::default() });
    };
    let mut ok = Vec::new();
    for p in files {
        match (&p.error, &p.sha256) {
            (Some(e), _) => fail(&p.path, e.clone()),
            (None, None) => fail(&p.path, "no SHA-256 was planned".into()),
            (None, Some(sha)) => ok.push((p, sha)),
        }
    }
    if ok.is_empty() {
        return Ok(f);
    }
    let store = SourceStore::open(src, data_dir)?;
    for (i, (p, sha)) in ok.into_iter().enumerate() {
        match store.fetch(&p.path, sha, download, i).await {
            Ok(local) => {
                f.names.insert(local.display().to_string(), p.path.clone());
                f.paths.push(local);
            }
            Err(e) => {
                tracing::warn!(file = %p.path, error = %e, "source file cannot be fetched");
                f.failed.push(InputReport {
                    file: p.path.clone(),
                    error: Some(format!("cannot read: {e}")),
                    ..Default::default()
                });
            }
        }
    }
    Ok(f)
}

fn stage_source(
    src: &SourceSpec,
    fetched: Fetched,
    out: &Path,
    key: &PseudonymKey,
    gate: Option<&ConsentGate>,
    data_dir: &Path,
) -> Result<IngestReport> {
    let ingest_err = |error| PipelineError::Ingest { source_name: src.name.clone(), error };
    let Fetched { mut paths, names, failed: unread } = fetched;
    let mut report = match src.format {
        SourceFormat::Receipt => niji_ingest::receipt::run(&paths, out, key, gate).map_err(ingest_err)?.0,
        SourceFormat::Care => {
            let layouts = match &src.layout_dir {
                Some(d) => niji_ingest::care::CareLayouts::load(&data_dir.join(d)),
                None => niji_ingest::care::CareLayouts::builtin(),
            }
            .map_err(ingest_err)?;
            niji_ingest::care::run(&paths, out, key, gate, &layouts).map_err(ingest_err)?
        }
        SourceFormat::Fhir => {
            // The FHIR reader stops on a file it cannot read; check each file first so that
            // one bad file fails alone.
            let mut bad = Vec::new();
            paths.retain(|p| match niji_ingest::fhir::read::read_input(p, &mut |_| Ok(())) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "FHIR file skipped");
                    bad.push(InputReport {
                        file: p.display().to_string(),
                        error: Some(e.to_string()),
                        ..Default::default()
                    });
                    false
                }
            });
            let opts = niji_ingest::fhir::FhirIngestOptions {
                inputs: paths,
                out: out.to_owned(),
                batch_rows: niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS,
            };
            let mut r = niji_ingest::fhir::ingest_with_consent(&opts, key, gate).map_err(ingest_err)?;
            for b in bad {
                r.add_input(b);
            }
            r
        }
    };
    for u in unread {
        report.add_input(u);
    }
    // Reports and quarantine entries name each file by its identity, not its staging copy.
    for i in &mut report.inputs {
        if let Some(id) = names.get(&i.file) {
            i.file.clone_from(id);
        }
    }
    rename_quarantine(&out.join("_quarantine.ndjson"), &names)?;
    report.write_json(&out.join("_report.json")).map_err(ingest_err)?;
    Ok(report)
}

async fn read_staged(ctx: &SessionContext, table: &str, paths: &[String]) -> Result<DataFrame> {
    let def = niji_cdm::table(table).map_err(|_| PipelineError::Query {
        what: format!("unknown CDM table `{table}`"),
        source: datafusion::error::DataFusionError::Plan("unknown table".into()),
    })?;
    let schema = def.schema();
    let opts = ParquetReadOptions::default().schema(&schema);
    ctx.read_parquet(paths.to_vec(), opts).await.map_err(query_err(format!("reading staged `{table}`")))
}

async fn count(df: DataFrame, table: &str) -> Result<u64> {
    Ok(df.count().await.map_err(query_err(format!("counting `{table}`")))? as u64)
}

async fn scalar_count(ctx: &SessionContext, sql: &str, what: &str) -> Result<u64> {
    let b = ctx.sql(sql).await.map_err(query_err(what))?.collect().await.map_err(query_err(what))?;
    let v = b
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>())
        .map_or(0, |a| a.value(0));
    Ok(u64::try_from(v).unwrap_or(0))
}

/// Distinct persons of a frame with their row counts.
async fn distinct_persons(df: DataFrame, table: &str) -> Result<Vec<(String, u64)>> {
    let what = format!("persons of `{table}`");
    let df = df
        .aggregate(vec![col("person_id")], vec![datafusion::functions_aggregate::expr_fn::count(lit(1)).alias("n")])
        .map_err(query_err(what.clone()))?;
    let batches = df.collect().await.map_err(query_err(what))?;
    let mut out = Vec::new();
    for b in batches {
        let ids = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| PipelineError::Query { what: format!("persons of `{table}`"), source: e.into() })?;
        let ids = ids.as_any().downcast_ref::<arrow::array::StringArray>();
        let ns = b.column(1).as_any().downcast_ref::<arrow::array::Int64Array>();
        if let (Some(ids), Some(ns)) = (ids, ns) {
            for i in 0..b.num_rows() {
                out.push((ids.value(i).to_owned(), u64::try_from(ns.value(i)).unwrap_or(0)));
            }
        }
    }
    Ok(out)
}

/// Apply the spec's generalization rules to a staged table.
fn generalize(df: DataFrame, spec: &PipelineSpec, table: &str) -> Result<DataFrame> {
    let rule = |list: &[String], c: &str| list.iter().any(|tc| tc.split_once('.') == Some((table, c)));
    let g = &spec.generalization;
    if !g.suppress.iter().chain(&g.month).any(|tc| tc.starts_with(&format!("{table}."))) {
        return Ok(df);
    }
    let def = niji_cdm::table(table).map_err(|_| PipelineError::Query {
        what: format!("unknown CDM table `{table}`"),
        source: datafusion::error::DataFusionError::Plan("unknown table".into()),
    })?;
    let schema = def.schema();
    let exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name().as_str();
            if rule(&g.suppress, name) {
                let null = ScalarValue::try_from(f.data_type()).unwrap_or(ScalarValue::Null);
                lit(null).alias(name)
            } else if rule(&g.month, name) {
                cast(datafusion::functions::expr_fn::date_trunc(lit("month"), col(name)), f.data_type().clone())
                    .alias(name)
            } else {
                col(name)
            }
        })
        .collect();
    df.select(exprs).map_err(query_err(format!("generalizing `{table}`")))
}

/// Column changes between two `schemas` objects: `[{table, column, before, after}]`.
fn diff_schemas(before: &Value, after: &Value) -> Vec<Value> {
    let empty = serde_json::Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let tables: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let mut out = Vec::new();
    for t in tables {
        let bc = b.get(t).and_then(Value::as_object).unwrap_or(&empty);
        let ac = a.get(t).and_then(Value::as_object).unwrap_or(&empty);
        let cols: BTreeSet<&String> = bc.keys().chain(ac.keys()).collect();
        for c in cols {
            let (x, y) = (bc.get(c), ac.get(c));
            if x != y {
                out.push(json!({"table": t, "column": c, "before": x, "after": y}));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_diff_names_added_and_changed_columns() {
        let a = json!({"claim": {"a": "Int64"}});
        let b = json!({"claim": {"a": "Utf8", "b": "Int32"}});
        let d = diff_schemas(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["column"], "a");
        assert_eq!(d[1]["before"], Value::Null);
        assert!(diff_schemas(&a, &a).is_empty());
    }
}
