//! Consent registry: semantics per dataset, linkage across sources, refusal of bad rows, and
//! consent applied during a receipt ingest.

use std::path::Path;

use chrono::NaiveDate;
use niji_cdm::Sex;
use niji_ingest::IngestError;
use niji_ingest::consent::{ConsentDecision, ConsentGate, ConsentPolicy, ConsentRegistry, ExcludeReason};
use niji_pseudo::linkage::{Identifiers, link};

use super::receipt::{key, quarantine, rows, sample, write};

const HEAD: &str = "insurer_number,kigo,bango,branch,kana_name,birth_date,sex,purpose,status,effective_date\n";

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("date")
}

fn registry(rows: &str) -> ConsentRegistry {
    ConsentRegistry::parse(Path::new("consent.csv"), &format!("{HEAD}{rows}"), &key()).expect("registry")
}

/// person_id of a person as a receipt with insurance card and kana would link them.
fn person(ins: &str, kigo: &str, bango: &str, kana: &str, birth: NaiveDate, sex: Sex) -> niji_pseudo::PersonLink {
    link(
        &key(),
        &Identifiers {
            insurer_number: Some(ins),
            kigo: Some(kigo),
            bango: Some(bango),
            kana_name: Some(kana),
            birth_date: Some(birth),
            sex: Some(sex),
            ..Default::default()
        },
    )
    .expect("link")
}

#[test]
fn latest_record_in_force_wins_per_purpose() {
    let reg = registry(
        "06130012,12,34,,ヤマダ タロウ,1950-03-01,1,research,opt-in,2024-01-01\n\
         06130012,12,34,,ヤマダ タロウ,1950-03-01,1,research,withdrawn,2024-06-01\n\
         06130012,12,34,,ヤマダ タロウ,1950-03-01,1,public-health,opt-out,2023-01-01\n",
    )
    .with_policy(ConsentPolicy::OptIn);
    assert_eq!(reg.rows(), 3);
    let p = person("06130012", "１２", "３４", "やまだたろう", d(1950, 3, 1), Sex::Male);
    assert_eq!(reg.decision_for(&p, "research", d(2023, 12, 31)), ConsentDecision::Exclude(ExcludeReason::NoOptIn));
    assert_eq!(reg.decision_for(&p, "research", d(2024, 5, 31)), ConsentDecision::Include);
    assert_eq!(reg.decision_for(&p, "research", d(2024, 6, 1)), ConsentDecision::Exclude(ExcludeReason::Withdrawn));
    assert_eq!(reg.decision_for(&p, "public-health", d(2024, 1, 1)), ConsentDecision::Exclude(ExcludeReason::OptedOut));
    assert_eq!(reg.decision(&p.person_id, "research", d(2024, 2, 1)), ConsentDecision::Include);
    // Someone else: no record. Opt-in dataset excludes, opt-out dataset includes.
    let q = person("06130012", "12", "35", "サトウ", d(1950, 3, 1), Sex::Male);
    assert_eq!(reg.decision_for(&q, "research", d(2024, 2, 1)), ConsentDecision::Exclude(ExcludeReason::NoOptIn));
    let reg = reg.with_policy(ConsentPolicy::OptOut);
    assert_eq!(reg.decision_for(&q, "research", d(2024, 2, 1)), ConsentDecision::Include);
}

#[test]
fn an_opt_out_given_by_kana_name_applies_to_a_record_linked_by_insurance_card() {
    let reg = registry(",,,,ヤマダ タロウ,19500301,1,research,opt-out,2020-01-01\n");
    let p = person("06130012", "12", "34", "ﾔﾏﾀﾞ ﾀﾛｳ", d(1950, 3, 1), Sex::Male);
    assert_ne!(Some(&p.person_id), p.id2.as_ref(), "person_id comes from ID1 here");
    assert_eq!(reg.decision_for(&p, "research", d(2024, 1, 1)), ConsentDecision::Exclude(ExcludeReason::OptedOut));
}

#[test]
fn a_malformed_row_refuses_the_registry_naming_line_and_field() {
    for (row, field) in [
        (",,,,ヤマダ,19500301,1,marketing,opt-out,2020-01-01\n", "purpose"),
        (",,,,ヤマダ,19500301,1,research,maybe,2020-01-01\n", "status"),
        (",,,,ヤマダ,19500301,1,research,opt-out,2020-13-01\n", "effective_date"),
        (",,,,ヤマダ,,1,research,opt-out,2020-01-01\n", "birth_date"),
        (",,,,ヤマダ,19500301,x,research,opt-out,2020-01-01\n", "sex"),
        ("12a,1,2,,,19500301,1,research,opt-out,2020-01-01\n", "insurer_number"),
    ] {
        let text = format!("{HEAD},,,,ヤマダ,19500301,1,research,opt-in,2020-01-01\n{row}");
        match ConsentRegistry::parse(Path::new("c.csv"), &text, &key()) {
            Err(IngestError::ConsentRow { line, field: f, .. }) => assert_eq!((line, f), (3, field)),
            other => panic!("expected a ConsentRow error for {field}, got {other:?}"),
        }
    }
    assert!(matches!(ConsentRegistry::parse(Path::new("c.csv"), "a,b\n", &key()), Err(IngestError::Header { .. })));
}

#[test]
fn receipt_ingest_excludes_opted_out_people_and_the_report_adds_up() {
    let dir = tempfile::tempdir().expect("tmp");
    // RE 1 of the sample: kana テストハンヨウ, born 1991-11-21, male; RE 3 is the same person.
    let path = write(
        dir.path(),
        "consent.csv",
        format!("{HEAD},,,,テストハンヨウ,19911121,1,research,opt-out,2020-01-01\n").as_bytes(),
    );
    let reg = ConsentRegistry::load(&path, &key()).expect("load");
    let gate = ConsentGate { registry: reg, purpose: "research".into(), as_of: d(2025, 1, 1) };
    let out = dir.path().join("out");
    let (report, stats) = niji_ingest::receipt::run(&[sample()], &out, &key(), Some(&gate)).expect("run");
    report.check_balanced().expect("balanced");
    assert_eq!(report.records, 636);
    assert!(report.consent_excluded > 0);
    // Every line of an excluded receipt is consent-excluded, none is quarantined or loaded.
    assert_eq!(report.loaded + report.consent_excluded, 636);
    assert!(quarantine(&out).is_empty());
    let excluded_receipts = 75 - stats.receipts;
    assert!(excluded_receipts >= 1);
    assert_eq!(rows(&out, "claim") as u64, stats.receipts);
    // The same registry for another purpose excludes nobody.
    let gate = ConsentGate { purpose: "public-health".into(), ..gate };
    let (report, _) = niji_ingest::receipt::run(&[sample()], &dir.path().join("o2"), &key(), Some(&gate)).expect("run");
    assert_eq!(report.consent_excluded, 0);
}
