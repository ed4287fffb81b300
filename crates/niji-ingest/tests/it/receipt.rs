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

// ---- 調剤 (pharmacy) receipts: the YK/RE/HO/KO/SH/CZ/IY/TO layout of the 記録条件仕様(調剤用).

/// Values of a date column over all batches.
fn dates(out: &Path, tbl: &str, col: &str) -> Vec<Option<chrono::NaiveDate>> {
    let mut v = Vec::new();
    for b in table(out, tbl) {
        let a = b.column_by_name(col).expect("column").as_any().downcast_ref::<Date32Array>().expect("date").clone();
        v.extend((0..a.len()).map(|i| if a.is_valid(i) { a.value_as_date(i) } else { None }));
    }
    v
}

/// Values of an Int32 column over all batches.
fn ints(out: &Path, tbl: &str, col: &str) -> Vec<Option<i32>> {
    let mut v = Vec::new();
    for b in table(out, tbl) {
        let a = b.column_by_name(col).expect("column").as_any().downcast_ref::<Int32Array>().expect("i32").clone();
        v.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    v
}

/// Values of a Float64 column over all batches.
fn floats(out: &Path, tbl: &str, col: &str) -> Vec<Option<f64>> {
    let mut v = Vec::new();
    for b in table(out, tbl) {
        let a = b
            .column_by_name(col)
            .expect("column")
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .expect("f64")
            .clone();
        v.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    v
}

/// A 調剤 RE record (42 fields): receipt number, type, 調剤年月, name, sex, birth date, benefit
/// rate, the prescribing institution (9-13), a prescriber name (14) and the kana name at 41.
fn pharmacy_re(n: u32, month: &str, birth: &str, kana: &str) -> String {
    let mut f = vec![String::new(); 42];
    for (i, v) in [
        (0usize, "RE"),
        (2, "4118"),
        (3, month),
        (4, "薬局　花子"),
        (5, "2"),
        (6, birth),
        (7, "70"),
        (9, "13"),
        (10, "1"),
        (11, "7654321"),
        (12, "処方病院"),
        (13, "東京都港区"),
        (14, "処方　医師"),
        (35, "R-0042"),
        (41, kana),
    ] {
        f[i] = v.to_owned();
    }
    f[1] = n.to_string();
    f.join(",")
}

/// A hand-written 調剤 file, CP932 with CRLF: two prescriptions dispensed on two days (内服 14
/// days twice, 屯服 5 doses) and a material (剤形 9 with a TO line), then a receipt with public
/// expense only, linked by the kana name at field 41.
fn pharmacy_file() -> String {
    [
        "YK,1,13,4,1234567,テスト薬局,202407,00,03-1234-5678".to_owned(),
        pharmacy_re(1, "202406", "19600505", "ヤッキョクハナコ"),
        "HO,06130012,１２,３４,2,528,,,,,,,".to_owned(),
        "SN,1,01,,,,00,,".to_owned(),
        "SH,01,1,001,,30,,,,".to_owned(),
        "CZ,1,20240603,20240603,1,14,1,1,01,420001810,24,,,420,".to_owned(),
        "CZ,1,20240603,20240617,2,14,1,1,01,420001810,24,,,420,".to_owned(),
        "IY,1,620124201,3,,,,,,".to_owned(),
        "IY,1,610406001,1.5,,,,,,".to_owned(),
        "SH,02,3,002,,10,,,,".to_owned(),
        "CZ,1,20240603,20240603,1,5,1,1,01,420002410,21,,,50,".to_owned(),
        "IY,1,620000002,1,,,,,,".to_owned(),
        "CO,810000001,コメント".to_owned(),
        "SH,03,9,,,,,,,".to_owned(),
        "CZ,1,20240617,20240617,2,1,1,1,01,,,,,12,".to_owned(),
        "TO,1,710010001,2,,,".to_owned(),
        "TK,810000001,摘要".to_owned(),
        "KI,20240603,1,1,410000110,45,,".to_owned(),
        pharmacy_re(2, "202406", "19451111", "コウヒタロウ"),
        "KO,12136015,1234567,,1,100,,,,".to_owned(),
        "SH,01,5,,,8,,,,".to_owned(),
        "CZ,1,20240610,20240610,1,1,1,1,01,420002510,10,,,8,".to_owned(),
        "IY,1,662640418,2,,,,,,".to_owned(),
        "GO,2,628,99".to_owned(),
    ]
    .join("\r\n")
        + "\r\n"
}

#[test]
fn pharmacy_receipt_maps_dispensings_into_exact_rows_and_dates() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = sjis(&pharmacy_file());
    assert!(bytes.windows(2).any(|w| w == b"\r\n") && std::str::from_utf8(&bytes).is_err(), "CP932 with CRLF");
    let p = write(dir.path(), "pharmacy.UKE", &bytes);
    let out = dir.path().join("out");
    let (report, stats) = run(&[p], &out);
    let q = quarantine(&out);
    assert_eq!(report.quarantined, 0, "first quarantined: {:?}", q.first());
    assert_eq!((report.records, report.loaded), (24, 24));
    report.check_balanced().expect("balanced");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(stats.receipts, 2);
    for (t, n) in [("YK", 1), ("RE", 2), ("HO", 1), ("KO", 1), ("SN", 1), ("SH", 4), ("CZ", 5), ("IY", 4), ("TO", 1)] {
        assert_eq!(stats.loaded(t), n, "{t}");
    }
    for (t, n) in [("CO", 1), ("TK", 1), ("KI", 1), ("GO", 1)] {
        assert_eq!(stats.loaded(t), n, "{t}");
    }

    // claim: one per receipt, from YK (billing month at field 6) and RE/HO/KO.
    let d = |m, day| chrono::NaiveDate::from_ymd_opt(2024, m, day);
    assert_eq!(strings(&out, "claim", "claim_type"), vec![Some("pharmacy".into()), Some("pharmacy".into())]);
    assert_eq!(dates(&out, "claim", "service_month"), vec![d(6, 1), d(6, 1)]);
    assert_eq!(dates(&out, "claim", "billing_month"), vec![d(7, 1), d(7, 1)]);
    assert_eq!(strings(&out, "claim", "receipt_type"), vec![Some("4118".into()), Some("4118".into())]);
    assert_eq!(ints(&out, "claim", "benefit_rate"), vec![Some(70), Some(70)]);
    assert_eq!(ints(&out, "claim", "service_days"), vec![Some(2), Some(1)]); // 処方箋受付回数
    assert_eq!(strings(&out, "claim", "insurer_kind"), vec![Some("employee".into()), Some("public_only".into())]);
    assert_eq!(strings(&out, "claim", "public_expense_codes"), vec![None, Some("12".into())]);
    assert_eq!(strings(&out, "claim", "prefecture_code"), vec![Some("13".into()), Some("13".into())]);
    let fac = key().pseudonym(niji_pseudo::Domain::Facility, &["13", "4", "1234567"]);
    assert_eq!(strings(&out, "claim", "facility_id"), vec![Some(fac.clone()), Some(fac)]);

    // drug_exposure: each IY × each CZ of its prescription; 内服 has days supply and an end.
    assert_eq!(
        strings(&out, "drug_exposure", "drug_source_value"),
        ["620124201", "620124201", "610406001", "610406001", "620000002", "662640418"]
            .iter()
            .map(|c| Some((*c).to_owned()))
            .collect::<Vec<_>>()
    );
    assert!(
        strings(&out, "drug_exposure", "drug_source_vocabulary").iter().all(|v| v.as_deref() == Some("RECEIPT_DRUG"))
    );
    assert_eq!(
        dates(&out, "drug_exposure", "drug_exposure_start_date"),
        vec![d(6, 3), d(6, 17), d(6, 3), d(6, 17), d(6, 3), d(6, 10)]
    );
    assert_eq!(
        dates(&out, "drug_exposure", "drug_exposure_end_date"),
        vec![d(6, 16), d(6, 30), d(6, 16), d(6, 30), None, None]
    );
    assert_eq!(ints(&out, "drug_exposure", "days_supply"), vec![Some(14), Some(14), Some(14), Some(14), None, None]);
    assert_eq!(
        floats(&out, "drug_exposure", "quantity"),
        vec![Some(3.0), Some(3.0), Some(1.5), Some(1.5), Some(1.0), Some(2.0)]
    );
    let ids = strings(&out, "drug_exposure", "drug_exposure_id");
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 6, "one id per (IY line, CZ line)");
    let claims = strings(&out, "claim", "claim_id");
    let visit = strings(&out, "drug_exposure", "visit_occurrence_id");
    assert_eq!(visit[..5].iter().filter(|v| **v == claims[0]).count(), 5);
    assert_eq!(visit[5], claims[1]);

    // TO: a device row dated by its prescription's dispensing.
    assert_eq!(strings(&out, "procedure_occurrence", "procedure_source_value"), vec![Some("710010001".into())]);
    assert_eq!(
        strings(&out, "procedure_occurrence", "procedure_source_vocabulary"),
        vec![Some("RECEIPT_DEVICE".into())]
    );
    assert_eq!(dates(&out, "procedure_occurrence", "procedure_date"), vec![d(6, 17)]);
    assert_eq!(floats(&out, "procedure_occurrence", "quantity"), vec![Some(2.0)]);

    // visit: first to last 調剤月日.
    assert_eq!(strings(&out, "visit_occurrence", "visit_source_value"), vec![Some("pharmacy".into()); 2]);
    assert_eq!(dates(&out, "visit_occurrence", "visit_start_date"), vec![d(6, 3), d(6, 10)]);
    assert_eq!(dates(&out, "visit_occurrence", "visit_end_date"), vec![d(6, 17), d(6, 10)]);

    // person: the first by insurance card (ID1), the second (public expense only) by the kana
    // name at field 41 (ID2), not by the public-expense recipient.
    assert_eq!(strings(&out, "person", "linkage_basis"), vec![Some("id1+id2".into()), Some("id2".into())]);
    assert_eq!(strings(&out, "person", "sex"), vec![Some("F".into()), Some("F".into())]);
    assert_eq!(ints(&out, "person", "year_of_birth"), vec![Some(1960), Some(1945)]);

    // Nothing identifying or free text reaches the outputs.
    let text = all_output_text(&out);
    for s in [
        "薬局　花子",
        "ヤッキョクハナコ",
        "処方　医師",
        "処方病院",
        "東京都港区",
        "R-0042",
        "コメント",
        "摘要",
        "テスト薬局",
    ] {
        assert!(!text.contains(s), "{s} leaked");
    }
}

/// The kana name sits at field 41 in 調剤 and 36 in 医科: the same person (kana, birth date,
/// sex, no insurance card) gets the same person_id from both layouts.
#[test]
fn pharmacy_and_medical_kana_positions_link_the_same_person() {
    let dir = tempfile::tempdir().expect("tmp");
    let pharmacy = [
        "YK,1,13,4,1234567,テスト薬局,202407,00,03-1234-5678".to_owned(),
        pharmacy_re(1, "202406", "19451111", "コウヒタロウ"),
        "KO,12136015,1234567,,1,100,,,,".to_owned(),
        "SH,01,1,001,,8,,,,".to_owned(),
        "CZ,1,20240610,20240610,1,7,1,1,01,420001810,24,,,8,".to_owned(),
        "IY,1,620124201,1,,,,,,".to_owned(),
    ]
    .join("\r\n")
        + "\r\n";
    let mut re = vec![String::new(); 38];
    for (i, v) in [
        (0usize, "RE"),
        (1, "1"),
        (2, "1112"),
        (3, "202406"),
        (4, "薬局　花子"),
        (5, "2"),
        (6, "19451111"),
        (36, "コウヒタロウ"),
    ] {
        re[i] = v.to_owned();
    }
    let medical = [
        "IR,1,13,1,7654321,,処方病院,202407,00,0300000000".to_owned(),
        re.join(","),
        "KO,12136015,7654321,,1,100,,,,,,".to_owned(),
    ]
    .join("\r\n")
        + "\r\n";
    let a = write(dir.path(), "p.UKE", &sjis(&pharmacy));
    let b = write(dir.path(), "m.UKE", &sjis(&medical));
    let out = dir.path().join("out");
    let (report, _) = run(&[a, b], &out);
    assert_eq!(report.quarantined, 0, "{:?}", quarantine(&out).first());
    let persons = strings(&out, "claim", "person_id");
    assert_eq!(persons.len(), 2);
    assert_eq!(persons[0], persons[1]);
    assert_eq!(strings(&out, "person", "linkage_basis"), vec![Some("id2".into()); 2]);
}

#[test]
fn pharmacy_records_out_of_order_or_malformed_are_quarantined_with_place_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let text = [
        "YK,1,13,4,1234567,テスト薬局,202407,00,03-1234-5678".to_owned(), // 1
        "CZ,1,20240603,20240603,1,14,1,1,01,420001810,24,,,420,".to_owned(), // 2: before any RE
        pharmacy_re(1, "202406", "19600505", "ヤッキョクハナコ"),         // 3
        "HO,06130012,１２,３４,1,100,,,,,,,".to_owned(),                  // 4
        "IY,1,620124201,3,,,,,,".to_owned(),                              // 5: before any SH
        "SH,01,1,001,,30,,,,".to_owned(),                                 // 6
        "CZ,1,20240603,20240631,1,14,1,1,01,420001810,24,,,420,".to_owned(), // 7: no 31 June
        "IY,1,620124201,3,,,,,,".to_owned(),                              // 8: no valid CZ
        "SH,02,1,001,,30,,,,".to_owned(),                                 // 9
        "CZ,1,20240501,20240520,1,14,1,1,01,420001810,24,,,420,".to_owned(), // 10: May, not June
        "CZ,1,20240603,20240603,1,14,1,1,01,420001810,24,,,420,".to_owned(), // 11
        "IY,1,62012420,3,,,,,,".to_owned(),                               // 12: 8-digit code
        "IY,1,620124201,3,,,,,,".to_owned(),                              // 13
        "SI,80,1,120002910,,68,1".to_owned(),                             // 14: 医科 record
        "GO,1,100,99".to_owned(),                                         // 15
    ]
    .join("\r\n")
        + "\r\n";
    let p = write(dir.path(), "bad.UKE", &sjis(&text));
    let out = dir.path().join("out");
    let (report, stats) = run(std::slice::from_ref(&p), &out);
    report.check_balanced().expect("balanced");
    assert_eq!((report.records, report.quarantined, report.loaded), (15, 7, 8));
    let q = quarantine(&out);
    let file = p.display().to_string();
    assert!(q.iter().all(|e| e.file == file));
    // (line, record type, field, reason)
    type Place<'a> = (Option<u64>, Option<&'a str>, Option<&'a str>, &'a str);
    let got: Vec<Place<'_>> =
        q.iter().map(|e| (e.line, e.record_type.as_deref(), e.field.as_deref(), e.reason.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(2), Some("CZ"), None, "out_of_order"),
            (Some(5), Some("IY"), None, "out_of_order"),
            (Some(7), Some("CZ"), Some("dispensing_date"), "bad_date"),
            (Some(8), Some("IY"), None, "no_dispensing_record"),
            (Some(10), Some("CZ"), Some("dispensing_date"), "date_outside_month"),
            (Some(14), Some("SI"), Some("record_type"), "not_in_layout"),
            (Some(12), Some("IY"), Some("code"), "bad_length"),
        ]
    );
    assert_eq!(stats.loaded("IY"), 1);
    assert_eq!(
        dates(&out, "drug_exposure", "drug_exposure_start_date"),
        vec![chrono::NaiveDate::from_ymd_opt(2024, 6, 3)]
    );
    // No detail carries a value.
    for e in &q {
        assert!(!e.detail.contains("620124201") && !e.detail.contains("20240631"));
    }
}
