//! A pipeline writing and reading its Delta tables on a real S3-compatible server (moto, started
//! by `.ci/services` on 127.0.0.1:5055, or `NIJI_TEST_S3_ENDPOINT`). Fails when the server is
//! absent, unless `NIJI_TEST_SKIP_S3=1` (then it says so loudly).

use std::io::{Read, Write};

use niji_pipeline::lake::Lake;
use niji_pipeline::{PipelineSpec, run_pipeline};

use crate::support::{catalog, key, land_receipts, opts, rows_in, synth};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_writes_and_reads_delta_tables_on_s3() {
    let ep = endpoint();
    let bucket = format!("niji-test-{:08x}", std::process::id() ^ 0x5a5a_5a5a);
    if !create_bucket(&ep, &bucket) {
        if std::env::var("NIJI_TEST_SKIP_S3").is_ok_and(|v| v == "1") {
            eprintln!("\n**********\n*** SKIPPED S3 test: no S3 server at {ep}; NIJI_TEST_SKIP_S3=1\n**********\n");
            return;
        }
        panic!("no S3 server at {ep}: run .ci/services (moto on 127.0.0.1:5055), or set NIJI_TEST_SKIP_S3=1");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    land_receipts(&all, d, |i| i < 4);
    let text = format!(
        r#"name = "claims-s3"
dataset = "claims"

[[sources]]
name = "receipts"
format = "receipt"
url = "landing/receipts"
glob = "*.UKE"

[target]
url = "s3://{bucket}/lake"
storage_options = {{ aws_endpoint = "{ep}", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "test", aws_secret_access_key = "test" }}
"#
    );
    let path = d.join("claims-s3.toml");
    std::fs::write(&path, text).unwrap();
    let spec = PipelineSpec::load(&path).unwrap();
    let cat = catalog(d).await;
    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let v = cat.version(out.version_id.unwrap()).await.unwrap();
    let lake =
        Lake::new(spec.target.url.as_deref(), d, spec.target.storage_options.clone().into_iter().collect()).unwrap();
    let mut total = 0;
    for (table, n) in out.report["rows_per_table"].as_object().unwrap() {
        let got = rows_in(&lake, "claims", table, v.delta_versions[table]).await;
        assert_eq!(got.len() as u64, n.as_u64().unwrap(), "{table}");
        total += got.len();
    }
    assert!(total > 0);
    assert!(!d.join("lake/claims").exists(), "nothing is written to the local lake");
    // Rerun: idempotent on S3 too.
    let again = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(again.version_id, None);
}
