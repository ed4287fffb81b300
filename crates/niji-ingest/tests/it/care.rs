//! Long-term care: benefit statements and certifications through the layouts-as-data, with
//! linkage to receipts and bad input.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use niji_ingest::care::{self, CareLayouts};
use niji_ingest::consent::{ConsentGate, ConsentRegistry};
use niji_ingest::report::IngestReport;

use super::receipt::{key, quarantine, rows, sjis, strings, write};

fn crlf(s: &str) -> Vec<u8> {
    sjis(&s.replace('\n', "\r\n"))
}

const BENEFIT: &str = "\
01,7131,202404,1310000001,131001,0000012345,ヤマダ タロウ,19400101,1,22,20240101,20241231,20,12000,12100000
02,7131,202404,1310000001,0000012345,11,1111,400,10
02,7131,202404,1310000001,0000012345,15,5612,800,10
01,7131,202404,1310000001,131001,0000099999,サトウ ハナコ,19380505,2,99,20240101,20241231,5,1000,
02,7131,202404,1310000001,0000099999,11,1111,100,5
02,7131,202404,1310000001,0000077777,11,1111,100,5
01,7131,202404,1310000001,131001,0000055555,スズキ ジロウ,19420202,1,13,20240101,20241231,3,500,
02,7131,202404,1310000001,0000055555,1A,1111,100,5
";

const CERT: &str = "\
insurer_number,insured_number,kana_name,birth_date,sex,application_date,decision_date,care_level,valid_from,valid_to
131001,0000012345,ﾔﾏﾀﾞ ﾀﾛｳ,19400101,1,20231101,20231201,22,20240101,20241231
131001,0000012346,,19400101,3,20231101,20231201,21,20240101,20241231
131001,0000012347,タナカ,1940-01-01,1,20231101,20231201,26,20240101,20241231
";

fn run(inputs: &[PathBuf], out: &Path, gate: Option<&ConsentGate>) -> IngestReport {
    care::run(inputs, out, &key(), gate, &CareLayouts::builtin().expect("layouts")).expect("run")
}

#[test]
fn statements_and_certifications_map_and_bad_lines_are_quarantined() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = write(dir.path(), "benefit_1310000001_202404.csv", &crlf(BENEFIT));
    let c = write(dir.path(), "care_certification.csv", &crlf(CERT));
    let out = dir.path().join("out");
    let report = run(&[b, c], &out, None);
    report.check_balanced().expect("balanced");
    // 8 benefit lines + 3 certification lines (the header is not a record).
    assert_eq!(report.records, 11);
    assert_eq!(rows(&out, "claim"), 2);
    assert_eq!(rows(&out, "care_service"), 2);
    assert_eq!(rows(&out, "care_certification"), 2);
    assert_eq!(rows(&out, "person"), 4);
    let q = quarantine(&out);
    let reasons: Vec<(Option<u64>, &str, Option<&str>)> =
        q.iter().map(|e| (e.line, e.reason.as_str(), e.field.as_deref())).collect();
    assert_eq!(
        reasons,
        vec![
            (Some(4), "bad_code", Some("care_level")),
            (Some(5), "statement_quarantined", None),
            (Some(6), "orphan_detail", Some("insured_number")),
            (Some(8), "not_digits", Some("service_type_code")),
            (Some(4), "bad_code", Some("care_level")),
        ]
    );
    assert_eq!(strings(&out, "claim", "insurer_kind"), vec![Some("care".into()), Some("care".into())]);
    assert_eq!(strings(&out, "claim", "public_expense_codes")[0].as_deref(), Some("12"));
    assert_eq!(strings(&out, "claim", "prefecture_code")[0].as_deref(), Some("13"));
    assert_eq!(strings(&out, "care_service", "service_type_code"), vec![Some("11".into()), Some("15".into())]);
    assert_eq!(strings(&out, "care_service", "care_level"), vec![Some("22".into()), Some("22".into())]);
    // A service line points at its statement.
    assert_eq!(strings(&out, "care_service", "claim_id")[0], strings(&out, "claim", "claim_id")[0]);
    // The certified person (half-width kana) is the statement's person (full-width kana): ID2 links them.
    assert_eq!(strings(&out, "care_certification", "person_id")[0], strings(&out, "claim", "person_id")[0]);
    // Without kana the certification links by the insured number within its insurer.
    let basis = strings(&out, "person", "linkage_basis");
    assert!(basis.contains(&Some("source_id".into())));
    let text = super::receipt::all_output_text(&out);
    for secret in ["ヤマダ", "ﾔﾏﾀﾞ", "0000012345", "スズキ"] {
        assert!(!text.contains(secret), "identifier in the output");
    }
}

#[test]
fn care_links_to_receipts_and_consent_excludes_whole_statements() {
    let dir = tempfile::tempdir().expect("tmp");
    // The sample's RE 1 person (テストハンヨウ, 1991-11-21, male) also has a care statement.
    let benefit = "01,7131,202110,1310000001,131001,0000000001,テストハンヨウ,19911121,1,21,,,3,300,\n\
                   02,7131,202110,1310000001,0000000001,11,1111,300,3\n";
    let b = write(dir.path(), "benefit.csv", &crlf(benefit));
    let out = dir.path().join("care");
    run(std::slice::from_ref(&b), &out, None);
    let rout = dir.path().join("receipt");
    niji_ingest::receipt::run(&[super::receipt::sample()], &rout, &key(), None).expect("receipts");
    let care_person = strings(&out, "claim", "person_id")[0].clone().expect("person");
    let receipt_people: Vec<String> = strings(&rout, "person", "person_id").into_iter().flatten().collect();
    // The receipt links by insurance card (ID1); care by kana (ID2). Same person_id only if the
    // receipt person has no card; here the link is visible through consent, which holds both keys.
    let consent = write(
        dir.path(),
        "consent.csv",
        "insurer_number,kigo,bango,branch,kana_name,birth_date,sex,purpose,status,effective_date\n\
         ,,,,テストハンヨウ,19911121,1,research,opt-out,2021-01-01\n"
            .as_bytes(),
    );
    let gate = ConsentGate {
        registry: ConsentRegistry::load(&consent, &key()).expect("consent"),
        purpose: "research".into(),
        as_of: NaiveDate::from_ymd_opt(2024, 1, 1).expect("d"),
    };
    let report = run(&[b], &dir.path().join("care2"), Some(&gate));
    assert_eq!((report.records, report.consent_excluded, report.loaded), (2, 2, 0));
    report.check_balanced().expect("balanced");
    assert!(!receipt_people.is_empty() && !care_person.is_empty());
}

#[test]
fn layouts_are_data_a_corrected_layout_moves_a_field_without_code_changes() {
    let dir = tempfile::tempdir().expect("tmp");
    let ldir = dir.path().join("layouts");
    std::fs::create_dir_all(&ldir).expect("dir");
    // Swap units (7) and days (8) in the 02 record.
    let benefit = care::layout::CARE_BENEFIT_TOML
        .replace(r#"{ name = "units", index = 7"#, r#"{ name = "units", index = 8"#)
        .replace(r#"{ name = "days", index = 8"#, r#"{ name = "days", index = 7"#);
    std::fs::write(ldir.join("care_benefit.toml"), benefit).expect("w");
    std::fs::write(ldir.join("care_certification.toml"), care::layout::CARE_CERTIFICATION_TOML).expect("w");
    let layouts = CareLayouts::load(&ldir).expect("layouts");
    let b = write(dir.path(), "b.csv", &crlf(&BENEFIT.lines().take(2).collect::<Vec<_>>().join("\n")));
    let out = dir.path().join("out");
    care::run(&[b], &out, &key(), None, &layouts).expect("run");
    let t = super::receipt::table(&out, "care_service");
    let units = t[0].column_by_name("units").expect("c");
    let units = units.as_any().downcast_ref::<arrow::array::Int64Array>().expect("i64");
    assert_eq!(units.value(0), 10);
    // A layout missing a field the reader needs is refused.
    std::fs::write(ldir.join("care_benefit.toml"), care::layout::CARE_BENEFIT_TOML.replace("\"units\"", "\"u\""))
        .expect("w");
    assert!(matches!(CareLayouts::load(&ldir), Err(niji_ingest::IngestError::Layout { .. })));
}

#[test]
fn utf8_care_file_is_reported_as_such() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = write(dir.path(), "u.csv", BENEFIT.as_bytes());
    let report = run(&[b], &dir.path().join("out"), None);
    assert!(report.inputs[0].error.as_deref().is_some_and(|e| e.contains("UTF-8, expected CP932")));
}
