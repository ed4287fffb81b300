//! The re-identification report on tables with known equivalence classes: a MemTable and a
//! real Parquet file.

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use niji_pseudo::reid::reid_report_by_person;
use niji_pseudo::{PseudoError, reid_report};

/// Classes over (sex, year, pref): (M,1950,13)×3, (F,1950,13)×1, (F,1960,27)×12,
/// (M,1970,NULL)×10, (F,1980,01)×1 — 27 rows, 5 classes. Persons: the 12 rows of
/// (F,1960,27) belong to 4 persons.
fn batch() -> RecordBatch {
    let mut rows: Vec<(&str, i32, Option<&str>, String)> = vec![];
    let mut add = |sex, year, pref, n: usize, persons: usize, tag: &str| {
        for i in 0..n {
            rows.push((sex, year, pref, format!("{tag}{}", i % persons)));
        }
    };
    add("M", 1950, Some("13"), 3, 3, "a");
    add("F", 1950, Some("13"), 1, 1, "b");
    add("F", 1960, Some("27"), 12, 4, "c");
    add("M", 1970, None, 10, 10, "d");
    add("F", 1980, Some("01"), 1, 1, "e");
    let schema = Arc::new(Schema::new(vec![
        Field::new("sex", DataType::Utf8, false),
        Field::new("year_of_birth", DataType::Int32, false),
        Field::new("prefecture_code", DataType::Utf8, true),
        Field::new("person_id", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

const QI: &[&str] = &["sex", "year_of_birth", "prefecture_code"];

#[tokio::test]
async fn memtable_with_known_classes() {
    let ctx = SessionContext::new();
    let b = batch();
    ctx.register_table("person", Arc::new(MemTable::try_new(b.schema(), vec![vec![b]]).unwrap())).unwrap();
    let r = reid_report(&ctx, "person", QI, 10).await.unwrap();
    assert_eq!((r.records, r.equivalence_classes, r.smallest_class), (27, 5, 1));
    assert_eq!((r.classes_below_k, r.records_below_k, r.unique_classes), (3, 5, 2));
    assert!((r.share_below_k - 5.0 / 27.0).abs() < 1e-12);
    // k = 3: only the two singletons are below.
    let r3 = reid_report(&ctx, "person", QI, 3).await.unwrap();
    assert_eq!((r3.classes_below_k, r3.records_below_k), (2, 2));
    // Counting persons: (F,1960,27) has 4 persons, so the smallest classes stay 1 but the
    // persons below 10 are 3 + 1 + 4 + 1 = 9.
    let p = reid_report_by_person(&ctx, "person", QI, 10, "person_id").await.unwrap();
    assert_eq!((p.records, p.classes_below_k, p.records_below_k), (19, 4, 9));
    assert_eq!(p.unit, "persons");
    // One quasi-identifier: sex → M 13, F 14.
    let s = reid_report(&ctx, "person", &["sex"], 10).await.unwrap();
    assert_eq!((s.equivalence_classes, s.smallest_class, s.classes_below_k), (2, 13, 0));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["smallest_class"], 1);
}

#[tokio::test]
async fn parquet_file_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("person.parquet");
    let b = batch();
    let mut w =
        datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), b.schema(), None)
            .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let ctx = SessionContext::new();
    ctx.register_parquet("person", path.to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
    let r = reid_report(&ctx, "person", QI, 10).await.unwrap();
    assert_eq!((r.records, r.equivalence_classes, r.smallest_class, r.records_below_k), (27, 5, 1, 5));

    assert_eq!(
        reid_report(&ctx, "person", &["sex", "name"], 10).await,
        Err(PseudoError::UnknownColumn { table: "person".into(), column: "name".into() })
    );
    assert_eq!(reid_report(&ctx, "nope", QI, 10).await, Err(PseudoError::UnknownTable { table: "nope".into() }));
    assert_eq!(
        reid_report(&ctx, "person", &[], 10).await,
        Err(PseudoError::NoQuasiIdentifiers { table: "person".into() })
    );
}
