use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use niji_synth::{SynthConfig, generate};

/// The third-party fixtures: the repository's copy (`tests/data`) or `shared/fixtures` beside
/// the repository (CI clones the repository next to `shared/`).
pub fn fixtures() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let candidates =
        [root.join("tests/data"), manifest.join("../../../shared/fixtures"), root.join("../shared/fixtures")];
    candidates
        .iter()
        .find(|p| p.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE").exists())
        .cloned()
        .unwrap_or_else(|| panic!("fixtures not found in any of {candidates:?}"))
}

pub fn cfg(persons: u64, seed: u64) -> SynthConfig {
    SynthConfig { persons, seed, ..SynthConfig::default() }
}

/// One generated tree (1000 persons, seed 7), shared by the tests of this binary.
pub fn tree() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        generate(&cfg(1000, 7), dir.path()).unwrap();
        dir
    })
    .path()
}

/// Every file under `dir`, relative path → bytes, in sorted order.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn decode_cp932(bytes: &[u8]) -> String {
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    assert!(!had_errors, "not valid CP932");
    text.into_owned()
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn ndjson(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(tree().join("fhir").join(name)).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
