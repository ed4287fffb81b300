//! Fixtures: synthetic landing zones, specs, catalogs, and table contents as sorted rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::Array;
use datafusion::prelude::SessionContext;
use niji_catalog::Catalog;
use niji_pipeline::lake::Lake;
use niji_pseudo::PseudonymKey;

/// The test key (hex), also given to the runner binary.
pub const KEY_HEX: &str = "7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";

pub fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&hex::decode(KEY_HEX).unwrap()).unwrap()
}

pub fn synth_config() -> niji_synth::SynthConfig {
    niji_synth::SynthConfig { persons: 60, months: 3, ..Default::default() }
}

/// Generate synthetic sources into `<data_dir>/all` (the pool tests copy files from).
pub fn synth(data_dir: &Path) -> PathBuf {
    let all = data_dir.join("all");
    niji_synth::generate(&synth_config(), &all).unwrap();
    all
}

/// Copy receipt files whose index (sorted) satisfies `pick` into `<data_dir>/landing/receipts`.
pub fn land_receipts(all: &Path, data_dir: &Path, pick: impl Fn(usize) -> bool) -> usize {
    let dst = data_dir.join("landing/receipts");
    std::fs::create_dir_all(&dst).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(all.join("receipts")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        if pick(i) {
            std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
            n += 1;
        }
    }
    n
}

/// A claims pipeline over `landing/receipts` with the consent registry `landing/consent.csv`.
pub fn claims_spec(data_dir: &Path, consent: bool) -> PathBuf {
    let consent = if consent {
        "[consent]\nregistry = \"landing/consent.csv\"\npurpose = \"research\"\npolicy = \"opt-out\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"name = "claims-test"
dataset = "claims"
schedule = "0 3 * * *"

[[sources]]
name = "receipts"
format = "receipt"
url = "landing/receipts"
glob = "*.UKE"

{consent}
[generalization]
suppress = ["person.secondary_medical_area_code"]

[[quality]]
name = "points non-negative"
table = "claim"
check = "total_points >= 0"
action = "fail"

[[quality]]
name = "service month plausible"
table = "condition_occurrence"
check = "condition_start_date >= DATE '1900-01-01'"
"#
    );
    let p = data_dir.join("claims-test.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub async fn catalog(data_dir: &Path) -> Catalog {
    let c = Catalog::open_default(data_dir).await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
    let defs = niji_catalog::DatasetDef::load_dir(&dir).unwrap();
    c.load_datasets("test", &defs).await.unwrap();
    c
}

/// Every row of a table at a version, each row rendered as text, sorted.
pub async fn rows(data_dir: &Path, dataset: &str, table: &str, version: i64) -> Vec<String> {
    let lake = Lake::new(None, data_dir, Default::default()).unwrap();
    rows_in(&lake, dataset, table, version).await
}

/// As [`rows`], in any lake.
pub async fn rows_in(lake: &Lake, dataset: &str, table: &str, version: i64) -> Vec<String> {
    let t = lake.open_version(dataset, table, version).await.unwrap();
    let ctx = SessionContext::new();
    lake.register(&ctx, "t", &t).await.unwrap();
    let batches = ctx.sql("SELECT * FROM t").await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Arc<dyn Array>> =
            b.columns().iter().map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap()).collect();
        for i in 0..b.num_rows() {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| {
                    let s = c.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
                    if s.is_null(i) { "∅".to_owned() } else { s.value(i).to_owned() }
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

/// All tables of a registered dataset version, as sorted rows.
pub async fn version_content(
    data_dir: &Path,
    v: &niji_catalog::DatasetVersion,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for (t, dv) in &v.delta_versions {
        out.insert(t.clone(), rows(data_dir, &v.dataset, t, *dv).await);
    }
    out
}

pub fn opts(data_dir: &Path) -> niji_pipeline::RunOptions {
    niji_pipeline::RunOptions::new(data_dir)
}
