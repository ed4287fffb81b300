//! Re-identification risk of a table over chosen quasi-identifiers, computed with DataFusion:
//! the equivalence classes (rows sharing all quasi-identifier values), the smallest one, and
//! how many classes and records fall below k. The steward reads it when reviewing a dataset
//! version. NULL is a value of its own (records with a missing quasi-identifier form classes
//! together), which is how an attacker would see them too.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
use datafusion::functions_aggregate::expr_fn::{min, sum};
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::{PseudoError, Result};

/// The re-identification report of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReidReport {
    /// Table examined.
    pub table: String,
    /// Quasi-identifier columns, in the order given.
    pub quasi_identifiers: Vec<String>,
    /// The k threshold.
    pub k: u64,
    /// What a class counts: `records`, or `persons` (distinct values of this column).
    pub unit: String,
    /// Records (or persons, summed over classes) in the table.
    pub records: u64,
    /// Number of equivalence classes.
    pub equivalence_classes: u64,
    /// Size of the smallest class (0 for an empty table).
    pub smallest_class: u64,
    /// Classes of size below k.
    pub classes_below_k: u64,
    /// Records (or persons) in classes below k.
    pub records_below_k: u64,
    /// `records_below_k / records` (0 for an empty table).
    pub share_below_k: f64,
    /// Classes of size one: records unique on the quasi-identifiers.
    pub unique_classes: u64,
}

fn engine(table: &str, e: impl std::fmt::Display) -> PseudoError {
    PseudoError::ReidQuery { table: table.to_owned(), reason: e.to_string() }
}

/// The report over rows: each row counts once.
pub async fn reid_report(ctx: &SessionContext, table: &str, quasi_identifiers: &[&str], k: u64) -> Result<ReidReport> {
    report(ctx, table, quasi_identifiers, k, None).await
}

/// The report over persons: a class counts the distinct `person_column` values in it, so a
/// person with many rows counts once (the NDB rule counts patients, not records).
pub async fn reid_report_by_person(
    ctx: &SessionContext,
    table: &str,
    quasi_identifiers: &[&str],
    k: u64,
    person_column: &str,
) -> Result<ReidReport> {
    report(ctx, table, quasi_identifiers, k, Some(person_column)).await
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

async fn report(
    ctx: &SessionContext,
    table: &str,
    quasi_identifiers: &[&str],
    k: u64,
    person: Option<&str>,
) -> Result<ReidReport> {
    if quasi_identifiers.is_empty() {
        return Err(PseudoError::NoQuasiIdentifiers { table: table.to_owned() });
    }
    let df = ctx.table(table).await.map_err(|_| PseudoError::UnknownTable { table: table.to_owned() })?;
    let schema = df.schema().clone();
    for c in quasi_identifiers.iter().copied().chain(person) {
        if schema.index_of_column_by_name(None, c).is_none() {
            return Err(PseudoError::UnknownColumn { table: table.to_owned(), column: c.to_owned() });
        }
    }
    let size = match person {
        None => count(lit(1)),
        Some(p) => count_distinct(column(p)),
    };
    let k_i64 = i64::try_from(k).unwrap_or(i64::MAX);
    let classes = df
        .aggregate(quasi_identifiers.iter().map(|q| column(q)).collect(), vec![size.alias("n")])
        .map_err(|e| engine(table, e))?;
    let below = col("n").lt(lit(k_i64));
    let summary = classes
        .aggregate(
            vec![],
            vec![
                count(lit(1)).alias("classes"),
                sum(col("n")).alias("records"),
                min(col("n")).alias("smallest"),
                sum(when(below.clone(), lit(1i64)).otherwise(lit(0i64)).map_err(|e| engine(table, e))?)
                    .alias("classes_below"),
                sum(when(below, col("n")).otherwise(lit(0i64)).map_err(|e| engine(table, e))?).alias("records_below"),
                sum(when(col("n").eq(lit(1i64)), lit(1i64)).otherwise(lit(0i64)).map_err(|e| engine(table, e))?)
                    .alias("unique"),
            ],
        )
        .map_err(|e| engine(table, e))?;
    let batches = summary.collect().await.map_err(|e| engine(table, e))?;
    let batch = batches.first().ok_or_else(|| engine(table, "no summary row"))?;
    let get = |name: &str| -> Result<u64> {
        let a = batch.column_by_name(name).ok_or_else(|| engine(table, format!("missing {name}")))?;
        let a = cast(a, &DataType::Int64).map_err(|e| engine(table, e))?;
        let a = a.as_primitive::<Int64Type>();
        Ok(if a.is_empty() || a.is_null(0) { 0 } else { u64::try_from(a.value(0)).unwrap_or(0) })
    };
    let records = get("records")?;
    let records_below_k = get("records_below")?;
    Ok(ReidReport {
        table: table.to_owned(),
        quasi_identifiers: quasi_identifiers.iter().map(|s| (*s).to_owned()).collect(),
        k,
        unit: person.map_or_else(|| "records".to_owned(), |_| "persons".to_owned()),
        records,
        equivalence_classes: get("classes")?,
        smallest_class: get("smallest")?,
        classes_below_k: get("classes_below")?,
        records_below_k,
        share_below_k: if records == 0 { 0.0 } else { records_below_k as f64 / records as f64 },
        unique_classes: get("unique")?,
    })
}
