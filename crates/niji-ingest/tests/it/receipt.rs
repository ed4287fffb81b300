//! Receipts (.UKE): the real third-party sample with exact counts and a privacy scan of every
//! output file, and bad input (malformed lines, records out of order, UTF-8, truncated fields).

use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, Date32Array, Int32Array, StringArray};
use arrow::record_batch::RecordBatch;
use niji_ingest::IngestError;
use niji_ingest::receipt::{self, ReceiptStats};
use niji_ingest::report::{IngestReport, Quarantined};
use niji_pseudo::PseudonymKey;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn key() -> PseudonymKey {
    PseudonymKey::from_bytes(&[42; 32]).expect("key")
}

pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")
}

/// CP932 bytes of `text` (CRLF line ends are the caller's).
pub fn sjis(text: &str) -> Vec<u8> {
    let (b, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!unmappable, "test text must be CP932-encodable");
    b.into_owned()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write input");
    p
}

/// All record batches of one CDM table written under `out`.
pub fn table(out: &Path, name: &str) -> Vec<RecordBatch> {
    let p = out.join(name).join("part-00000.parquet");
    if !p.exists() {
        return Vec::new();
    }
    let f = std::fs::File::open(p).expect("parquet");
    let r = ParquetRecordBatchReaderBuilder::try_new(f).expect("reader").build().expect("build");
    r.collect::<Result<Vec<_>, _>>().expect("batches")
}

pub fn rows(out: &Path, name: &str) -> usize {
    table(out, name).iter().map(RecordBatch::num_rows).sum()
}

/// Values of a string column over all batches.
pub fn strings(out: &Path, tbl: &str, col: &str) -> Vec<Option<String>> {
    let mut v = Vec::new();
    for b in table(out, tbl) {
        let a = b.column_by_name(col).expect("column");
        let s = a.as_any().downcast_ref::<StringArray>().expect("utf8");
        v.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_owned())));
    }
    v
}

/// Every output file as text: Parquet tables pretty-printed, quarantine and report verbatim.
pub fn all_output_text(out: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(out).expect("out dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
            let batches = table(out, &name);
            text.push_str(&arrow::util::pretty::pretty_format_batches(&batches).expect("pretty").to_string());
            // Schema metadata (docs) are not data; names must not be there either.
            for b in &batches {
                text.push_str(&format!("{:?}", b.schema().metadata()));
            }
        } else {
            text.push_str(&std::fs::read_to_string(&p).expect("text output"));
        }
    }
    text
}

pub fn quarantine(out: &Path) -> Vec<Quarantined> {
    std::fs::read_to_string(out.join("_quarantine.ndjson"))
        .expect("quarantine")
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry"))
        .collect()
}

fn run(inputs: &[PathBuf], out: &Path) -> (IngestReport, ReceiptStats) {
    receipt::run(inputs, out, &key(), None).expect("run")
}

/// The sample decoded independently of the reader (for names and counts to check against).
fn sample_lines() -> Vec<Vec<String>> {
    let bytes = std::fs::read(sample()).expect("sample");
    let (text, _, had_errors) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!had_errors);
    text.split("\r\n").filter(|l| !l.is_empty()).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

#[test]
fn real_sample_loads_with_exact_counts() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    let (report, stats) = run(&[sample()], &out);
    assert_eq!(stats.receipts, 75);
    assert_eq!(stats.loaded("SY"), 9);
    assert_eq!(stats.loaded("SI"), 320);
    assert_eq!(stats.loaded("IY"), 32);
    assert_eq!(stats.loaded("CO"), 56);
    assert_eq!((stats.loaded("HO"), stats.loaded("KO"), stats.loaded("SN")), (69, 71, 2));
    assert_eq!(report.records, 636);
    assert_eq!((report.loaded, report.quarantined, report.consent_excluded), (636, 0, 0));
    report.check_balanced().expect("balanced");
    // The GO trailer of this sample says 140 receipts; the file holds 75.
    assert_eq!(report.warnings.get("trailer_receipt_count_mismatch"), Some(&1));

    assert_eq!(rows(&out, "claim"), 75);
    assert_eq!(rows(&out, "person"), 75);
    assert_eq!(rows(&out, "visit_occurrence"), 75);
    assert_eq!(rows(&out, "condition_occurrence"), 9);
    assert_eq!(rows(&out, "drug_exposure"), 32);
    // One procedure row per marked day (or one undated row when no day is marked), counted
    // here from the raw file independently of the reader.
    let expected_proc: usize = sample_lines()
        .iter()
        .filter(|f| f[0] == "SI")
        .map(|f| (13..44).filter(|i| f.get(*i).is_some_and(|c| !c.is_empty())).count().max(1))
        .sum();
    assert!(expected_proc >= 320);
    assert_eq!(rows(&out, "procedure_occurrence"), expected_proc);
    assert_eq!(report.rows_per_table.get("procedure_occurrence").copied(), Some(expected_proc as u64));

    // Diagnoses: uncoded ones keep the code 0000999, never the name; primary flags and outcomes.
    let codes = strings(&out, "condition_occurrence", "condition_source_value");
    assert_eq!(codes.iter().filter(|c| c.as_deref() == Some("0000999")).count(), 2);
    assert_eq!(codes[0].as_deref(), Some("2500013"));
    let b = &table(&out, "condition_occurrence")[0];
    let primary = b.column_by_name("is_primary").expect("col").as_any().downcast_ref::<BooleanArray>().expect("bool");
    assert!(primary.value(0) && !primary.value(1));
    let status = strings(&out, "condition_occurrence", "condition_status");
    assert_eq!(status[0].as_deref(), Some("active"));
    assert!(status.iter().any(|s| s.as_deref() == Some("stopped"))); // SY,2500013,20211001,4
    let modifiers = strings(&out, "condition_occurrence", "modifier_codes");
    assert!(modifiers.iter().any(|m| m.as_deref() == Some("8070")));

    // Care-category continuation: the IY lines after `CO,22` inherit 22, not the SI's 12.
    let cats = strings(&out, "procedure_occurrence", "care_category");
    assert!(cats.iter().all(Option::is_some), "every SI line has a category after continuation");
    let drug_supply: Vec<Option<i32>> = table(&out, "drug_exposure")
        .iter()
        .flat_map(|b| {
            let a =
                b.column_by_name("days_supply").expect("c").as_any().downcast_ref::<Int32Array>().expect("i32").clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect();
    assert_eq!(drug_supply.len(), 32);

    // Claims: insurer kinds from the insurer number, public-expense programmes from KO.
    let kinds = strings(&out, "claim", "insurer_kind");
    assert_eq!(kinds[0].as_deref(), Some("employee")); // HO 01010016
    assert_eq!(kinds.iter().filter(|k| k.as_deref() == Some("public_only")).count(), 75 - 69);
    let pe = strings(&out, "claim", "public_expense_codes");
    assert_eq!(pe[0].as_deref(), Some("83"));
    assert_eq!(pe[3].as_deref(), Some("12"));
    assert!(strings(&out, "claim", "facility_id").iter().all(|f| f.as_ref().is_some_and(|f| f.len() == 32)));
    let sm = table(&out, "claim")[0]
        .column_by_name("service_month")
        .expect("c")
        .as_any()
        .downcast_ref::<Date32Array>()
        .expect("d")
        .value_as_date(0);
    assert_eq!(sm, chrono::NaiveDate::from_ymd_opt(2021, 10, 1));
    // Same person, two receipts (RE 1 and RE 3 share insurance card, birth date, sex): one person_id.
    let persons = strings(&out, "claim", "person_id");
    assert_eq!(persons[0], persons[2]);
    assert_ne!(persons[0], persons[1]);
}

#[test]
fn no_name_or_kana_name_of_the_sample_reaches_any_output_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    run(&[sample()], &out);
    let mut names: Vec<String> = Vec::new();
    for f in sample_lines().iter().filter(|f| f[0] == "RE") {
        for i in [4, 36] {
            let n = f[i].trim();
            assert!(!n.is_empty());
            names.push(n.to_owned());
            // Also each part of the name (姓, 名) on its own.
            names.extend(n.split(['　', ' ']).filter(|p| p.chars().count() >= 2).map(str::to_owned));
        }
    }
    assert!(names.len() >= 150);
    let text = all_output_text(&out);
    assert!(text.len() > 10_000, "the scan must see the output");
    assert!(text.contains("0000999"), "the scan sees Parquet cell values");
    for n in &names {
        assert!(!text.contains(n.as_str()), "a name from the sample appears in the output");
    }
    // The free-text names of uncoded diagnoses and comment texts are not stored either.
    assert!(!text.contains("寿限無"));
    assert!(!text.contains("疼痛時"));
}

/// An SI line with `day → count` marks in the days-of-month columns (fields 13-43).
fn si(category: &str, code: &str, days: &[(usize, u32)]) -> String {
    let mut f: Vec<String> = ["SI", category, "1", code, "", "288", "1"].iter().map(|s| (*s).to_owned()).collect();
    f.resize(44, String::new());
    for (d, n) in days {
        f[12 + d] = n.to_string();
    }
    f.join(",") + "\n"
}

fn small_file(body: &str) -> Vec<u8> {
    sjis(&body.replace('\n', "\r\n"))
}

const HEADER: &str = "IR,1,13,1,1234567,,テスト医院,202404,00,0312345678\n";
fn re(n: u32, birth: &str) -> String {
    format!(
        "RE,{n},1112,202404,テスト　タロウ,1,{birth},,,,,,,0001,,,,,,,,,,,,,,,,,,,,,,,テストタロウ,\nHO,06130012,１２,３４,2,500,,,,,,,,,\n"
    )
}

#[test]
fn malformed_line_is_quarantined_and_the_rest_of_the_file_continues() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = format!(
        "{HEADER}{}SY,2500013,20240401,1,,,01,\n{}{}{}GO,1,861,99\n",
        re(1, "19500301"),
        si("11", "12345", &[(1, 1)]),
        si("", "111000110", &[(3, 1), (30, 2)]),
        si("12", "112007410", &[(23, 1)]),
    );
    let p = write(dir.path(), "a.UKE", &small_file(&body));
    let out = dir.path().join("out");
    let (report, stats) = run(&[p], &out);
    assert_eq!((report.records, report.loaded, report.quarantined), (8, 7, 1));
    let q = quarantine(&out);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].file, dir.path().join("a.UKE").display().to_string());
    assert_eq!((q[0].line, q[0].record_type.as_deref(), q[0].field.as_deref()), (Some(5), Some("SI"), Some("code")));
    assert_eq!(q[0].reason, "bad_length");
    assert_eq!(stats.loaded("SI"), 2);
    // Days of month expand into dates: day 3 and day 30 (of April), and 31 is refused below.
    let dates: Vec<_> = table(&out, "procedure_occurrence")
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name("procedure_date")
                .expect("c")
                .as_any()
                .downcast_ref::<Date32Array>()
                .expect("d")
                .clone();
            (0..a.len()).map(move |i| a.value_as_date(i))
        })
        .collect();
    let d = |m, day| chrono::NaiveDate::from_ymd_opt(2024, m, day);
    assert_eq!(dates, vec![d(4, 3), d(4, 30), d(4, 23)]);
    // The SI without a category continues the 11 of the line before it (the quarantined one).
    let cats = strings(&out, "procedure_occurrence", "care_category");
    assert_eq!(cats, vec![Some("11".into()), Some("11".into()), Some("12".into())]);
    assert_eq!(strings(&out, "visit_occurrence", "visit_source_value"), vec![Some("outpatient".into())]);

    // Day 31 in April.
    let bad_day = format!("{HEADER}{}{}", re(1, "19500301"), si("11", "111000110", &[(31, 1)]));
    let p = write(dir.path(), "b.UKE", &small_file(&bad_day));
    let out = dir.path().join("out_b");
    let (report, _) = run(&[p], &out);
    assert_eq!(report.quarantined_by_reason.get("bad_day"), Some(&1));
}

#[test]
fn record_before_any_receipt_is_quarantined_not_attached() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = format!("{HEADER}SY,2500013,20240401,1,,,01,\n{}SY,4659007,20240401,1,,,,\n", re(1, "19500301"));
    let p = write(dir.path(), "o.UKE", &small_file(&body));
    let out = dir.path().join("out");
    let (report, _) = run(&[p], &out);
    let q = quarantine(&out);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].line, q[0].record_type.as_deref(), q[0].reason.as_str()), (Some(2), Some("SY"), "out_of_order"));
    assert_eq!(strings(&out, "condition_occurrence", "condition_source_value"), vec![Some("4659007".into())]);
    report.check_balanced().expect("balanced");
    // After the GO trailer, too.
    let body = format!("{HEADER}{}GO,1,0,99\nCO,22,2,810000001,x\n", re(1, "19500301"));
    let p = write(dir.path(), "g.UKE", &small_file(&body));
    let (report, _) = run(&[p], &dir.path().join("out2"));
    assert_eq!(report.quarantined_by_reason.get("out_of_order"), Some(&1));
}

#[test]
fn utf8_and_non_cp932_files_are_reported_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = format!("{HEADER}{}", re(1, "19500301")).replace('\n', "\r\n");
    let utf8 = write(dir.path(), "utf8.UKE", body.as_bytes());
    let mut broken = sjis(&body);
    broken.extend_from_slice(b"SY,\x82\r\n");
    let broken = write(dir.path(), "broken.UKE", &broken);
    let missing = dir.path().join("missing.UKE");
    let out = dir.path().join("out");
    let (report, stats) = run(&[utf8, broken, missing, sample()], &out);
    assert_eq!(stats.receipts, 75, "the good file after the bad ones still loads");
    let errs: Vec<&str> = report.inputs.iter().filter_map(|i| i.error.as_deref()).collect();
    assert_eq!(errs.len(), 3);
    assert!(errs[0].contains("utf8.UKE is UTF-8, expected CP932"), "{}", errs[0]);
    assert!(errs[1].contains("broken.UKE is not CP932") && errs[1].contains("line 4"), "{}", errs[1]);
    assert!(errs[2].contains("cannot read"), "{}", errs[2]);
    let direct = receipt::ingest_file(
        &dir.path().join("utf8.UKE"),
        &key(),
        None,
        &mut receipt::Outputs {
            sink: &mut niji_ingest::sink::CdmSink::create(&dir.path().join("o2")).expect("sink"),
            quarantine: &mut niji_ingest::report::QuarantineWriter::create(&dir.path().join("q")).expect("q"),
            report: &mut IngestReport::default(),
        },
        &mut ReceiptStats::default(),
    );
    assert!(matches!(direct, Err(IngestError::Utf8NotCp932 { .. })));
}

#[test]
fn truncated_or_bad_identity_fields_quarantine_the_whole_receipt_never_a_fake_person() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = format!(
        "{HEADER}RE,1,1112\nSY,2500013,20240401,1,,,01,\n{}SY,2500013,20240401,1,,,01,\n{}SI,11,1,111000110,,288,1\nRE,4,1112,202404,テスト,7,19500301\n{}KO,12100000,1,,1,1,0\nKO,12100000,1,,1,1,0\nKO,12100000,1,,1,1,0\nKO,12100000,1,,1,1,0\nKO,12100000,1,,1,1,0\n",
        re(2, "19501301"),
        re(3, "19500301"),
        re(5, "19600101"),
    );
    let p = write(dir.path(), "t.UKE", &small_file(&body));
    let out = dir.path().join("out");
    let (report, stats) = run(&[p], &out);
    report.check_balanced().expect("balanced");
    let q = quarantine(&out);
    let find = |line: u64| q.iter().find(|e| e.line == Some(line)).expect("entry");
    assert_eq!((find(2).field.as_deref(), find(2).reason.as_str()), (Some("service_month"), "missing_field"));
    assert_eq!(find(3).reason, "receipt_quarantined");
    assert_eq!((find(4).field.as_deref(), find(4).reason.as_str()), (Some("birth_date"), "bad_date"));
    assert_eq!(find(5).reason, "receipt_quarantined"); // its HO
    assert_eq!((find(10).field.as_deref(), find(10).reason.as_str()), (Some("sex"), "bad_code"));
    assert_eq!(find(17).reason, "too_many_public_expense");
    assert_eq!(stats.receipts, 2);
    assert_eq!(rows(&out, "person"), 2);
    assert_eq!(strings(&out, "claim", "public_expense_codes")[1].as_deref(), Some("12 12 12 12"));
    // The SI line without days still loads, undated, with its count.
    assert_eq!(rows(&out, "procedure_occurrence"), 1);
    for e in &q {
        assert!(!e.detail.contains("テスト") && !e.detail.contains("1950"), "no values in quarantine details");
    }
}

/// The synthetic generator's receipts, care statements, certifications and consent registry
/// (docs/FORMATS.md) load through these readers with nothing quarantined.
#[test]
fn synthetic_sources_ingest_without_quarantine() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    niji_synth::generate(&niji_synth::SynthConfig { persons: 200, ..Default::default() }, &src).expect("synth");
    let files = |sub: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(src.join(sub)).expect("dir").map(|e| e.expect("entry").path()).collect();
        v.sort();
        v
    };
    let uke = files("receipts");
    assert!(!uke.is_empty());
    let (report, stats) = run(&uke, &dir.path().join("r"));
    let q = quarantine(&dir.path().join("r"));
    assert_eq!(report.quarantined, 0, "first quarantined: {:?}", q.first());
    assert!(report.inputs.iter().all(|i| i.error.is_none()));
    assert!(stats.receipts > 200);
    let care_files = files("care");
    let care = niji_ingest::care::run(
        &care_files,
        &dir.path().join("c"),
        &key(),
        None,
        &niji_ingest::care::CareLayouts::builtin().expect("layouts"),
    )
    .expect("care");
    let q = quarantine(&dir.path().join("c"));
    assert_eq!(care.quarantined, 0, "first quarantined: {:?}", q.first());
    assert!(care.inputs.iter().all(|i| i.error.is_none()));
    assert!(rows(&dir.path().join("c"), "care_service") > 0);
    assert!(rows(&dir.path().join("c"), "care_certification") > 0);
    let reg = niji_ingest::consent::ConsentRegistry::load(&src.join("consent/consent.csv"), &key()).expect("consent");
    assert!(reg.rows() > 0);
}

/// The synthetic generator's FHIR (bulk NDJSON and document Bundles) loads through the FHIR
/// reader with nothing quarantined: the generator and the reader agree on docs/FORMATS.md.
#[test]
fn synthetic_fhir_ingests_without_quarantine() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    niji_synth::generate(&niji_synth::SynthConfig { persons: 300, ..Default::default() }, &src).expect("synth");
    let mut inputs: Vec<PathBuf> = Vec::new();
    for sub in ["fhir", "fhir/bundles"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(src.join(sub))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        inputs.extend(v);
    }
    let out = dir.path().join("f");
    let opts = niji_ingest::fhir::FhirIngestOptions { inputs, out: out.clone(), batch_rows: 1024 };
    let report = niji_ingest::fhir::ingest(&opts, &key()).expect("fhir ingest");
    let q = quarantine(&out);
    assert_eq!(report.quarantined, 0, "first quarantined: {:?}", q.first());
    assert!(report.check_balanced().is_ok());
    assert!(rows(&out, "person") > 0);
    assert!(rows(&out, "measurement") > 0);
}

/// The GO trailer counts every receipt of the file, including one that is quarantined, so a
/// correct trailer raises no mismatch warning.
#[test]
fn trailer_counts_quarantined_receipts_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let re = |n: u32, birth: &str| {
        let mut f = vec![String::new(); 38];
        f[0] = "RE".into();
        f[1] = n.to_string();
        f[2] = "1112".into();
        f[3] = "202401".into();
        f[4] = "氏名".into();
        f[5] = "1".into();
        f[6] = birth.into();
        f[36] = "シメイ".into();
        f.join(",")
    };
    let text = [
        "IR,1,13,1,1234567,,クリニック,202401,00,0300000000".to_owned(),
        re(1, "19500101"),
        "HO,06137807,１,２,1,100,,,,,,,,,".to_owned(),
        re(2, "19501399"),
        "HO,06137807,１,３,1,100,,,,,,,,,".to_owned(),
        "GO,2,200,99".to_owned(),
    ]
    .join("\r\n")
        + "\r\n";
    let input = write(dir.path(), "t.UKE", &sjis(&text));
    let out = dir.path().join("o");
    let (report, stats) = run(&[input], &out);
    assert_eq!(stats.receipts, 1, "one receipt maps");
    assert!(report.quarantined >= 2, "the bad receipt's lines are quarantined");
    assert_eq!(report.warnings.get("trailer_receipt_count_mismatch"), None, "{:?}", report.warnings);
}
