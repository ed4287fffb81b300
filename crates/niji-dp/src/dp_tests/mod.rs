//! Tests of the `dp` query layer on in-memory tables shaped like the CDM.
//!
//! OpenDP draws its noise from the operating system's CSPRNG and cannot be seeded, so tests that
//! look at noisy outputs either use an enormous ε (noise far below the tolerance checked) or are
//! statistical with a stated false-failure probability (see `audit`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod plans;
mod queries;
mod streaming;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_empty_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::{ScalarValue, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use niji_catalog::DatasetDef;
use niji_cdm::TableDef;
use niji_cdm::tables::{CLAIM, CONDITION_OCCURRENCE, MEASUREMENT, PERSON_TABLE};

use crate::{DpParams, DpPlan, Request, Result};

pub(crate) const DATASET: &str = r#"
name = "ehr"
title = "EHR test"
privacy_unit = "person_id"
tables = ["person", "condition_occurrence", "measurement", "claim"]
[policy]
mode = "dp"
k = 10
rounding = 5
[bounds.measurement]
value_as_number = { lower = 0, upper = 200 }
[bounds.claim]
total_points = { lower = 0, upper = 1000 }
[public_keys.sex]
columns = ["person.sex"]
values = ["M", "F", "U"]
[public_keys.prefecture]
columns = ["person.prefecture_code", "claim.prefecture_code"]
values = ["13", "27", "40"]
"#;

pub(crate) fn datasets() -> Vec<DatasetDef> {
    vec![DatasetDef::parse(DATASET, Path::new("ehr.toml")).unwrap()]
}

/// Every table reference of the test sessions is a table of dataset `ehr`.
pub(crate) fn tables(t: &TableReference) -> Option<(String, String)> {
    Some(("ehr".to_owned(), t.table().to_owned()))
}

/// Rows of one table: column → value; unspecified columns get NULL, or a default when not nullable.
pub(crate) type Row = Vec<(&'static str, ScalarValue)>;

fn batch(schema: &SchemaRef, rows: &[Row]) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let values = rows.iter().map(|r| {
                r.iter().find(|(n, _)| *n == f.name()).map(|(_, v)| v.clone()).unwrap_or_else(|| {
                    if f.is_nullable() {
                        ScalarValue::try_from(f.data_type()).unwrap()
                    } else {
                        ScalarValue::new_default(f.data_type()).unwrap()
                    }
                })
            });
            if rows.is_empty() { new_empty_array(f.data_type()) } else { ScalarValue::iter_to_array(values).unwrap() }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// Test data: per table, its rows.
#[derive(Default, Clone)]
pub(crate) struct Data {
    pub tables: HashMap<&'static str, Vec<Row>>,
}

impl Data {
    pub fn add(&mut self, table: &'static str, row: Row) {
        self.tables.entry(table).or_default().push(row);
    }

    /// A copy without the rows of `person`.
    pub fn without(&self, person: &str) -> Data {
        let mut d = self.clone();
        for rows in d.tables.values_mut() {
            rows.retain(|r| !r.iter().any(|(n, v)| *n == "person_id" && *v == s(person)));
        }
        d
    }

    /// Every table's rows sorted by person, as the pipelines store them.
    pub fn sorted(mut self) -> Data {
        for rows in self.tables.values_mut() {
            rows.sort_by_key(|r| r.iter().find(|(n, _)| *n == "person_id").map(|(_, v)| v.to_string()));
        }
        self
    }

    pub fn context(&self) -> SessionContext {
        let ctx = SessionContext::new();
        for def in [PERSON_TABLE, CONDITION_OCCURRENCE, MEASUREMENT, CLAIM] {
            register(&ctx, &def, self.tables.get(def.name).map(Vec::as_slice).unwrap_or(&[]));
        }
        ctx
    }
}

fn register(ctx: &SessionContext, def: &TableDef, rows: &[Row]) {
    let schema = def.schema();
    let b = batch(&schema, rows);
    let t = MemTable::try_new(schema, vec![vec![b]]).unwrap();
    ctx.register_table(def.name, Arc::new(t)).unwrap();
}

/// Exact bounded aggregates as (key, column) → value, with persons as a column.
pub(crate) fn flat(b: &crate::release::Bounded) -> std::collections::BTreeMap<(String, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    for (g, key) in b.keys.iter().enumerate() {
        let k = format!("{key:?}");
        out.insert((k.clone(), "persons".into()), b.persons[g] as f64);
        for (c, v) in &b.columns {
            out.insert((k.clone(), c.clone()), v[g]);
        }
    }
    out
}

pub(crate) fn s(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_owned()))
}
pub(crate) fn f(v: f64) -> ScalarValue {
    ScalarValue::Float64(Some(v))
}
pub(crate) fn i64v(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

/// 60 ordinary persons (sex M/F, prefecture 13/27, 1–3 measurements of 50–150, two common
/// diagnoses, one claim) and, unless `heavy` is false, person `heavy` with 10^4 measurements at
/// the upper bound, 10^4 diagnoses spread over 50 codes and 10^4 claims.
pub(crate) fn sample(heavy: bool) -> Data {
    let mut d = Data::default();
    for p in 0..60 {
        let id = format!("p{p:02}");
        let sex = if p % 2 == 0 { "M" } else { "F" };
        let pref = if p % 3 == 0 { "27" } else { "13" };
        d.add(
            "person",
            vec![
                ("person_id", s(&id)),
                ("sex", s(sex)),
                ("year_of_birth", ScalarValue::Int32(Some(1950 + p))),
                ("prefecture_code", s(pref)),
            ],
        );
        for k in 0..(1 + p % 3) {
            d.add(
                "measurement",
                vec![
                    ("person_id", s(&id)),
                    ("measurement_id", s(&format!("m{p}-{k}"))),
                    ("value_as_number", f(50.0 + f64::from((p * 7 + k * 13) % 101))),
                ],
            );
        }
        for code in ["I10", "E11"] {
            d.add("condition_occurrence", vec![("person_id", s(&id)), ("condition_source_value", s(code))]);
        }
        d.add(
            "claim",
            vec![("person_id", s(&id)), ("total_points", i64v(i64::from(100 + p))), ("prefecture_code", s(pref))],
        );
    }
    if heavy {
        add_heavy(&mut d, "heavy", 10_000);
    }
    d
}

pub(crate) fn add_heavy(d: &mut Data, id: &str, rows: usize) {
    d.add(
        "person",
        vec![
            ("person_id", s(id)),
            ("sex", s("M")),
            ("year_of_birth", ScalarValue::Int32(Some(1940))),
            ("prefecture_code", s("40")),
        ],
    );
    for k in 0..rows {
        d.add(
            "measurement",
            vec![("person_id", s(id)), ("measurement_id", s(&format!("h{k}"))), ("value_as_number", f(1e9))],
        );
        d.add(
            "condition_occurrence",
            vec![("person_id", s(id)), ("condition_source_value", s(&format!("H{:02}", k % 50)))],
        );
        d.add("claim", vec![("person_id", s(id)), ("total_points", i64v(1_000_000)), ("prefecture_code", s("40"))]);
    }
}

pub(crate) fn params(epsilon: f64, delta: f64) -> DpParams {
    DpParams { request: Request::new(epsilon, delta).unwrap(), max_groups_per_person: None, max_rows_per_person: None }
}

pub(crate) async fn plan_of(ctx: &SessionContext, sql: &str) -> LogicalPlan {
    ctx.state().create_logical_plan(sql).await.unwrap()
}

pub(crate) async fn analyse(ctx: &SessionContext, sql: &str, p: &DpParams) -> Result<DpPlan> {
    let plan = plan_of(ctx, sql).await;
    DpPlan::analyse(&plan, &tables, &datasets(), p)
}
