//! The researcher's DataFusion session: one per request.
//!
//! The session's only catalog is `niji`, with one schema per dataset the project may read in
//! the request's mode. Each schema holds one *view* per permitted table: a plan over the Delta
//! table **at the dataset's approved version** (time travel), filtered by the policy's row
//! filter and projected to the permitted columns. Denied tables and columns do not exist in
//! this catalog; the base Delta providers are never registered under any name.
//!
//! Sessions get no table functions, no table factories (`CREATE EXTERNAL TABLE`), no URL
//! tables and no information schema; each has its own memory pool.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::TableProvider;
use datafusion::datasource::provider_as_source;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::prelude::{SessionConfig, SessionContext, col};
use niji_pseudo::ProjectKey;
use tokio::sync::Mutex;

use niji_pipeline::lake::Lake;
use niji_policy::Policy;

use crate::{QueryError, Result};

/// The catalog name researchers see.
pub const CATALOG: &str = "niji";

/// One dataset exposed to a request: its policy and the Delta versions of its approved version.
#[derive(Debug, Clone)]
pub struct ExposedDataset {
    /// The resolved policy.
    pub policy: Policy,
    /// Approved dataset version id.
    pub version_id: i64,
    /// Delta version per table in that dataset version.
    pub delta_versions: std::collections::BTreeMap<String, i64>,
}

/// (dataset, table, Delta version).
type TableAt = (String, String, i64);

/// Opens Delta tables at a version and keeps their providers (a version never changes).
pub(crate) struct Providers {
    lake: Lake,
    registry: Arc<dyn ObjectStoreRegistry>,
    cache: Mutex<HashMap<TableAt, Arc<dyn TableProvider>>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("lake", &self.lake.root().as_str()).finish_non_exhaustive()
    }
}

impl Providers {
    pub(crate) fn new(lake: Lake) -> Self {
        Providers {
            lake,
            registry: Arc::new(datafusion::execution::object_store::DefaultObjectStoreRegistry::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn registry(&self) -> Arc<dyn ObjectStoreRegistry> {
        self.registry.clone()
    }

    /// The provider of `dataset.table` at Delta version `version`.
    pub(crate) async fn get(&self, dataset: &str, table: &str, version: i64) -> Result<Arc<dyn TableProvider>> {
        let key = (dataset.to_owned(), table.to_owned(), version);
        if let Some(p) = self.cache.lock().await.get(&key) {
            return Ok(p.clone());
        }
        let storage =
            |message: String| QueryError::Storage { dataset: dataset.to_owned(), table: table.to_owned(), message };
        let t = self.lake.open_version(dataset, table, version).await.map_err(|e| storage(e.to_string()))?;
        // Register the table's object store in the shared registry every session uses.
        let state = SessionStateBuilder::new()
            .with_runtime_env(
                RuntimeEnvBuilder::new()
                    .with_object_store_registry(self.registry.clone())
                    .build_arc()
                    .map_err(|e| storage(e.to_string()))?,
            )
            .build();
        t.update_datafusion_session(&state).map_err(|e| storage(e.to_string()))?;
        let provider: Arc<dyn TableProvider> = t.table_provider().await.map_err(|e| storage(e.to_string()))?;
        self.cache.lock().await.insert(key, provider.clone());
        Ok(provider)
    }
}

/// Everything a session is built from.
pub(crate) struct SessionSpec<'a> {
    pub datasets: &'a [ExposedDataset],
    pub memory_bytes: usize,
    pub batch_size: usize,
    pub target_partitions: usize,
    /// Extract mode: `person_id` is re-keyed with this project key in every view.
    pub rekey: Option<&'a ProjectKey>,
}

/// Build a researcher session.
pub(crate) async fn build(providers: &Providers, spec: SessionSpec<'_>) -> Result<SessionContext> {
    let default_schema = spec.datasets.first().map_or("none", |d| d.policy.dataset.as_str());
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG, default_schema)
        .with_information_schema(false)
        .with_batch_size(spec.batch_size)
        .with_target_partitions(spec.target_partitions.max(1));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(spec.memory_bytes, 1.0)
        // No spilling: a query lives within its memory pool or fails (disk is a resource too).
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .with_object_store_registry(providers.registry())
        .build_arc()
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_table_functions(HashMap::new())
        .with_table_factories(HashMap::new())
        .build();
    let ctx = SessionContext::new_with_state(state);
    if let Some(project) = spec.rekey {
        niji_pseudo::udf::register_project_rekey(&ctx, project);
    }
    let catalog = Arc::new(MemoryCatalogProvider::new());
    for d in spec.datasets {
        let schema = Arc::new(MemorySchemaProvider::new());
        for (table, view) in &d.policy.tables {
            let Some(version) = d.delta_versions.get(table).copied().filter(|v| *v >= 0) else {
                continue;
            };
            let base = providers.get(&d.policy.dataset, table, version).await?;
            let plan_err = |e: datafusion::error::DataFusionError| {
                QueryError::Internal(format!("building the view of {}.{table}: {e}", d.policy.dataset))
            };
            let mut b = LogicalPlanBuilder::scan(
                TableReference::partial(d.policy.dataset.as_str(), table.as_str()),
                provider_as_source(base),
                None,
            )
            .map_err(plan_err)?;
            if let Some(filter) = &view.row_filter {
                let df_schema: &DFSchema = b.schema();
                let expr = ctx.parse_sql_expr(filter, df_schema).map_err(|e| {
                    QueryError::Internal(format!(
                        "the row filter of {}.{table} in {} does not plan: {e}",
                        d.policy.dataset, d.policy.source
                    ))
                })?;
                b = b.filter(expr).map_err(plan_err)?;
            }
            let exprs: Vec<Expr> = view
                .columns
                .iter()
                .map(|c| match (c.as_str(), spec.rekey) {
                    (niji_cdm::PERSON_ID, Some(_)) => ctx
                        .udf("niji_rekey")
                        .map(|u| u.call(vec![col(niji_cdm::PERSON_ID)]).alias(niji_cdm::PERSON_ID))
                        .map_err(plan_err),
                    _ => Ok(col(c.as_str())),
                })
                .collect::<Result<_>>()?;
            let plan = b.project(exprs).map_err(plan_err)?.build().map_err(plan_err)?;
            let view = ViewTable::new(plan, None);
            schema.register_table(table.clone(), Arc::new(view)).map_err(|e| QueryError::Internal(e.to_string()))?;
        }
        catalog.register_schema(&d.policy.dataset, schema).map_err(|e| QueryError::Internal(e.to_string()))?;
    }
    ctx.register_catalog(CATALOG, catalog);
    Ok(ctx)
}
