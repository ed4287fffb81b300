use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{fixtures, json, ndjson, read_tree, tree};

fn systems(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(s)) = m.get("system") {
                out.insert(s.clone());
            }
            m.values().for_each(|x| systems(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| systems(x, out)),
        _ => {}
    }
}

fn fixture(name: &str) -> Value {
    json(&fixtures().join("jp-clins").join(name))
}

fn coding_systems(resources: &[Value]) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    resources.iter().for_each(|r| systems(r, &mut s));
    s
}

#[test]
fn patients_use_the_jp_clins_identifier_and_kana_name_shape() {
    let fx = fixture("Patient-Example-JP-Patient-eCS-MAKINO.json");
    let system = fx["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["system"].as_str().unwrap())
        .find(|s| s.ends_with("JP_Insurance_memberID"))
        .unwrap();
    let fx_kana = fx["name"].as_array().unwrap().iter().find(|n| n["extension"][0]["valueCode"] == "SYL").unwrap();
    let patients = ndjson("Patient.ndjson");
    assert!(patients.len() > 50);
    let mut with_card = 0;
    for p in &patients {
        assert_eq!(p["resourceType"], "Patient");
        if let Some(id) = p["identifier"].as_array().unwrap().iter().find(|i| i["system"] == system) {
            with_card += 1;
            let v = id["value"].as_str().unwrap();
            let parts: Vec<&str> = v.split(':').collect();
            assert!(matches!(parts.len(), 3 | 4), "{v}");
            assert!(parts[0].len() == 8 && parts[0].bytes().all(|b| b.is_ascii_digit()), "insurer number {v}");
        }
        let kana = p["name"].as_array().unwrap().iter().find(|n| n["extension"][0]["valueCode"] == "SYL").unwrap();
        assert_eq!(kana["extension"][0]["url"], fx_kana["extension"][0]["url"]);
        assert!(kana["family"].is_string() && kana["given"][0].is_string());
        assert!(matches!(p["gender"].as_str(), Some("male" | "female")));
        assert_eq!(p["birthDate"].as_str().unwrap().len(), 10);
        assert!(p["address"][0]["postalCode"].as_str().unwrap().len() == 8);
    }
    assert!(with_card * 10 > patients.len() * 9, "most patients carry the insurance identifier");
}

#[test]
fn resources_use_the_fixture_code_systems() {
    let cond_fx = coding_systems(&[fixture("Condition-Example-JP-Condition-eCS-02.json")]);
    let obs_fx = coding_systems(&[fixture("Observation-Example-JP-Obs-LabResult-eCS-K.json")]);
    let med_fx = coding_systems(&[fixture("MedicationRequest-Example-JP-MedReq-TID-01.json")]);
    let conds = ndjson("Condition.ndjson");
    let obs = ndjson("Observation.ndjson");
    let meds = ndjson("MedicationRequest.ndjson");
    let medis = "http://medis.or.jp/CodeSystem/master-disease-keyNumber";
    let icd = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full";
    let jlac = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits";
    let hot9 = "http://medis.or.jp/CodeSystem/master-HOT9";
    let yj = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
    assert!(cond_fx.contains(medis) && cond_fx.contains(icd) && obs_fx.contains(jlac));
    assert!(med_fx.contains(hot9) && med_fx.contains(yj));
    let has = |r: &Value, sys: &str, len: Option<usize>| {
        r["code"].get("coding").or(r["medicationCodeableConcept"].get("coding")).and_then(Value::as_array).is_some_and(
            |c| {
                c.iter()
                    .any(|c| c["system"] == sys && len.is_none_or(|n| c["code"].as_str().is_some_and(|s| s.len() == n)))
            },
        )
    };
    assert!(!conds.is_empty() && conds.iter().all(|c| has(c, medis, Some(8)) && has(c, icd, None)));
    assert!(!obs.is_empty() && obs.iter().all(|o| has(o, jlac, Some(17))));
    assert!(!meds.is_empty() && meds.iter().all(|m| has(m, hot9, Some(9)) && has(m, yj, Some(12))));
    // Lab values with units, and some infection tests with qualitative results.
    assert!(obs.iter().filter(|o| o["valueQuantity"]["unit"].is_string()).count() > obs.len() / 2);
    assert!(obs.iter().any(|o| o["valueCodeableConcept"]["text"].is_string()));
    // Every shared coding system of these resources is one the fixtures use or a known one.
    let allergies = ndjson("AllergyIntolerance.ndjson");
    assert!(allergies.iter().any(|a| a["category"][0] == "medication"));
    let med_allergy_fx = fixture("AllergyIntolerance-Example-JP-AllergyIntolerance-eCS-03.json");
    let fx_sys = med_allergy_fx["code"]["coding"][0]["system"].as_str().unwrap();
    assert!(
        allergies
            .iter()
            .filter(|a| a["category"][0] == "medication")
            .all(|a| a["code"]["coding"][0]["system"] == fx_sys)
    );
    assert!(!ndjson("Immunization.ndjson").is_empty());
}

#[test]
fn references_resolve_and_patients_are_per_facility() {
    let patients: BTreeSet<String> =
        ndjson("Patient.ndjson").iter().map(|p| format!("Patient/{}", p["id"].as_str().unwrap())).collect();
    let encounters: BTreeSet<String> =
        ndjson("Encounter.ndjson").iter().map(|e| format!("Encounter/{}", e["id"].as_str().unwrap())).collect();
    for file in ["Encounter", "Condition", "Observation", "MedicationRequest", "AllergyIntolerance", "Immunization"] {
        for r in ndjson(&format!("{file}.ndjson")) {
            let subject = r.get("subject").or(r.get("patient")).unwrap()["reference"].as_str().unwrap().to_owned();
            assert!(patients.contains(&subject), "{file}: dangling {subject}");
            if let Some(e) = r.get("encounter") {
                assert!(encounters.contains(e["reference"].as_str().unwrap()), "{file}: dangling encounter");
            }
        }
    }
    // Ground truth: some person has several Patient resources (one per hospital).
    let truth = std::fs::read_to_string(tree().join("ground_truth.csv")).unwrap();
    let mut per_person = std::collections::BTreeMap::<&str, usize>::new();
    for l in truth.lines().filter(|l| l.starts_with("fhir:Patient/")) {
        *per_person.entry(l.rsplit(',').next().unwrap()).or_default() += 1;
    }
    assert!(per_person.values().any(|n| *n > 1));
}

#[test]
fn document_bundles_follow_jp_clins() {
    let fx = fixture("Bundle-Bundle-CLINS-PCS-Example-01.json");
    let doc_system = fx["entry"][0]["resource"]["type"]["coding"][0]["system"].as_str().unwrap().to_owned();
    let bundles: Vec<Value> = read_tree(tree())
        .into_iter()
        .filter(|(k, _)| k.starts_with("fhir/bundles/"))
        .map(|(_, b)| serde_json::from_slice(&b).unwrap())
        .collect();
    assert!(!bundles.is_empty());
    let mut types = BTreeSet::new();
    for b in &bundles {
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], fx["type"]);
        let entries = b["entry"].as_array().unwrap();
        let comp = &entries[0]["resource"];
        assert_eq!(comp["resourceType"], "Composition");
        assert_eq!(comp["type"]["coding"][0]["system"], doc_system.as_str());
        types.insert(comp["type"]["coding"][0]["code"].as_str().unwrap().to_owned());
        let urls: BTreeSet<&str> = entries.iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
        assert!(urls.iter().all(|u| u.starts_with("urn:uuid:") && u.len() == 45));
        assert_eq!(urls.len(), entries.len());
        let mut refs = Vec::new();
        fn collect<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(s)) = m.get("reference") {
                        out.push(s);
                    }
                    m.values().for_each(|x| collect(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        collect(b, &mut refs);
        for r in refs {
            assert!(urls.contains(r), "bundle reference {r} does not resolve");
        }
        assert!(entries.iter().any(|e| e["resource"]["resourceType"] == "Patient"));
    }
    assert!(types.iter().all(|t| ["57133-1", "18842-5", "53576-5"].contains(&t.as_str())), "{types:?}");
    assert!(types.len() >= 2, "{types:?}");
}
