//! `niji-pipeline-run SPEC DATA_DIR [OUTCOME_JSON]`: run one pipeline once. A bare runner
//! without the CLI's dependencies, used by the crash-injection test (which SIGKILLs it).
//!
//! Key: hex in `NIJI_PSEUDONYM_KEY`. Catalog: `NIJI_CATALOG_URL` or `DATA_DIR/catalog.db`.
//! Lease: `NIJI_LEASE_TTL_MS` (default 30000), `NIJI_LEASE_WAIT_MS` (default 0).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn ms(var: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

async fn run(args: &[String]) -> Result<String, String> {
    let (Some(spec), Some(data_dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: niji-pipeline-run SPEC DATA_DIR [OUTCOME_JSON]".into());
    };
    let spec = niji_pipeline::PipelineSpec::load(&PathBuf::from(spec)).map_err(|e| e.to_string())?;
    let data_dir = PathBuf::from(data_dir);
    let key = niji_pseudo::PseudonymKey::from_env("NIJI_PSEUDONYM_KEY").map_err(|e| e.to_string())?;
    let catalog = niji_catalog::Catalog::open(&data_dir).await.map_err(|e| e.to_string())?;
    let mut opts = niji_pipeline::RunOptions::new(&data_dir);
    opts.lease_ttl = ms("NIJI_LEASE_TTL_MS", 30_000);
    opts.lease_wait = ms("NIJI_LEASE_WAIT_MS", 0);
    let outcome = niji_pipeline::run_pipeline(&spec, &catalog, &key, &opts).await.map_err(|e| e.to_string())?;
    catalog.close().await;
    serde_json::to_string_pretty(&outcome).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return ExitCode::from(3);
    };
    match rt.block_on(run(&args)) {
        Ok(json) => {
            if let Some(out) = args.get(3)
                && std::fs::write(out, json).is_err()
            {
                return ExitCode::from(4);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(out) = args.get(3) {
                let _ = std::fs::write(format!("{out}.err"), e);
            }
            ExitCode::from(1)
        }
    }
}
