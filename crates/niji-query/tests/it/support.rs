//! A lake with hand-made `ehr` tables whose answers are known exactly, a catalog with an
//! approved version of them, projects, a researcher and the query service.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use niji_catalog::{Budget, Catalog, DatasetDef, Mode, Principal, Role};
use niji_cdm::{ColumnType, TableDef};
use niji_pipeline::lake::Lake;
use niji_pseudo::PseudonymKey;
use niji_query::{QueryService, ServiceConfig, ServiceLimits};

/// A value for one cell of a hand-made row.
#[derive(Debug, Clone)]
pub enum V {
    S(String),
    I(i64),
    F(f64),
    Null,
}

pub fn s(v: impl Into<String>) -> V {
    V::S(v.into())
}

/// A batch of `n` rows of a CDM table; `cell(column, row)` gives values, absent → a default
/// for non-nullable columns and null otherwise.
pub fn batch(t: &TableDef, n: usize, cell: impl Fn(&str, usize) -> Option<V>) -> RecordBatch {
    let cols: Vec<ArrayRef> = t
        .columns
        .iter()
        .map(|c| {
            let get = |i: usize| match cell(c.name, i) {
                Some(v) => v,
                None if c.nullable => V::Null,
                None => match c.ty {
                    ColumnType::Utf8 => V::S(format!("{}-{i}", c.name)),
                    ColumnType::Float64 => V::F(0.0),
                    _ => V::I(0),
                },
            };
            let vals: Vec<V> = (0..n).map(get).collect();
            let a: ArrayRef = match c.ty {
                ColumnType::Utf8 => Arc::new(
                    vals.iter().map(|v| if let V::S(s) = v { Some(s.clone()) } else { None }).collect::<StringArray>(),
                ),
                ColumnType::Int32 => Arc::new(
                    vals.iter()
                        .map(|v| if let V::I(i) = v { Some(i32::try_from(*i).unwrap()) } else { None })
                        .collect::<Int32Array>(),
                ),
                ColumnType::Int64 => {
                    Arc::new(vals.iter().map(|v| if let V::I(i) = v { Some(*i) } else { None }).collect::<Int64Array>())
                }
                ColumnType::Float64 => Arc::new(
                    vals.iter()
                        .map(|v| match v {
                            V::F(f) => Some(*f),
                            V::I(i) => Some(*i as f64),
                            _ => None,
                        })
                        .collect::<Float64Array>(),
                ),
                ColumnType::Boolean => Arc::new(
                    vals.iter().map(|v| if let V::I(i) = v { Some(*i != 0) } else { None }).collect::<BooleanArray>(),
                ),
                ColumnType::Date32 => Arc::new(
                    vals.iter()
                        .map(|v| if let V::I(i) = v { Some(i32::try_from(*i).unwrap()) } else { None })
                        .collect::<Date32Array>(),
                ),
            };
            a
        })
        .collect();
    RecordBatch::try_new(t.schema(), cols).unwrap()
}

pub fn pid(i: usize) -> String {
    format!("{i:032x}")
}

/// The hand-made population (see tests/sql/README.md for the numbers each query expects):
/// 120 persons; sex F for 0..70, M for 70..115, U for 115..120; year_of_birth 1940 + i % 60;
/// prefecture 13 (even i) or 27 (odd i). Conditions: E11 once for persons 10..40, I10 twenty
/// times for persons 10..14, C50 once for person 0. Measurements: HbA1c (value 5 + i % 5) once
/// for each person 10..70.
pub fn person_batch() -> RecordBatch {
    batch(&niji_cdm::tables::PERSON_TABLE, 120, |c, i| match c {
        "person_id" => Some(s(pid(i))),
        "sex" => Some(s(if i < 70 {
            "F"
        } else if i < 115 {
            "M"
        } else {
            "U"
        })),
        "year_of_birth" => Some(V::I(1940 + (i % 60) as i64)),
        "month_of_birth" => Some(V::I(1 + (i % 12) as i64)),
        "prefecture_code" => Some(s(if i % 2 == 0 { "13" } else { "27" })),
        "linkage_basis" => Some(s("id1")),
        "source_system" => Some(s("synth")),
        _ => None,
    })
}

pub fn condition_batch() -> RecordBatch {
    let mut rows: Vec<(usize, &str)> = (10..40).map(|i| (i, "E11")).collect();
    for i in 10..14 {
        rows.extend(std::iter::repeat_n((i, "I10"), 20));
    }
    rows.push((0, "C50"));
    batch(&niji_cdm::tables::CONDITION_OCCURRENCE, rows.len(), |c, r| match c {
        "condition_occurrence_id" => Some(s(format!("c{r}"))),
        "person_id" => Some(s(pid(rows[r].0))),
        "icd10_code" => Some(s(rows[r].1)),
        "condition_source_value" => Some(s(rows[r].1)),
        "condition_start_date" => Some(V::I(19_000 + r as i64)),
        "source_system" => Some(s("synth")),
        _ => None,
    })
}

pub fn measurement_batch() -> RecordBatch {
    batch(&niji_cdm::tables::MEASUREMENT, 60, |c, r| match c {
        "measurement_id" => Some(s(format!("m{r}"))),
        "person_id" => Some(s(pid(10 + r))),
        "measurement_source_value" => Some(s("3D045000001906202")),
        "value_as_number" => Some(V::F(5.0 + ((10 + r) % 5) as f64)),
        "source_system" => Some(s("synth")),
        _ => None,
    })
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub catalog: Catalog,
    pub service: QueryService,
    pub researcher: Principal,
    pub outsider: Principal,
    pub version_id: i64,
    pub lake: Lake,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub async fn write_tables(lake: &Lake, seq: i64, tables: Vec<(&str, RecordBatch)>) -> BTreeMap<String, i64> {
    let mut versions = BTreeMap::new();
    for (name, b) in tables {
        let t = lake.open("ehr", name).await.unwrap();
        let v = lake.append(t, name, vec![b], "test", seq).await.unwrap();
        versions.insert(name.to_owned(), v);
    }
    versions
}

pub async fn fixture_with(limits: ServiceLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let catalog = Catalog::open_default(&data_dir).await.unwrap();
    let defs = DatasetDef::load_dir(&repo().join("catalog")).unwrap();
    catalog.load_datasets("test", &defs).await.unwrap();
    let lake = Lake::new(None, &data_dir, HashMap::new()).unwrap();
    let versions = write_tables(
        &lake,
        1,
        vec![
            ("person", person_batch()),
            ("condition_occurrence", condition_batch()),
            ("measurement", measurement_batch()),
        ],
    )
    .await;
    let version_id = catalog.register_version("pipeline:test", "ehr", &versions, &serde_json::json!({})).await.unwrap();
    catalog.approve(version_id, "steward:test", "test data").await.unwrap();

    let researcher = catalog.create_principal("test", "alice", Role::Researcher).await.unwrap();
    let outsider = catalog.create_principal("test", "mallory", Role::Researcher).await.unwrap();
    for (name, modes) in [
        ("study", vec![Mode::Sdc, Mode::Extract, Mode::Dp]),
        ("open", vec![Mode::Sdc]),
        ("rows", vec![Mode::Extract]),
        ("rows2", vec![Mode::Extract]),
    ] {
        let id = catalog
            .create_project(
                "test",
                &niji_catalog::project::NewProject {
                    name: name.into(),
                    purpose: "tests".into(),
                    datasets: vec!["ehr".into()],
                    modes,
                    budget: Budget::from_f64(1.0, 1e-6).unwrap(),
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        catalog.grant("test", id, researcher.id).await.unwrap();
    }
    let policies = QueryService::load_policies(&catalog, &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies"))
        .await
        .unwrap();
    let service = QueryService::new(
        catalog.clone(),
        ServiceConfig {
            lake: lake.clone(),
            policies,
            extract_key: Some(PseudonymKey::from_bytes(b"extract-master-key-for-tests-000").unwrap()),
            limits,
        },
    )
    .unwrap();
    Fixture { _dir: dir, catalog, service, researcher, outsider, version_id, lake }
}

pub async fn fixture() -> Fixture {
    fixture_with(ServiceLimits { timeout: Duration::from_secs(30), ..ServiceLimits::default() }).await
}
