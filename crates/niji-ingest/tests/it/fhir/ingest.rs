//! `niji ingest fhir` on the third-party fixtures (JP-CLINS, Synthea) and on bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use niji_ingest::fhir::{FhirIngestOptions, ingest};
use niji_ingest::report::{IngestReport, Quarantined};
use niji_pseudo::PseudonymKey;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn data(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(dir)
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data(dir))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "ndjson"))
        .collect();
    v.sort();
    v
}

fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[42u8; 32]).expect("key")
}

fn run(inputs: Vec<PathBuf>, out: &Path) -> IngestReport {
    let opts = FhirIngestOptions { inputs, out: out.to_owned(), batch_rows: 2 };
    let report = ingest(&opts, &key()).expect("ingest");
    report.check_balanced().expect("balanced");
    let on_disk: IngestReport =
        serde_json::from_slice(&std::fs::read(out.join("_report.json")).expect("report file")).expect("report json");
    assert_eq!(on_disk, report);
    report
}

fn quarantine(out: &Path) -> Vec<Quarantined> {
    std::fs::read_to_string(out.join("_quarantine.ndjson"))
        .expect("quarantine file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry"))
        .collect()
}

/// Every cell of every Parquet table under `out`, as text, per table.
fn all_cells(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut cells = BTreeMap::new();
    for e in std::fs::read_dir(out).expect("out") {
        let p = e.expect("entry").path();
        if !p.is_dir() {
            continue;
        }
        let table = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let f = std::fs::File::open(p.join("part-00000.parquet")).expect("parquet file");
        let schema_ok = niji_cdm::table(&table).expect("a CDM table").schema();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).expect("reader").build().expect("build");
        let v: &mut Vec<String> = cells.entry(table).or_default();
        for b in reader {
            let b = b.expect("batch");
            assert_eq!(b.schema().fields(), schema_ok.fields(), "CDM schema");
            for c in b.columns() {
                for i in 0..c.len() {
                    v.push(arrow::util::display::array_value_to_string(c, i).expect("display"));
                }
            }
        }
    }
    cells
}

/// Identifier-bearing strings of the fixtures: none may reach an output file.
const JP_IDENTIFIERS: &[&str] = &[
    "00012345",
    "あいう",
    "１８７",
    "牧野",
    "マキノ",
    "ランマン",
    "1930-06-28",
    "19300628",
    "高知市",
    "781-8125",
    "000999739",
    "Example-JP-Patient-eCS-MAKINO",
    "十二指腸潰瘍",
    "胃癌",
    "ローカルコード",
];

fn assert_no_identifiers(out: &Path, needles: &[&str]) {
    for (table, cells) in all_cells(out) {
        for c in &cells {
            for n in needles {
                assert!(!c.contains(n), "table {table} holds an identifier-bearing value");
            }
        }
    }
    // The quarantine and the report name input files as given by the operator (a Synthea
    // file name carries the synthetic patient's name); every other field is checked.
    fn strip_files(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("file");
                m.values_mut().for_each(strip_files);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_files),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(out.join("_quarantine.ndjson")).expect("file");
    let report = std::fs::read_to_string(out.join("_report.json")).expect("file");
    for doc in text.lines().chain(std::iter::once(report.as_str())) {
        let mut v: serde_json::Value = serde_json::from_str(doc).expect("json");
        strip_files(&mut v);
        let flat = v.to_string();
        for n in needles {
            assert!(!flat.contains(n), "quarantine or report holds an identifier-bearing value");
        }
    }
}

#[test]
fn jp_clins_fixtures_load_with_quality_warnings() {
    let dir = tempfile::tempdir().expect("tmp");
    let inputs = files("jp-clins");
    assert_eq!(inputs.len(), 16);
    let report = run(inputs, dir.path());
    assert_eq!(report.records, 14 + 5 + 8); // single resources + two Bundles
    // The PCS Bundle is a care-plan document (56447-6): its Composition is not one of the
    // three document types and its CarePlan has no CDM table. Everything else loads, the
    // deliberately non-conformant ErrorExample included (with warnings).
    assert_eq!(report.quarantined, 2, "{:?}", report.quarantined_by_reason);
    assert_eq!(report.quarantined_by_reason.get("unmapped_resource_type"), Some(&1));
    assert_eq!(report.quarantined_by_reason.get("out_of_scope"), Some(&1));
    let q = quarantine(dir.path());
    let kinds: Vec<_> = q.iter().map(|e| (e.record_type.as_deref(), e.entry.is_some())).collect();
    assert_eq!(kinds, vec![(Some("Composition"), true), (Some("CarePlan"), true)]);
    assert!(report.warnings.get("missing_local_code").is_some_and(|n| *n >= 1));
    assert!(report.warnings.get("unresolved_reference").is_some_and(|n| *n >= 1));
    let rows = &report.rows_per_table;
    assert_eq!(rows.get("person"), Some(&5)); // 3 Patient files + 1 per Bundle
    assert_eq!(rows.get("measurement"), Some(&8)); // 4 Observation files + 4 in the lab Bundle
    assert_eq!(rows.get("condition_occurrence"), Some(&4));
    assert_eq!(rows.get("observation"), Some(&3));
    assert_eq!(rows.get("drug_exposure"), Some(&2));
    assert!(rows.get("visit_occurrence").is_some_and(|n| *n >= 1));
    assert_no_identifiers(dir.path(), JP_IDENTIFIERS);

    let cells = all_cells(dir.path());
    // MAKINO is one person: the insurance id links the Patient file, the Bundles and the
    // resources that name their subject only by that identifier (ID1, with kana ID2).
    let persons = &cells["person"];
    assert!(persons.iter().any(|c| c == "id1+id2"));
    // The allergy with category medication is a drug contraindication.
    assert!(cells["observation"].iter().any(|c| c == "allergy_medication"));
}

#[test]
fn synthea_uses_the_patient_id_fallback() {
    let dir = tempfile::tempdir().expect("tmp");
    let report = run(files("synthea"), dir.path());
    // 9 + 25 NDJSON lines (the README says 24: the last line has no newline) and 21 Bundle entries.
    assert_eq!(report.records, 9 + 25 + 21);
    assert_eq!(report.warnings.get("linkage_source_id"), Some(&10));
    assert_eq!(report.rows_per_table.get("person"), Some(&10));
    assert_eq!(report.rows_per_table.get("condition_occurrence"), Some(&(25 + 2)));
    // Claim, ExplanationOfBenefit, CareTeam, CarePlan have no CDM table.
    assert_eq!(report.quarantined_by_reason.get("unmapped_resource_type"), Some(&10));
    assert_eq!(report.quarantined, 10);
    let cells = all_cells(dir.path());
    assert!(cells["person"].iter().all(|c| c != "id1" && c != "id2"));
    assert!(cells["condition_occurrence"].iter().any(|c| c == "SNOMED"));
    assert_no_identifiers(dir.path(), &["Dino214", "Parisian75", "beff242e-580b-47c0-9844-c1a68c36c5bf"]);
}

#[test]
fn bad_records_are_quarantined_by_place_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("mixed.ndjson");
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-04-01","name":[{"text":"ヤマダ ハナコ","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}]}]}"#,
        r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full","code":"E119"}]},"onsetDateTime":"2020-01-02"}"#,
        r#"{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/nobody"}}"#,
        r#"{"resourceType":"Condition", "id": broken"#,
        r#"{"resourceType":"Condition","id":"c3","subject":{"reference":"Patient/p1"},"onsetDateTime":"02/01/2020"}"#,
        r#"{"resourceType":"Condition","id":"c4","subject":{"reference":"Patient/p1"},"onsetDateTime":12345}"#,
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"valueQuantity":{"value":"7.1"}}"#,
        r#"{"resourceType":"Basic","id":"b1"}"#,
        r#"{"id":"x"}"#,
        "",
        r#"{"resourceType":"Composition","id":"d1","subject":{"reference":"Patient/p1"},"type":{"coding":[{"system":"http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes","code":"57133-1"}]},"date":"2021-05-06","section":[{"text":{"div":"<div>紹介状本文</div>"}}]}"#,
        r#"{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://medis.or.jp/CodeSystem/master-JLAC10-17digits","code":"5E071000002399901"}]},"valueQuantity":{"value":0.1,"code":"mg/dL"},"effectiveDateTime":"2020-03-04"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).expect("write");
    let out = dir.path().join("out");
    let report = run(vec![input], &out);
    assert_eq!(report.records, 11, "the empty line is not a record");
    assert_eq!(report.loaded, 4);
    assert_eq!(report.quarantined, 7);
    let q = quarantine(&out);
    let by_line: BTreeMap<u64, (&str, Option<&str>)> =
        q.iter().map(|e| (e.line.expect("line"), (e.reason.as_str(), e.field.as_deref()))).collect();
    assert_eq!(by_line[&3], ("unresolved_subject", Some("subject")));
    assert_eq!(by_line[&4].0, "invalid_json");
    assert_eq!(by_line[&5], ("bad_date", Some("onset")));
    assert_eq!(by_line[&6], ("wrong_type", Some("onset")));
    assert_eq!(by_line[&7], ("wrong_type", Some("value_number")));
    assert_eq!(by_line[&8].0, "unmapped_resource_type");
    assert_eq!(by_line[&9].0, "not_a_resource");
    assert!(q.iter().all(|e| e.file.ends_with("mixed.ndjson")));
    let cells = all_cells(&out);
    assert!(cells["measurement"].iter().any(|c| c == "true"), "5E… is an infection test");
    assert_eq!(cells["person"].iter().filter(|c| *c == "id2").count(), 1);
    assert_no_identifiers(&out, &["ヤマダ", "1950-04-01", "紹介状本文"]);
    assert_eq!(cells["document"].iter().filter(|c| *c == "referral").count(), 1);
}

/// Consent applies per record: an opted-out Patient and every resource whose subject resolves
/// to it are consent-excluded (none is loaded, none quarantined as an unresolved subject), and
/// the report balances per resource.
#[test]
fn consent_excludes_a_patient_and_its_resources_per_record() {
    use niji_ingest::consent::{ConsentGate, ConsentRegistry};
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("consent.ndjson");
    let syl = r#""extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}]"#;
    let lines = [
        format!(
            r#"{{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-04-01","name":[{{"text":"ヤマダ ハナコ",{syl}}}],"deceasedDateTime":"2021-01-01"}}"#
        ),
        format!(
            r#"{{"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1960-05-05","name":[{{"text":"スズキ イチロウ",{syl}}}]}}"#
        ),
        r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full","code":"E119"}]},"onsetDateTime":"2020-01-02"}"#.to_owned(),
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"code":"%"},"effectiveDateTime":"2020-03-04"}"#.to_owned(),
        r#"{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2020-01-02"}}"#.to_owned(),
        r#"{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full","code":"I10"}]},"onsetDateTime":"2020-01-02"}"#.to_owned(),
        r#"{"resourceType":"Condition","id":"c3","subject":{"reference":"Patient/nobody"}}"#.to_owned(),
    ];
    std::fs::write(&input, lines.join("\n")).expect("write");

    // Without a gate: everything but the unresolved subject loads.
    let open = run(vec![input.clone()], &dir.path().join("open"));
    assert_eq!((open.records, open.loaded, open.quarantined, open.consent_excluded), (7, 6, 1, 0));

    let registry = ConsentRegistry::parse(
        Path::new("consent.csv"),
        "insurer_number,kigo,bango,branch,kana_name,birth_date,sex,purpose,status,effective_date\n\
         ,,,,ヤマダ ハナコ,1950-04-01,2,research,opt-out,2020-01-01\n",
        &key(),
    )
    .expect("registry");
    let as_of = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    let gate = ConsentGate { registry, purpose: "research".into(), as_of };
    let out = dir.path().join("gated");
    let opts = FhirIngestOptions { inputs: vec![input.clone()], out: out.clone(), batch_rows: 2 };
    let report = niji_ingest::fhir::ingest_with_consent(&opts, &key(), Some(&gate)).expect("ingest");
    report.check_balanced().expect("balanced");
    // p1, c1, o1 and e1 are the opted-out person's records; p2 and c2 load; c3 is quarantined.
    assert_eq!(report.records, 7);
    assert_eq!(report.consent_excluded, 4, "{report:?}");
    assert_eq!(report.loaded, 2);
    assert_eq!(report.quarantined, 1);
    assert_eq!(report.quarantined_by_reason.get("unresolved_subject"), Some(&1));
    assert_eq!(report.inputs[0].consent_excluded, 4);
    assert_eq!(report.warnings.get("consent_excluded_fhir_opted_out"), Some(&4));
    let rows = &report.rows_per_table;
    assert_eq!(rows.get("person"), Some(&1));
    assert_eq!(rows.get("condition_occurrence"), Some(&1));
    assert_eq!(rows.get("death").copied().unwrap_or(0), 0);
    assert_eq!(rows.get("measurement").copied().unwrap_or(0), 0);
    assert_eq!(rows.get("visit_occurrence").copied().unwrap_or(0), 0);
    let on_disk: IngestReport =
        serde_json::from_slice(&std::fs::read(out.join("_report.json")).expect("report file")).expect("json");
    assert_eq!(on_disk, report);
    assert!(quarantine(&out).iter().all(|q| q.reason == "unresolved_subject"));
    assert_no_identifiers(&out, &["ヤマダ", "スズキ", "1950-04-01", "1960-05-05"]);

    // The same registry for another purpose excludes nothing.
    let gate = ConsentGate { purpose: "public-health".into(), ..gate };
    let opts = FhirIngestOptions { out: dir.path().join("other"), ..opts };
    let report = niji_ingest::fhir::ingest_with_consent(&opts, &key(), Some(&gate)).expect("ingest");
    assert_eq!((report.loaded, report.consent_excluded), (6, 0));
}

/// A Patient quarantined for a field checked after linkage (here the death date) leaves no
/// `person` row behind.
#[test]
fn a_quarantined_patient_writes_no_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("p.ndjson");
    std::fs::write(
        &input,
        r#"{"resourceType":"Patient","id":"p9","gender":"male","birthDate":"1970-01-01","deceasedDateTime":"01/02/2020"}"#,
    )
    .expect("write");
    let report = run(vec![input], dir.path());
    assert_eq!((report.records, report.quarantined), (1, 1));
    assert_eq!(report.quarantined_by_reason.get("bad_date"), Some(&1));
    assert_eq!(report.rows_per_table.get("person").copied().unwrap_or(0), 0);
}

/// A resource quarantined for a field read after its contained Encounter was mapped leaves no
/// `visit_occurrence` row behind: every field is checked before the visit is written.
#[test]
fn a_quarantined_resource_writes_no_contained_visit() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("v.ndjson");
    let enc = r##""contained":[{"resourceType":"Encounter","id":"v1","status":"finished","class":{"code":"AMB"},"period":{"start":"2020-01-02"}}],"encounter":{"reference":"#v1"}"##;
    let subject = r#""subject":{"reference":"Patient/p1"}"#;
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-04-01"}"#.to_owned(),
        // Each fails on a field the mapping reads after the encounter reference.
        format!(
            r#"{{"resourceType":"Condition","id":"c1",{enc},{subject},"onsetDateTime":"2020-01-02","abatementDateTime":"01/02/2020"}}"#
        ),
        format!(
            r#"{{"resourceType":"Observation","id":"o1",{enc},{subject},"effectiveDateTime":"2020-01-02","valueQuantity":{{"value":1,"code":5}}}}"#
        ),
        format!(
            r#"{{"resourceType":"MedicationRequest","id":"m1",{enc},{subject},"authoredOn":"2020-01-02","dispenseRequest":{{"quantity":{{"value":"x"}}}}}}"#
        ),
        // The same contained Encounter under a resource that loads: one visit.
        format!(r#"{{"resourceType":"Condition","id":"c2",{enc},{subject},"onsetDateTime":"2020-01-02"}}"#),
    ];
    std::fs::write(&input, lines.join("\n")).expect("write");
    let out = dir.path().join("out");
    let report = run(vec![input.clone()], &out);
    assert_eq!((report.records, report.loaded, report.quarantined), (5, 2, 3), "{report:?}");
    assert_eq!(report.quarantined_by_reason.get("bad_date"), Some(&1));
    assert_eq!(report.quarantined_by_reason.get("wrong_type"), Some(&2));
    let fields: Vec<Option<String>> = quarantine(&out).into_iter().map(|q| q.field).collect();
    assert_eq!(fields, [Some("abatement".into()), Some("unit".into()), Some("quantity".into())]);
    assert_eq!(report.rows_per_table.get("condition_occurrence"), Some(&1));
    assert_eq!(report.rows_per_table.get("visit_occurrence"), Some(&1), "only c2's visit");
    // Without the loading Condition, no visit at all.
    std::fs::write(&input, lines[..4].join("\n")).expect("write");
    let report = run(vec![input], &dir.path().join("out2"));
    assert_eq!((report.loaded, report.quarantined), (1, 3));
    assert_eq!(report.rows_per_table.get("visit_occurrence").copied().unwrap_or(0), 0);
}

/// The thread count changes nothing in the outputs: the same rows in the same order, the same
/// quarantine entries and the same report, on the fixtures and on bad input (NDJSON is read on
/// a second thread with 2, documents are not).
#[test]
fn threads_do_not_change_the_outputs() {
    let dir = tempfile::tempdir().expect("tmp");
    let mixed = dir.path().join("mixed.ndjson");
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-04-01"}"#.to_owned(),
        r#"{"resourceType":"Condition", "id": broken"#.to_owned(),
        r#"{"id":"x"}"#.to_owned(),
        r#"{"resourceType":"Basic","id":"b1"}"#.to_owned(),
    ]
    .into_iter()
    .chain((0..1000).map(|i| {
        format!(
            r#"{{"resourceType":"Observation","id":"o{i}","subject":{{"reference":"Patient/p{}"}},"code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4"}}]}},"valueQuantity":{{"value":{i}.5,"code":"%"}},"effectiveDateTime":"2020-03-04"}}"#,
            i % 3
        )
    }))
    .collect::<Vec<_>>();
    std::fs::write(&mixed, lines.join("\n")).expect("write");
    let mut inputs = files("jp-clins");
    inputs.extend(files("synthea"));
    inputs.push(mixed);
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let out = dir.path().join(format!("out{threads}"));
        let opts = FhirIngestOptions { inputs: inputs.clone(), out: out.clone(), batch_rows: 7 };
        let report = niji_ingest::fhir::ingest_with_threads(&opts, &key(), None, threads).expect("ingest");
        let q = std::fs::read_to_string(out.join("_quarantine.ndjson")).expect("quarantine");
        outputs.push((report, q, all_cells(&out)));
    }
    assert!(outputs[0].0.quarantined >= 3 && outputs[0].0.loaded >= 300, "{:?}", outputs[0].0);
    assert_eq!(outputs[0], outputs[1]);
}

/// A row's encounter reference, relative or absolute (with a version), is the visit id of the
/// Encounter it names, whichever thread made the pseudonyms; a reference to no Encounter in
/// the inputs still gets that id (and the data-quality warning).
#[test]
fn encounter_references_resolve_to_the_encounters_visit_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("e.ndjson");
    let subject = r#""subject":{"reference":"Patient/p1"}"#;
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-04-01"}"#.to_owned(),
        r#"{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2020-01-02"}}"#.to_owned(),
        format!(r#"{{"resourceType":"Condition","id":"c1",{subject},"encounter":{{"reference":"Encounter/e1"}},"onsetDateTime":"2020-01-02"}}"#),
        format!(r#"{{"resourceType":"Observation","id":"o1",{subject},"encounter":{{"reference":"https://x.jp/fhir/Encounter/e1/_history/2"}},"effectiveDateTime":"2020-01-02"}}"#),
        format!(r#"{{"resourceType":"Condition","id":"c2",{subject},"encounter":{{"reference":"Encounter/e9"}},"onsetDateTime":"2020-01-02"}}"#),
    ];
    std::fs::write(&input, lines.join("\n")).expect("write");
    for threads in [1, 2] {
        let out = dir.path().join(format!("out{threads}"));
        let opts = FhirIngestOptions { inputs: vec![input.clone()], out: out.clone(), batch_rows: 2 };
        let report = niji_ingest::fhir::ingest_with_threads(&opts, &key(), None, threads).expect("ingest");
        assert_eq!((report.loaded, report.quarantined), (5, 0), "{report:?}");
        let visits = crate::receipt::strings(&out, "visit_occurrence", "visit_occurrence_id");
        assert_eq!(visits.len(), 1);
        let e1 = visits[0].clone().expect("visit id");
        let conditions = crate::receipt::strings(&out, "condition_occurrence", "visit_occurrence_id");
        let measurements = crate::receipt::strings(&out, "measurement", "visit_occurrence_id");
        assert_eq!(conditions[0].as_deref(), Some(e1.as_str()));
        assert_eq!(measurements, [Some(e1.clone())]);
        let e9 = conditions[1].clone().expect("visit id of the unresolved reference");
        assert_ne!(e9, e1);
        assert!(report.warnings.get("unresolved_reference").is_some_and(|n| *n >= 1), "{report:?}");
    }
}
