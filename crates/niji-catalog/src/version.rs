//! Dataset versions and the steward's review.
//!
//! A pipeline run registers a version (the Delta version of each table and its run report)
//! as `pending`. A steward approves or rejects it with a reason; approving a version retires
//! the dataset's previously approved one in the same transaction, so researchers see exactly
//! one approved version per dataset. Legal transitions: pending → approved | rejected,
//! approved → retired. Each is one conditional `UPDATE … WHERE status = <from>`, so two
//! stewards racing cannot both win.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Catalog, CatalogError, Result, now, parse_json, with_pool};

/// Where a version is in the review workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Written by a pipeline run, awaiting review.
    Pending,
    /// Visible to researchers.
    Approved,
    /// Refused by a steward; never visible.
    Rejected,
    /// Superseded or withdrawn; no longer visible.
    Retired,
}

impl VersionStatus {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Pending => "pending",
            VersionStatus::Approved => "approved",
            VersionStatus::Rejected => "rejected",
            VersionStatus::Retired => "retired",
        }
    }

    /// The status a transition to `self` must start from.
    fn required_from(self) -> Option<VersionStatus> {
        match self {
            VersionStatus::Approved | VersionStatus::Rejected => Some(VersionStatus::Pending),
            VersionStatus::Retired => Some(VersionStatus::Approved),
            VersionStatus::Pending => None,
        }
    }
}

impl fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VersionStatus {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<VersionStatus> {
        match s {
            "pending" => Ok(VersionStatus::Pending),
            "approved" => Ok(VersionStatus::Approved),
            "rejected" => Ok(VersionStatus::Rejected),
            "retired" => Ok(VersionStatus::Retired),
            _ => Err(CatalogError::CorruptRow { table: "dataset_version", column: "status" }),
        }
    }
}

/// One version of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVersion {
    /// Id.
    pub id: i64,
    /// Dataset name.
    pub dataset: String,
    /// Delta table version per CDM table.
    pub delta_versions: BTreeMap<String, i64>,
    /// The pipeline's run report.
    pub run_report: Value,
    /// Review status.
    pub status: VersionStatus,
    /// Registration time (unix seconds).
    pub created_at: i64,
    /// Who registered it.
    pub created_by: String,
    /// Who approved or rejected it.
    pub reviewer: Option<String>,
    /// Their reason.
    pub reason: Option<String>,
    /// When reviewed.
    pub reviewed_at: Option<i64>,
    /// When retired.
    pub retired_at: Option<i64>,
}

/// A table whose Delta version differs between the reviewed version and the approved one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableChange {
    /// Table.
    pub table: String,
    /// Delta version in the currently approved version (None: new table).
    pub approved: Option<i64>,
    /// Delta version in the reviewed version (None: table dropped).
    pub candidate: Option<i64>,
}

/// A column-level schema difference, from the run reports' `schemas` sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnChange {
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
    /// Type in the approved version (None: added).
    pub approved: Option<String>,
    /// Type in the reviewed version (None: removed).
    pub candidate: Option<String>,
}

/// What a steward reads before deciding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// The version under review.
    pub version: DatasetVersion,
    /// The dataset's currently approved version, if any.
    pub approved: Option<DatasetVersion>,
    /// Tables whose Delta version changed.
    pub tables: Vec<TableChange>,
    /// Column changes, when both run reports carry `schemas`.
    pub schema: Vec<ColumnChange>,
    /// Row counts from the run report (`counts`), if present.
    pub counts: Option<Value>,
    /// The re-identification summary from the run report (`reidentification`), if present.
    pub reidentification: Option<Value>,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    dataset: String,
    delta_versions: String,
    run_report: String,
    status: String,
    created_at: i64,
    created_by: String,
    reviewer: Option<String>,
    reason: Option<String>,
    reviewed_at: Option<i64>,
    retired_at: Option<i64>,
}

impl TryFrom<VersionRow> for DatasetVersion {
    type Error = CatalogError;
    fn try_from(r: VersionRow) -> Result<DatasetVersion> {
        Ok(DatasetVersion {
            id: r.id,
            dataset: r.dataset,
            delta_versions: parse_json(&r.delta_versions, "dataset_version", "delta_versions")?,
            run_report: parse_json(&r.run_report, "dataset_version", "run_report")?,
            status: r.status.parse()?,
            created_at: r.created_at,
            created_by: r.created_by,
            reviewer: r.reviewer,
            reason: r.reason,
            reviewed_at: r.reviewed_at,
            retired_at: r.retired_at,
        })
    }
}

const SELECT_VERSION: &str = "SELECT id, dataset, delta_versions, run_report, status, created_at, created_by, \
     reviewer, reason, reviewed_at, retired_at FROM dataset_version";

/// `schemas: {table: {column: type}}` of a run report.
fn schemas(report: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(tables) = report.get("schemas").and_then(Value::as_object) {
        for (table, cols) in tables {
            let cols = cols
                .as_object()
                .map(|c| c.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            out.insert(table.clone(), cols);
        }
    }
    out
}

fn schema_diff(approved: &Value, candidate: &Value) -> Vec<ColumnChange> {
    let (a, c) = (schemas(approved), schemas(candidate));
    let mut out = Vec::new();
    let tables: BTreeSet<&String> = a.keys().chain(c.keys()).collect();
    let empty = BTreeMap::new();
    for t in tables {
        let (ac, cc) = (a.get(t).unwrap_or(&empty), c.get(t).unwrap_or(&empty));
        let cols: BTreeSet<&String> = ac.keys().chain(cc.keys()).collect();
        for col in cols {
            let (x, y) = (ac.get(col), cc.get(col));
            if x != y {
                out.push(ColumnChange {
                    table: t.clone(),
                    column: col.clone(),
                    approved: x.cloned(),
                    candidate: y.cloned(),
                });
            }
        }
    }
    out
}

impl Catalog {
    /// Register a new version of a dataset as `pending` (a pipeline run). Every table must
    /// belong to the dataset. The registration is audited as a pipeline run.
    #[tracing::instrument(skip(self, delta_versions, run_report))]
    pub async fn register_version(
        &self,
        actor: &str,
        dataset: &str,
        delta_versions: &BTreeMap<String, i64>,
        run_report: &Value,
    ) -> Result<i64> {
        let def = self.dataset(dataset).await?;
        if let Some(t) = delta_versions.keys().find(|t| !def.has_table(t)) {
            return Err(CatalogError::UnknownTable { dataset: dataset.to_owned(), table: t.clone() });
        }
        let versions_json = serde_json::to_string(delta_versions).map_err(|source| CatalogError::CorruptJson {
            table: "dataset_version",
            column: "delta_versions",
            source,
        })?;
        let report_json = run_report.to_string();
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO dataset_version (dataset, delta_versions, run_report, status, created_at, created_by) \
                 VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
            )
            .bind(dataset)
            .bind(&versions_json)
            .bind(&report_json)
            .bind(now())
            .bind(actor)
            .fetch_one(&mut *tx)
            .await?;
            let entry = NewEntry {
                actor,
                action: "pipeline.run",
                subject: format!("dataset_version:{id}"),
                details: serde_json::json!({
                    "dataset": dataset,
                    "delta_versions": delta_versions,
                    "run_report_sha256": crate::sha256_hex(report_json.as_bytes()),
                }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// One version.
    pub async fn version(&self, id: i64) -> Result<DatasetVersion> {
        let sql = format!("{SELECT_VERSION} WHERE id = $1");
        let row: Option<VersionRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        row.ok_or(CatalogError::UnknownVersion(id))?.try_into()
    }

    /// Versions, newest first, optionally of one status and/or one dataset.
    pub async fn versions(&self, status: Option<VersionStatus>, dataset: Option<&str>) -> Result<Vec<DatasetVersion>> {
        let sql = format!(
            "{SELECT_VERSION} WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR dataset = $2) ORDER BY id DESC"
        );
        let status = status.map(VersionStatus::as_str);
        let rows: Vec<VersionRow> =
            with_pool!(self, |p| { sqlx::query_as(&sql).bind(status).bind(dataset).fetch_all(p).await? });
        rows.into_iter().map(DatasetVersion::try_from).collect()
    }

    /// The approved version of a dataset, if any: the one researchers see.
    pub async fn approved_version(&self, dataset: &str) -> Result<Option<DatasetVersion>> {
        let sql = format!("{SELECT_VERSION} WHERE dataset = $1 AND status = 'approved' ORDER BY id DESC LIMIT 1");
        let row: Option<VersionRow> =
            with_pool!(self, |p| sqlx::query_as(&sql).bind(dataset).fetch_optional(p).await?);
        row.map(DatasetVersion::try_from).transpose()
    }

    /// What a steward needs to decide on a version.
    pub async fn review(&self, id: i64) -> Result<Review> {
        let version = self.version(id).await?;
        let approved = self.approved_version(&version.dataset).await?.filter(|a| a.id != id);
        let empty = BTreeMap::new();
        let base = approved.as_ref().map_or(&empty, |a| &a.delta_versions);
        let tables_seen: BTreeSet<&String> = base.keys().chain(version.delta_versions.keys()).collect();
        let tables = tables_seen
            .into_iter()
            .filter_map(|t| {
                let (a, c) = (base.get(t).copied(), version.delta_versions.get(t).copied());
                (a != c).then(|| TableChange { table: t.clone(), approved: a, candidate: c })
            })
            .collect();
        let schema = schema_diff(approved.as_ref().map_or(&Value::Null, |a| &a.run_report), &version.run_report);
        let counts = version.run_report.get("counts").cloned();
        let reidentification = version.run_report.get("reidentification").cloned();
        Ok(Review { version, approved, tables, schema, counts, reidentification })
    }

    /// Approve a pending version (retiring the dataset's previously approved one).
    pub async fn approve(&self, id: i64, reviewer: &str, reason: &str) -> Result<()> {
        self.transition(id, VersionStatus::Approved, reviewer, reason).await
    }

    /// Reject a pending version.
    pub async fn reject(&self, id: i64, reviewer: &str, reason: &str) -> Result<()> {
        self.transition(id, VersionStatus::Rejected, reviewer, reason).await
    }

    /// Retire an approved version (withdraw it from researchers).
    pub async fn retire(&self, id: i64, actor: &str, reason: &str) -> Result<()> {
        self.transition(id, VersionStatus::Retired, actor, reason).await
    }

    #[tracing::instrument(skip(self, reason))]
    async fn transition(&self, id: i64, to: VersionStatus, actor: &str, reason: &str) -> Result<()> {
        let Some(from) = to.required_from() else {
            let current = self.version(id).await?.status;
            return Err(CatalogError::IllegalTransition { id, from: current, to });
        };
        let t = now();
        let done = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let sql = if to == VersionStatus::Retired {
                "UPDATE dataset_version SET status = $1, retired_at = $2, reason = $3 \
                 WHERE id = $4 AND status = $5 RETURNING dataset"
            } else {
                "UPDATE dataset_version SET status = $1, reviewed_at = $2, reason = $3, reviewer = $6 \
                 WHERE id = $4 AND status = $5 RETURNING dataset"
            };
            let mut q = sqlx::query_as(sql).bind(to.as_str()).bind(t).bind(reason).bind(id).bind(from.as_str());
            if to != VersionStatus::Retired {
                q = q.bind(actor);
            }
            let row: Option<(String,)> = q.fetch_optional(&mut *tx).await?;
            match row {
                None => {
                    tx.rollback().await?;
                    false
                }
                Some((dataset,)) => {
                    let mut retired: Vec<i64> = Vec::new();
                    if to == VersionStatus::Approved {
                        let rows: Vec<(i64,)> = sqlx::query_as(
                            "UPDATE dataset_version SET status = 'retired', retired_at = $1 \
                             WHERE dataset = $2 AND status = 'approved' AND id <> $3 RETURNING id",
                        )
                        .bind(t)
                        .bind(&dataset)
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                        retired = rows.into_iter().map(|(r,)| r).collect();
                    }
                    let action = match to {
                        VersionStatus::Approved => "version.approve",
                        VersionStatus::Rejected => "version.reject",
                        _ => "version.retire",
                    };
                    let entry = NewEntry {
                        actor,
                        action,
                        subject: format!("dataset_version:{id}"),
                        details: serde_json::json!({ "dataset": dataset, "reason": reason, "retired": retired }),
                    };
                    append_in_tx!(tx, &entry);
                    tx.commit().await?;
                    true
                }
            }
        });
        if done {
            Ok(())
        } else {
            let current = self.version(id).await?.status;
            Err(CatalogError::IllegalTransition { id, from: current, to })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schema_diff_finds_added_removed_and_retyped_columns() {
        let a = serde_json::json!({"schemas": {"claim": {"a": "Int64", "b": "Utf8"}}});
        let c = serde_json::json!({"schemas": {"claim": {"a": "Float64", "c": "Utf8"}, "person": {"x": "Utf8"}}});
        let d = schema_diff(&a, &c);
        let names: Vec<(&str, &str)> = d.iter().map(|x| (x.table.as_str(), x.column.as_str())).collect();
        assert_eq!(names, [("claim", "a"), ("claim", "b"), ("claim", "c"), ("person", "x")]);
        assert_eq!(d[0].approved.as_deref(), Some("Int64"));
        assert_eq!(d[1].candidate, None);
        assert!(schema_diff(&a, &a).is_empty());
    }
}
