//! Consent: opt-outs are excluded at ingest; a withdrawal recorded later deletes the person's
//! rows from every table of the dataset in the next run, and the report counts them.

use niji_cdm::Sex;
use niji_pipeline::{PipelineSpec, run_pipeline};
use niji_pseudo::linkage::{Identifiers, link};

use crate::support::{catalog, claims_spec, key, land_receipts, opts, rows, synth, synth_config};

/// Whether a rendered row holds this person (person_id is not always the first column).
/// The `person_id` the pipelines give a synthetic identity (its linkage keys under the test key).
fn person_of(ident: &niji_synth::SourceIdentity) -> String {
    let birth = chrono::NaiveDate::parse_from_str(ident.birth_date.as_deref().unwrap(), "%Y%m%d").unwrap();
    let ids = Identifiers {
        insurer_number: ident.insurer_number.as_deref(),
        kigo: ident.kigo.as_deref(),
        bango: ident.bango.as_deref(),
        branch: ident.branch.as_deref(),
        kana_name: ident.kana_name.as_deref(),
        birth_date: Some(birth),
        sex: Some(Sex::parse(ident.sex.as_deref().unwrap()).unwrap()),
        source_id: None,
    };
    link(&key(), &ids).unwrap().person_id
}

fn has(row: &str, person: &str) -> bool {
    row.split('|').any(|c| c == person)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_deletes_the_person_everywhere_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    land_receipts(&all, d, |_| true);
    std::fs::copy(all.join("consent/consent.csv"), d.join("landing/consent.csv")).unwrap();
    let spec = PipelineSpec::load(&claims_spec(d, true)).unwrap();
    let cat = catalog(d).await;
    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let v1 = cat.version(out.version_id.unwrap()).await.unwrap();

    // Pick a person loaded from a clean (noise-free) receipt record, with full card identifiers.
    let ident = niji_synth::source_identities(&synth_config())
        .find(|i| {
            i.record_key.starts_with("receipt:")
                && i.noise == niji_synth::NoiseKind::None
                && i.insurer_number.is_some()
                && i.kigo.is_some()
                && i.bango.is_some()
        })
        .expect("a clean receipt identity");
    let person = person_of(&ident);
    let mut before = 0;
    for (t, v) in &v1.delta_versions {
        before += rows(d, "claims", t, *v).await.iter().filter(|r| has(r, &person)).count();
    }
    assert!(before > 0, "the person is loaded before the withdrawal");

    // The withdrawal, effective yesterday.
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let line = format!(
        "{},{},{},{},{},{},{},research,withdrawn,{yesterday}\n",
        ident.insurer_number.as_deref().unwrap_or(""),
        ident.kigo.as_deref().unwrap_or(""),
        ident.bango.as_deref().unwrap_or(""),
        ident.branch.as_deref().unwrap_or(""),
        ident.kana_name.as_deref().unwrap_or(""),
        ident.birth_date.as_deref().unwrap(),
        ident.sex.as_deref().unwrap(),
    );
    let mut text = std::fs::read_to_string(d.join("landing/consent.csv")).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    std::fs::write(d.join("landing/consent.csv"), text).unwrap();

    let out2 = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let v2 = cat.version(out2.version_id.expect("a withdrawal makes a new version")).await.unwrap();
    let deleted: u64 =
        out2.report["consent"]["deleted_rows"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(deleted as usize, before, "the report counts exactly the person's rows");
    assert_eq!(out2.report["counts"]["rows_deleted_consent"], deleted);
    assert_eq!(out2.report["consent"]["withdrawn_persons_deleted"], 1);
    for (t, v) in &v2.delta_versions {
        assert!(!rows(d, "claims", t, *v).await.iter().any(|r| has(r, &person)), "{t} still has the person");
    }
    // The old version still holds the rows (time travel) until the steward retires it.
    let mut old = 0;
    for (t, v) in &v1.delta_versions {
        old += rows(d, "claims", t, *v).await.iter().filter(|r| has(r, &person)).count();
    }
    assert_eq!(old, before);
    // A third run has nothing more to delete.
    let out3 = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    assert_eq!(out3.version_id, None);
}

/// FHIR sources apply consent in the reader, per resource: an opted-out person's Patient and
/// every resource about them are counted consent-excluded records (none is loaded), nothing is
/// left for the row-level safety net at staging, and the report adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_consent_is_counted_per_resource() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    let landing = d.join("landing/fhir");
    std::fs::create_dir_all(&landing).unwrap();
    for e in std::fs::read_dir(all.join("fhir")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ndjson") {
            std::fs::copy(&p, landing.join(p.file_name().unwrap())).unwrap();
        }
    }
    let ident = niji_synth::source_identities(&synth_config())
        .find(|i| {
            i.record_key.starts_with("fhir:Patient/")
                && i.noise == niji_synth::NoiseKind::None
                && i.insurer_number.is_some()
                && i.kigo.is_some()
                && i.bango.is_some()
                && i.kana_name.is_some()
        })
        .expect("a clean FHIR patient");
    let pid = ident.record_key.strip_prefix("fhir:Patient/").unwrap().to_owned();
    // Resources of that Patient resource: at least these are the person's records.
    let mut about = 1u64;
    for e in std::fs::read_dir(&landing).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        about += text.lines().filter(|l| l.contains(&format!("\"Patient/{pid}\""))).count() as u64;
    }
    assert!(about > 1, "the patient has resources");
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Duration::days(1)).format("%Y-%m-%d");
    std::fs::write(
        d.join("landing/consent.csv"),
        format!(
            "insurer_number,kigo,bango,branch,kana_name,birth_date,sex,purpose,status,effective_date\n\
             {},{},{},{},{},{},{},research,opt-out,{yesterday}\n",
            ident.insurer_number.as_deref().unwrap_or(""),
            ident.kigo.as_deref().unwrap_or(""),
            ident.bango.as_deref().unwrap_or(""),
            ident.branch.as_deref().unwrap_or(""),
            ident.kana_name.as_deref().unwrap_or(""),
            ident.birth_date.as_deref().unwrap(),
            ident.sex.as_deref().unwrap(),
        ),
    )
    .unwrap();
    let spec_path = d.join("ehr-test.toml");
    std::fs::write(
        &spec_path,
        r#"name = "ehr-test"
dataset = "ehr"

[[sources]]
name = "fhir"
format = "fhir"
url = "landing/fhir"
glob = "*.ndjson"

[consent]
registry = "landing/consent.csv"
purpose = "research"
policy = "opt-out"
"#,
    )
    .unwrap();
    let spec = PipelineSpec::load(&spec_path).unwrap();
    let cat = catalog(d).await;
    let out = run_pipeline(&spec, &cat, &key(), &opts(d)).await.unwrap();
    let r = &out.report;
    let c = &r["counts"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(n(&c["records"]), n(&c["loaded"]) + n(&c["quarantined"]) + n(&c["consent_excluded"]));
    assert!(n(&c["consent_excluded"]) >= about, "excluded {} < {about} records of the person", c["consent_excluded"]);
    let per_input: u64 = r["inputs"].as_array().unwrap().iter().map(|i| n(&i["consent_excluded"])).sum();
    assert_eq!(per_input, n(&c["consent_excluded"]));
    for i in r["inputs"].as_array().unwrap() {
        assert_eq!(n(&i["records"]), n(&i["loaded"]) + n(&i["quarantined"]) + n(&i["consent_excluded"]), "{i}");
    }
    let at_staging = r["consent"]["excluded_rows_at_staging"].as_object().unwrap();
    assert!(at_staging.values().all(|v| n(v) == 0), "the reader left nothing to drop: {at_staging:?}");
    // The person is in no table.
    let person = person_of(&ident);
    let v = cat.version(out.version_id.unwrap()).await.unwrap();
    let mut total = 0;
    for (t, dv) in &v.delta_versions {
        let content = rows(d, "ehr", t, *dv).await;
        assert!(!content.iter().any(|row| has(row, &person)), "{t} holds the opted-out person");
        total += content.len();
    }
    assert!(total > 0);
}
