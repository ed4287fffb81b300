//! The SQL UDFs give the same answers as the Rust functions, quarantine reasons without
//! values, and never show the key.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionContext;
use niji_pseudo::linkage::{RawIdentifiers, link_raw};
use niji_pseudo::udf::register_project_rekey;
use niji_pseudo::{Domain, ProjectKey, PseudonymKey, register_udfs};

fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[0xAB; 32]).unwrap()
}

const ROWS: &[[Option<&str>; 9]] = &[
    // insurer, kigo, bango, branch, kana, birth, sex, postcode, event
    [
        Some("138014"),
        Some("あいう"),
        Some("１８７"),
        Some("05"),
        Some("ﾔﾏﾀﾞ ﾀﾛｳ"),
        Some("19500301"),
        Some("1"),
        Some("154-0001"),
        Some("2024-05-17"),
    ],
    [None, None, None, None, Some("やまだ はなこ"), Some("19801231"), Some("2"), Some("530-0001"), Some("2024-01-02")],
    [
        Some("138014"),
        Some("1"),
        Some("2"),
        None,
        None,
        Some("19500230"),
        Some("1"),
        Some("498-0801"),
        Some("2024-02-29"),
    ],
    [Some("12x"), Some("1"), Some("2"), None, None, Some("19500301"), Some("1"), None, None],
    [None, None, None, None, Some("山田"), Some("19500301"), Some("1"), None, None],
    [None, None, None, None, None, Some("19500301"), Some("7"), None, None],
];

const COLS: [&str; 9] = ["ins", "kigo", "bango", "branch", "kana", "birth", "sex", "postcode", "event"];

fn ctx() -> SessionContext {
    let schema = Arc::new(Schema::new(COLS.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let cols = (0..COLS.len())
        .map(|c| Arc::new(StringArray::from(ROWS.iter().map(|r| r[c]).collect::<Vec<_>>())) as _)
        .collect();
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("src", Arc::new(MemTable::try_new(schema, vec![vec![b]]).unwrap())).unwrap();
    register_udfs(&ctx, &key());
    ctx
}

async fn column(ctx: &SessionContext, sql: &str) -> Vec<Option<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = vec![];
    for b in batches {
        let a = b.column(0);
        for i in 0..a.len() {
            out.push((!a.is_null(i)).then(|| array_value_to_string(a, i).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn person_ids_and_quarantine_reasons() {
    let ctx = ctx();
    let ids = column(&ctx, "SELECT niji_person_id(ins, kigo, bango, branch, kana, birth, sex) FROM src").await;
    let errors = column(&ctx, "SELECT niji_linkage_error(ins, kigo, bango, branch, kana, birth, sex) FROM src").await;
    for (i, r) in ROWS.iter().enumerate() {
        let raw = RawIdentifiers {
            insurer_number: r[0],
            kigo: r[1],
            bango: r[2],
            branch: r[3],
            kana_name: r[4],
            birth_date: r[5],
            sex: r[6],
            source_id: None,
        };
        assert_eq!(ids[i], link_raw(&key(), &raw, None).ok().map(|l| l.person_id), "row {i}");
    }
    assert!(ids[0].is_some() && ids[1].is_some());
    assert_eq!(
        errors,
        vec![
            None,
            None,
            Some("birth_date: impossible calendar date".to_owned()),
            Some("insurer_number: not all digits".to_owned()),
            Some("kana_name: contains characters other than kana".to_owned()),
            Some("sex: unknown sex code".to_owned()),
        ]
    );
}

#[tokio::test]
async fn generalization_and_pseudonyms_in_sql() {
    let ctx = ctx();
    // Text as the sources write it: the impossible birth date of row 2 gives NULL.
    let bands = column(&ctx, "SELECT niji_age_band(birth, event) FROM src LIMIT 3").await;
    assert_eq!(bands, vec![Some("70-74".into()), Some("40-44".into()), None]);
    let typed = column(&ctx, "SELECT niji_age_band(DATE '1950-03-01', CAST(event AS DATE)) FROM src LIMIT 1").await;
    assert_eq!(typed, vec![Some("70-74".into())]);
    let by_year = column(&ctx, "SELECT niji_age_band(1950, DATE '2024-01-01')").await;
    assert_eq!(by_year, vec![Some("70-74".into())]);
    let month = column(&ctx, "SELECT niji_month(CAST(event AS DATE)) FROM src LIMIT 1").await;
    assert_eq!(month, vec![Some("2024-05-01".into())]);
    let pref = column(&ctx, "SELECT niji_postcode_prefecture(postcode) FROM src LIMIT 3").await;
    assert_eq!(pref, vec![Some("13".into()), Some("27".into()), None]);
    let area = column(&ctx, "SELECT niji_secondary_medical_area(postcode) FROM src LIMIT 2").await;
    assert_eq!(area, vec![Some("1303".into()), None]);
    let kana = column(&ctx, "SELECT niji_normalize_kana(kana) FROM src LIMIT 2").await;
    assert_eq!(kana, vec![Some("ヤマダタロウ".into()), Some("ヤマダハナコ".into())]);
    assert_eq!(column(&ctx, "SELECT niji_icd10_parent('E11.9')").await, vec![Some("E11".into())]);
    assert_eq!(column(&ctx, "SELECT niji_prefecture_code('東京都')").await, vec![Some("13".into())]);
    assert_eq!(column(&ctx, "SELECT niji_normalize_insurer('１３８０１４')").await, vec![Some("00138014".into())]);
    let fac = column(&ctx, "SELECT niji_pseudonym('facility', '13', 1, '1310000')").await;
    assert_eq!(fac, vec![Some(key().pseudonym(Domain::Facility, &["13", "1", "1310000"]))]);
    assert_eq!(column(&ctx, "SELECT niji_pseudonym('facility', NULL)").await, vec![None]);
    let err = ctx.sql("SELECT niji_pseudonym('person_id1', 'x')").await.unwrap().collect().await;
    assert!(err.is_err(), "person keys must go through normalization");
    // Date shift: same person, same shift; interval kept.
    let shifted =
        column(&ctx, "SELECT niji_date_shift('p1', DATE '2024-03-01') - niji_date_shift('p1', DATE '2024-01-01')")
            .await;
    let d = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap() - NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    assert!(shifted[0].as_deref().unwrap().contains(&d.num_days().to_string()), "{shifted:?}");
}

#[tokio::test]
async fn rekey_per_project_and_key_never_shown() {
    let ctx = ctx();
    let master = PseudonymKey::from_bytes(&[0xCD; 32]).unwrap();
    let p1 = ProjectKey::derive(&master, "p1");
    register_project_rekey(&ctx, &p1);
    let r = column(&ctx, "SELECT niji_rekey('abc')").await;
    assert_eq!(r, vec![Some(p1.rekey("abc"))]);
    for name in ["niji_pseudonym", "niji_person_id", "niji_date_shift", "niji_rekey"] {
        let udf = ctx.udf(name).unwrap();
        let dbg = format!("{udf:?}").to_lowercase();
        assert!(!dbg.contains("abab") && !dbg.contains("cdcd") && !dbg.contains("171, 171"), "{name}: {dbg}");
        assert!(dbg.contains("key_id"), "{name}: {dbg}");
    }
    // EXPLAIN shows the function name only.
    let plan = column(&ctx, "EXPLAIN SELECT niji_pseudonym('record', ins) FROM src").await;
    let text = plan.into_iter().flatten().collect::<String>().to_lowercase();
    assert!(!text.contains("abab"), "{text}");
    let strings = ctx.sql("SELECT niji_normalize_kana(kana) FROM src").await.unwrap().collect().await.unwrap();
    assert_eq!(strings[0].column(0).as_string::<i32>().len(), ROWS.len());
}
