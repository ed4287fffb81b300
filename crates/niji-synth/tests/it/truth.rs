use std::collections::{BTreeMap, BTreeSet};

use niji_synth::{NoiseKind, SourceIdentity, SynthConfig, source_identities};

use crate::common::{cfg, decode_cp932, ndjson, tree};

fn lines_of(path: &std::path::Path, cp932: bool) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let text = if cp932 { decode_cp932(&bytes) } else { String::from_utf8(bytes).unwrap() };
    text.lines().map(|l| l.trim_end_matches('\r').to_owned()).collect()
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[test]
fn source_identities_agree_with_ground_truth_and_the_files() {
    let ids: Vec<SourceIdentity> = source_identities(&cfg(1000, 7)).collect();
    let truth = std::fs::read_to_string(tree().join("ground_truth.csv")).unwrap();
    let mut rows = truth.lines();
    assert_eq!(rows.next(), Some("record_key,person_index"));
    let rows: Vec<(String, u64)> = rows
        .map(|l| {
            let (k, p) = l.rsplit_once(',').unwrap();
            (k.to_owned(), p.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), ids.len());
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!((&row.0, row.1), (&id.record_key, id.person_index));
    }
    let keys: BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "record keys are unique");

    let patients: BTreeMap<String, serde_json::Value> =
        ndjson("Patient.ndjson").into_iter().map(|p| (p["id"].as_str().unwrap().to_owned(), p)).collect();
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut kinds = BTreeMap::<&str, usize>::new();
    for id in &ids {
        let (kind, rest) = id.record_key.split_once(':').unwrap();
        *kinds.entry(kind).or_default() += 1;
        if kind == "fhir" {
            let p = &patients[rest.trim_start_matches("Patient/")];
            let kana = p["name"].as_array().unwrap().iter().find(|n| n["extension"][0]["valueCode"] == "SYL").unwrap();
            assert_eq!(kana["text"].as_str(), id.kana_name.as_deref());
            assert_eq!(p["birthDate"].as_str().unwrap().replace('-', ""), id.birth_date.clone().unwrap());
            let member = p["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["system"].as_str().unwrap().ends_with("memberID"));
            match (&id.insurer_number, member) {
                (Some(ins), Some(m)) => {
                    let v = m["value"].as_str().unwrap();
                    let parts: Vec<&str> = v.split(':').collect();
                    assert_eq!(parts[0], ins);
                    assert_eq!(opt(parts[1]), id.kigo);
                    assert_eq!(Some(parts[2].to_owned()), id.bango);
                    assert_eq!(parts.get(3).map(|s| (*s).to_owned()), id.branch);
                }
                (None, None) => {}
                other => panic!("identifier mismatch for {}: {other:?}", id.record_key),
            }
            continue;
        }
        let (file, line) = rest.rsplit_once(':').unwrap();
        let line: usize = line.parse().unwrap();
        let path = match kind {
            "receipt" => tree().join("receipts").join(file),
            "care" | "cert" => tree().join("care").join(file),
            "consent" => tree().join("consent").join(file),
            other => panic!("unknown record kind {other}"),
        };
        let lines =
            files.entry(path.to_string_lossy().into_owned()).or_insert_with(|| lines_of(&path, kind != "consent"));
        let f: Vec<&str> = lines[line - 1].split(',').collect();
        match kind {
            "receipt" => {
                assert_eq!(f[0], "RE");
                assert_eq!(
                    (opt(f[36]), opt(f[6]), opt(f[5])),
                    (id.kana_name.clone(), id.birth_date.clone(), id.sex.clone())
                );
                let next: Vec<&str> = lines[line].split(',').collect();
                if id.insurer_number.is_some() {
                    assert_eq!(next[0], "HO");
                    assert_eq!(
                        (opt(next[1]), opt(next[2]), opt(next[3])),
                        (id.insurer_number.clone(), id.kigo.clone(), id.bango.clone())
                    );
                }
                let sn = lines[line..]
                    .iter()
                    .take_while(|l| !l.starts_with("RE,") && !l.starts_with("GO,"))
                    .find(|l| l.starts_with("SN,"));
                assert_eq!(sn.map(|l| l.split(',').nth(6).unwrap().to_owned()), id.branch);
            }
            "care" => {
                assert_eq!(f[0], "01");
                assert_eq!(
                    (opt(f[5]), opt(f[6]), opt(f[7]), opt(f[8])),
                    (id.care_insured_number.clone(), id.kana_name.clone(), id.birth_date.clone(), id.sex.clone())
                );
            }
            "cert" => {
                assert_eq!(
                    (opt(f[0]), opt(f[1]), opt(f[2]), opt(f[3]), opt(f[4])),
                    (
                        id.care_insurer_number.clone(),
                        id.care_insured_number.clone(),
                        id.kana_name.clone(),
                        id.birth_date.clone(),
                        id.sex.clone()
                    )
                );
            }
            _ => {
                let card = !f[0].is_empty() && !f[1].is_empty() && !f[2].is_empty();
                assert!(card || !f[4].is_empty(), "consent line {line}: neither card nor kana");
                assert_eq!(
                    (opt(f[0]), opt(f[1]), opt(f[2]), opt(f[3]), opt(f[4]), opt(f[5]), opt(f[6])),
                    (
                        id.insurer_number.clone(),
                        id.kigo.clone(),
                        id.bango.clone(),
                        id.branch.clone(),
                        id.kana_name.clone(),
                        id.birth_date.clone(),
                        id.sex.clone()
                    )
                );
            }
        }
    }
    for k in ["fhir", "receipt", "care", "cert", "consent"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "no {k} record in the ground truth");
    }
    // The same person appears across sources.
    let mut sources = BTreeMap::<u64, BTreeSet<&str>>::new();
    for id in &ids {
        sources.entry(id.person_index).or_default().insert(id.record_key.split(':').next().unwrap());
    }
    assert!(sources.values().filter(|s| s.contains("fhir") && s.contains("receipt")).count() > 20);
    assert!(sources.values().any(|s| s.len() >= 4));
    let noise: BTreeSet<String> = ids.iter().map(|i| format!("{:?}", i.noise)).collect();
    assert_eq!(noise.len(), 3, "none, variant and typo records all occur: {noise:?}");
}

/// Folds the conventions that normalization removes (width, hiragana, spaces), not typos.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '　'))
        .map(|c| match c {
            '０'..='９' | 'Ａ'..='Ｚ' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            'ぁ'..='ゖ' => char::from_u32(c as u32 + 0x60).unwrap(),
            _ => c,
        })
        .collect()
}

#[test]
fn without_noise_a_persons_records_agree_and_with_typos_they_do_not() {
    let quiet = SynthConfig { persons: 300, seed: 3, typo_rate: 0.0, variant_rate: 0.0, ..SynthConfig::default() };
    let mut seen = BTreeMap::<u64, (String, String, Option<String>)>::new();
    for id in source_identities(&quiet) {
        assert_eq!(id.noise, NoiseKind::None);
        let kana = fold(id.kana_name.as_deref().unwrap_or(""));
        let key = (id.birth_date.clone().unwrap(), id.sex.clone().unwrap(), id.bango.as_deref().map(fold));
        let e = seen.entry(id.person_index).or_insert_with(|| (key.0.clone(), kana.clone(), None));
        assert_eq!(e.0, key.0, "{}", id.record_key);
        if !kana.is_empty() {
            assert_eq!(e.1, kana, "{}", id.record_key);
        }
        if let Some(b) = key.2 {
            assert_eq!(e.2.get_or_insert(b.clone()), &b, "{}", id.record_key);
        }
    }
    let noisy = SynthConfig { typo_rate: 1.0, ..quiet };
    let quiet_ids: Vec<SourceIdentity> = source_identities(&quiet).collect();
    let noisy_ids: Vec<SourceIdentity> = source_identities(&noisy).collect();
    assert_eq!(quiet_ids.len(), noisy_ids.len(), "noise changes values, not records");
    assert!(noisy_ids.iter().all(|i| i.noise == NoiseKind::Typo));
    let changed = quiet_ids
        .iter()
        .zip(&noisy_ids)
        .filter(|(a, b)| a.kana_name != b.kana_name || a.birth_date != b.birth_date || a.bango != b.bango)
        .count();
    assert!(changed * 10 > quiet_ids.len() * 9, "{changed} of {}", quiet_ids.len());
}
