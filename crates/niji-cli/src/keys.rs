//! Where the pseudonymization key comes from: `--key-file`, else `NIJI_PSEUDONYM_KEY` (hex),
#![allow(dead_code)] // Used as the ingest commands land.
//! else the demo key, with a warning. The demo key is public (it is in this file): data
//! pseudonymized with it is only as safe as a plain hash, so real deployments must set a key.

use std::path::Path;

use anyhow::Context;
use niji_pseudo::PseudonymKey;

/// Environment variable holding the key as hex.
pub const KEY_ENV: &str = "NIJI_PSEUDONYM_KEY";

/// The demo key's bytes: fixed so quickstart runs are reproducible.
const DEMO_KEY: &[u8; 32] = b"niji-demo-key-not-for-production";

/// Load the pipeline key.
pub fn load(key_file: Option<&Path>) -> anyhow::Result<PseudonymKey> {
    if let Some(path) = key_file {
        return PseudonymKey::from_file(path).with_context(|| "loading --key-file".to_owned());
    }
    if std::env::var_os(KEY_ENV).is_some() {
        return PseudonymKey::from_env(KEY_ENV).context("loading the key from the environment");
    }
    tracing::warn!("no --key-file and no {KEY_ENV}: using the public demo key; do not use it for real data");
    Ok(PseudonymKey::from_bytes(DEMO_KEY)?)
}
