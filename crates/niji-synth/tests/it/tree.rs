use niji_synth::{SynthConfig, SynthError, generate};

use crate::common::{cfg, read_tree, tree};

#[test]
fn equal_seeds_give_byte_identical_trees_and_another_seed_differs() {
    let a = read_tree(tree());
    let b_dir = tempfile::tempdir().unwrap();
    generate(&cfg(1000, 7), b_dir.path()).unwrap();
    let b = read_tree(b_dir.path());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between two runs with the same seed");
    }
    let c_dir = tempfile::tempdir().unwrap();
    generate(&cfg(1000, 8), c_dir.path()).unwrap();
    let c = read_tree(c_dir.path());
    for name in ["fhir/Patient.ndjson", "ground_truth.csv", "consent/consent.csv"] {
        assert_ne!(a[name], c[name], "{name} is the same for seeds 7 and 8");
    }
}

#[test]
fn layout_and_manifest() {
    let t = read_tree(tree());
    for f in [
        "fhir/Patient.ndjson",
        "fhir/Encounter.ndjson",
        "fhir/Condition.ndjson",
        "fhir/Observation.ndjson",
        "fhir/MedicationRequest.ndjson",
        "fhir/AllergyIntolerance.ndjson",
        "fhir/Immunization.ndjson",
        "care/care_certification.csv",
        "consent/consent.csv",
        "ground_truth.csv",
        "manifest.json",
    ] {
        assert!(t.get(f).is_some_and(|b| !b.is_empty()), "{f} missing or empty");
    }
    assert!(t.keys().any(|k| k.starts_with("fhir/bundles/") && k.ends_with(".json")));
    let re = |k: &str, prefix: &str, digits: usize, ext: &str| {
        k.strip_prefix(prefix).and_then(|r| r.strip_suffix(ext)).is_some_and(|r| {
            let (code, month) = r.split_once('_').unwrap_or(("", ""));
            code.len() == digits && month.len() == 6 && (code.to_owned() + month).bytes().all(|b| b.is_ascii_digit())
        })
    };
    assert!(t.keys().filter(|k| k.starts_with("receipts/")).all(|k| re(k, "receipts/", 7, ".UKE")));
    assert!(t.keys().filter(|k| k.starts_with("care/benefit")).all(|k| re(k, "care/benefit_", 10, ".csv")));
    assert!(t.keys().filter(|k| k.starts_with("receipts/")).count() > 20);
    let m: serde_json::Value = serde_json::from_slice(&t["manifest.json"]).unwrap();
    assert_eq!(m["persons"], 1000);
    assert_eq!(m["seed"], 7);
    assert_eq!(m["typo_rate"], 0.02);
    let receipts = t.keys().filter(|k| k.starts_with("receipts/")).count() as u64;
    assert_eq!(m["counts"]["receipts"]["files"], receipts);
    let patients = t["fhir/Patient.ndjson"].iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(m["counts"]["fhir/Patient"]["records"], patients);
    assert!(!String::from_utf8_lossy(&t["manifest.json"]).contains("time"));
}

#[test]
fn bad_configuration_and_non_empty_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = SynthConfig { persons: 0, ..SynthConfig::default() };
    assert!(matches!(generate(&bad, dir.path()), Err(SynthError::InvalidConfig { field: "persons", .. })));
    let bad = SynthConfig { typo_rate: 1.5, ..SynthConfig::default() };
    assert!(matches!(generate(&bad, dir.path()), Err(SynthError::InvalidConfig { field: "typo_rate", .. })));
    std::fs::write(dir.path().join("stale.txt"), "x").unwrap();
    let err = generate(&cfg(10, 1), dir.path()).unwrap_err();
    assert!(matches!(err, SynthError::OutputNotEmpty { .. }));
    assert!(err.to_string().contains("not empty"));
}
