#![allow(clippy::print_stdout)] // The suite prints `N passed, M failed` per file, as the issue asks.
//! Runs every case of the SQL-on-FHIR v2 conformance suite (tests/data/sql-on-fhir-v2).

use std::path::PathBuf;

use niji_ingest::fhir::view::{Env, View};
use serde_json::Value;

/// Cases skipped on purpose, with the reason (also listed in docs/FHIR.md).
const SKIPPED: &[(&str, &str, &str)] = &[];

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sql-on-fhir-v2")
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Rows compared as multisets (the spec does not demand an order).
fn rows_match(got: &[Value], want: &[Value]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    let mut used = vec![false; got.len()];
    want.iter().all(|w| {
        let hit = got.iter().enumerate().find(|(i, g)| !used[*i] && json_eq(g, w));
        match hit {
            Some((i, _)) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

fn run_case(resources: &[Value], case: &Value) -> Result<(), String> {
    let expect_error = case.get("expectError").and_then(Value::as_bool).unwrap_or(false);
    let outcome = View::compile(&case["view"]).and_then(|view| {
        let mut rows = Vec::new();
        for r in resources {
            for row in view.eval_json(r, &Env::default())? {
                rows.push(view.row_json(&row));
            }
        }
        Ok((view, rows))
    });
    match (outcome, expect_error) {
        (Err(_), true) => Ok(()),
        (Err(e), false) => Err(format!("unexpected error: {e}")),
        (Ok(_), true) => Err("expected an error, got rows".into()),
        (Ok((view, rows)), false) => {
            if let Some(cols) = case.get("expectColumns").and_then(Value::as_array) {
                let want: Vec<&str> = cols.iter().filter_map(Value::as_str).collect();
                if view.column_names() != want {
                    return Err(format!("columns {:?}, expected {want:?}", view.column_names()));
                }
            }
            let want = case["expect"].as_array().cloned().unwrap_or_default();
            if rows_match(&rows, &want) {
                // Also build the Arrow batch: the engine's real output must accept every row.
                let cells: Vec<_> =
                    resources.iter().flat_map(|r| view.eval_json(r, &Env::default()).unwrap_or_default()).collect();
                view.to_record_batch(&cells).map_err(|e| format!("arrow: {e}"))?;
                Ok(())
            } else {
                Err(format!("rows differ:\n  got  {}\n  want {}", Value::from(rows), Value::from(want)))
            }
        }
    }
}

#[test]
fn sql_on_fhir_v2_conformance() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("suite dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 22, "the suite has 22 files");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let doc: Value = serde_json::from_slice(&std::fs::read(f).expect("read")).expect("json");
        let resources = doc["resources"].as_array().cloned().unwrap_or_default();
        let (mut p, mut m) = (0, 0);
        for case in doc["tests"].as_array().expect("tests") {
            let title = case["title"].as_str().unwrap_or_default();
            if SKIPPED.iter().any(|(file, t, _)| *file == name && *t == title) {
                skipped += 1;
                continue;
            }
            match run_case(&resources, case) {
                Ok(()) => p += 1,
                Err(e) => {
                    m += 1;
                    failures.push(format!("{name} / {title}: {e}"));
                }
            }
        }
        println!("{name}: {p} passed, {m} failed");
        passed += p;
        failed += m;
    }
    println!("total: {passed} passed, {failed} failed, {skipped} skipped");
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} conformance cases failed", failures.len());
}
