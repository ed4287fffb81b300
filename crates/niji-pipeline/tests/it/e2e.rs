//! A claims pipeline end to end: run, report, registration, idempotent rerun, incremental load,
//! a bad file that fails alone.

use niji_catalog::VersionStatus;
use niji_pipeline::{PipelineSpec, run_pipeline};

use crate::support::{catalog, claims_spec, key, land_receipts, opts, rows, synth, version_content};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_loads_registers_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    let first = land_receipts(&all, d, |i| i % 2 == 0);
    let spec = PipelineSpec::load(&claims_spec(d, false)).unwrap();
    let cat = catalog(d).await;

    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let r = &out.report;
    let c = &r["counts"];
    assert_eq!(c["files_loaded"], first);
    let records = c["records"].as_u64().unwrap();
    assert!(records > 0);
    assert_eq!(
        records,
        c["loaded"].as_u64().unwrap() + c["quarantined"].as_u64().unwrap() + c["consent_excluded"].as_u64().unwrap()
    );
    let v1 = cat.version(out.version_id.unwrap()).await.unwrap();
    assert_eq!(v1.status, VersionStatus::Pending);
    assert_eq!(v1.run_report["run_seq"], 1);
    // Every table written has the rows the report says, and is sorted by person_id.
    for (table, n) in r["rows_per_table"].as_object().unwrap() {
        let content = rows(d, "claims", table, v1.delta_versions[table]).await;
        assert_eq!(content.len() as u64, n.as_u64().unwrap(), "{table}");
    }
    assert!(r["rows_per_table"]["claim"].as_u64().unwrap() > 0);
    // Generalization: the suppressed column is NULL everywhere.
    for row in rows(d, "claims", "person", v1.delta_versions["person"]).await {
        assert_eq!(row.split('|').nth(5), Some("∅"), "secondary_medical_area_code must be suppressed");
    }
    assert!(r["reidentification"]["records"].as_u64().unwrap() > 0);
    assert_eq!(r["quality"].as_array().unwrap().len(), 2);
    assert!(r["schema_diff"].as_array().unwrap().len() > 5, "first version: every column is new");
    let before = version_content(d, &v1).await;

    // Rerun with the same inputs: nothing new, no version, tables unchanged.
    let again = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(again.version_id, None);
    assert_eq!(again.report["counts"]["files_skipped_already_loaded"], first);
    assert_eq!(cat.versions(None, Some("claims")).await.unwrap().len(), 1);
    assert_eq!(version_content(d, &v1).await, before);

    // New files arrive, plus one that is not CP932: only the new files load; the bad one is listed.
    let second = land_receipts(&all, d, |i| i % 2 == 1);
    std::fs::write(d.join("landing/receipts/broken.UKE"), "IR,1,13,1,こんにちは\r\n").unwrap();
    let out2 = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let c2 = &out2.report["counts"];
    assert_eq!(c2["files_loaded"], second);
    assert_eq!(c2["files_failed"], 1);
    assert_eq!(c2["files_skipped_already_loaded"], first);
    let failed: Vec<_> = out2.report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["error"].is_null())
        .map(|i| i["file"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].ends_with("broken.UKE"));
    assert!(out2.report["schema_diff"].as_array().unwrap().is_empty());
    let v2 = cat.version(out2.version_id.unwrap()).await.unwrap();
    // v1 is still readable as it was (time travel), and v2 = v1 + the new rows.
    assert_eq!(version_content(d, &v1).await, before);
    for (table, n) in out2.report["rows_per_table"].as_object().unwrap() {
        let old = before.get(table).map_or(0, Vec::len) as u64;
        let now = rows(d, "claims", table, v2.delta_versions[table]).await.len() as u64;
        assert_eq!(now, old + n.as_u64().unwrap(), "{table}");
    }
    // The broken file is retried (and listed again) by the next run, not marked loaded.
    let out3 = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(out3.report["counts"]["files_failed"], 1);
    let runs = cat.pipeline_runs(Some("claims-test"), 10).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.status == "succeeded" || r.status == "noop"), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_quality_rule_publishes_nothing_and_the_run_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    land_receipts(&all, d, |_| true);
    let path = claims_spec(d, false);
    let text = std::fs::read_to_string(&path).unwrap().replace("total_points >= 0", "total_points < 0");
    std::fs::write(&path, text).unwrap();
    let spec = PipelineSpec::load(&path).unwrap();
    let cat = catalog(d).await;
    let e = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap_err();
    assert!(matches!(e, niji_pipeline::PipelineError::QualityFailed(_)), "{e}");
    assert!(cat.versions(None, Some("claims")).await.unwrap().is_empty());
    let run = cat.open_run("claims-test").await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert!(run.error.unwrap().contains("points non-negative"));
    // Fixed rule: the same run (seq 1) is resumed and succeeds.
    let spec = PipelineSpec::load(&claims_spec(d, false)).unwrap();
    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(out.seq, 1);
    assert!(out.resumed);
    assert!(out.version_id.is_some());
}
