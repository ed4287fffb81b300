//! A pipeline reading its sources from and writing its Delta tables to a real S3-compatible
//! server (moto, started by `.ci/services` on 127.0.0.1:5055, or `NIJI_TEST_S3_ENDPOINT`).
//! Fails when the server is absent, unless `NIJI_TEST_SKIP_S3=1` (then it says so loudly).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use niji_pipeline::lake::Lake;
use niji_pipeline::{PipelineSpec, run_pipeline};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::support::{catalog, claims_spec, key, land_receipts, opts, rows_in, synth, version_content};

fn endpoint() -> String {
    std::env::var("NIJI_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".to_owned())
}

/// Create a bucket with a plain HTTP PUT (moto accepts unsigned requests). False when no server answers.
fn create_bucket(endpoint: &str, bucket: &str) -> bool {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut s) = std::net::TcpStream::connect(host) else { return false };
    let req = format!("PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "bucket creation: {resp}");
    true
}

fn s3_options(ep: &str) -> String {
    format!(
        r#"{{ aws_endpoint = "{ep}", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "test", aws_secret_access_key = "test" }}"#
    )
}

fn bucket_store(ep: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    let s = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(ep)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    Arc::new(s)
}

/// Upload the receipt files of a local folder under `prefix/`; returns their names, sorted.
async fn upload_dir(store: &dyn ObjectStore, dir: &Path, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        store.put(&ObjectPath::from(format!("{prefix}/{name}")), std::fs::read(&p).unwrap().into()).await.unwrap();
        names.push(name);
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_reads_its_sources_from_s3_and_writes_delta_tables_there() {
    let ep = endpoint();
    // Unique per run: the landing zone must start empty.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let bucket = format!("niji-test-{:08x}-{nanos:08x}", std::process::id());
    if !create_bucket(&ep, &bucket) {
        if std::env::var("NIJI_TEST_SKIP_S3").is_ok_and(|v| v == "1") {
            eprintln!("\n**********\n*** SKIPPED S3 test: no S3 server at {ep}; NIJI_TEST_SKIP_S3=1\n**********\n");
            return;
        }
        panic!("no S3 server at {ep}: run .ci/services (moto on 127.0.0.1:5055), or set NIJI_TEST_SKIP_S3=1");
    }
    let store = bucket_store(&ep, &bucket);

    // The reference: the same files loaded from a local folder into a local lake.
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let all = synth(l);
    assert_eq!(land_receipts(&all, l, |i| i < 4), 4);
    let lspec = PipelineSpec::load(&claims_spec(l, false)).unwrap();
    let lcat = catalog(l).await;
    let lout = run_pipeline(&lspec, &lcat, &key(), &opts(l)).await.unwrap();
    let expected = version_content(l, &lcat.version(lout.version_id.unwrap()).await.unwrap()).await;

    // The landing zone on S3: the same four files, a file that is not CP932, and objects the
    // glob must not pick (another extension, a subfolder, a sibling prefix).
    let names = upload_dir(store.as_ref(), &l.join("landing/receipts"), "landing/receipts").await;
    assert_eq!(names.len(), 4);
    let put = |k: &str, b: &[u8]| {
        let (store, k, b) = (store.clone(), ObjectPath::from(k), b.to_vec());
        async move { store.put(&k, b.into()).await.unwrap() }
    };
    put("landing/receipts/broken.UKE", "IR,1,13,1,こんにちは\r\n".as_bytes()).await;
    put("landing/receipts/notes.txt", b"not a receipt").await;
    put("landing/receipts/old/again.UKE", b"not picked").await;
    put("landing/receipts-archive/x.UKE", b"not picked").await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let opts_s3 = s3_options(&ep);
    let text = format!(
        r#"name = "claims-s3"
dataset = "claims"

[[sources]]
name = "receipts"
format = "receipt"
url = "s3://{bucket}/landing/receipts"
glob = "*.UKE"
storage_options = {opts_s3}

[generalization]
suppress = ["person.secondary_medical_area_code"]

[target]
url = "s3://{bucket}/lake"
storage_options = {opts_s3}
"#
    );
    let path = d.join("claims-s3.toml");
    std::fs::write(&path, text).unwrap();
    let spec = PipelineSpec::load(&path).unwrap();
    let cat = catalog(d).await;
    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let c = &out.report["counts"];
    assert_eq!(c["files_planned"], 5, "{c}");
    assert_eq!(c["files_loaded"], 4, "{c}");
    assert_eq!(c["files_failed"], 1, "{c}");
    assert_eq!(c["records"], lout.report["counts"]["records"]);
    assert_eq!(c["loaded"], lout.report["counts"]["loaded"]);
    assert_eq!(c["quarantined"], lout.report["counts"]["quarantined"]);
    // Inputs are named by their object URL, the bad one with its error.
    let prefix = format!("s3://{bucket}/landing/receipts/");
    let inputs = out.report["inputs"].as_array().unwrap();
    let mut listed: Vec<&str> = inputs.iter().map(|i| i["file"].as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut want: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    want.push(format!("{prefix}broken.UKE"));
    want.sort();
    assert_eq!(listed, want);
    let broken = inputs.iter().find(|i| i["file"].as_str().unwrap().ends_with("broken.UKE")).unwrap();
    assert!(broken["error"].as_str().is_some_and(|e| !e.is_empty()), "{broken}");
    assert!(inputs.iter().filter(|i| i["error"].is_null()).all(|i| i["sha256"].as_str().is_some()));
    // Quarantine entries name the object too, never the staging copy.
    let q = std::fs::read_to_string(d.join("runs/claims-s3/1/receipts/_quarantine.ndjson")).unwrap();
    for line in q.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(e["file"].as_str().unwrap().starts_with(&prefix), "{line}");
    }
    assert!(!d.join("runs/claims-s3/1/receipts/_download").exists(), "staging copies are removed");

    // The Delta tables on S3 hold exactly what the local run loaded from the same files.
    let v = cat.version(out.version_id.unwrap()).await.unwrap();
    let lake =
        Lake::new(spec.target.url.as_deref(), d, spec.target.storage_options.clone().into_iter().collect()).unwrap();
    let mut got = std::collections::BTreeMap::new();
    for (table, dv) in &v.delta_versions {
        got.insert(table.clone(), rows_in(&lake, "claims", table, *dv).await);
    }
    assert_eq!(got, expected);
    assert!(got.values().map(Vec::len).sum::<usize>() > 0);
    assert!(!d.join("lake/claims").exists(), "nothing is written to the local lake");

    // Rerun: the files are tracked by checksum; nothing new, no version (the broken one is retried).
    let again = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(again.version_id, None);
    assert_eq!(again.report["counts"]["files_skipped_already_loaded"], 4);
    assert_eq!(again.report["counts"]["files_failed"], 1);

    // Incremental: a new file loads; a renamed copy of a loaded one is skipped by its digest.
    let more = land_receipts(&all, l, |i| i == 4);
    assert_eq!(more, 1);
    let mut new_names = upload_dir(store.as_ref(), &l.join("landing/receipts"), "landing/receipts").await;
    new_names.retain(|n| !names.contains(n));
    assert_eq!(new_names.len(), 1);
    let copy =
        store.get(&ObjectPath::from(format!("landing/receipts/{}", names[0]))).await.unwrap().bytes().await.unwrap();
    put("landing/receipts/renamed-copy.UKE", &copy[..]).await;
    let third = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let c3 = &third.report["counts"];
    assert_eq!(c3["files_loaded"], 1, "{c3}");
    assert_eq!(c3["files_skipped_already_loaded"], 5, "{c3}");
    let loaded = cat.loaded_files("claims-s3").await.unwrap();
    assert_eq!(loaded.len(), 5);
    assert!(loaded.iter().all(|f| f.path.starts_with(&prefix)), "{loaded:?}");
    let v3 = cat.version(third.version_id.unwrap()).await.unwrap();
    let claims = rows_in(&lake, "claims", "claim", v3.delta_versions["claim"]).await;
    assert_eq!(
        claims.len() as u64,
        expected["claim"].len() as u64 + third.report["rows_per_table"]["claim"].as_u64().unwrap()
    );
}
