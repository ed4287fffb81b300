//! Deterministic synthetic *source* files for Niji, carrying realistic Japanese direct
//! identifiers so that pseudonymization and linkage are really exercised.
//!
//! `generate(cfg, out)` writes, under `out` (layout in `docs/FORMATS.md`):
//! `fhir/<Type>.ndjson` (FHIR R4 bulk layout, JP-CLINS shapes), `fhir/bundles/*.json`
//! (JP-CLINS-style document Bundles), `receipts/<facility>_<YYYYMM>.UKE` (レセプト電算, CP932,
//! CRLF), `care/benefit_<provider>_<YYYYMM>.csv` and `care/care_certification.csv` (CP932),
//! `consent/consent.csv`, `ground_truth.csv` and `manifest.json`.
//!
//! # Model
//! - **Persons** are generated independently from (seed, person index) with the crate's own
//!   PRNG (xoshiro256** seeded by SplitMix64), so equal configurations give byte-identical
//!   trees. Sex and age follow Japan's population pyramid by 5-year band and sex (rounded,
//!   after 総務省統計局 人口推計, 1 October 2023: about 124 million, 29 % aged 65+).
//! - **Insurance** by age: 後期高齢者医療 from 75 (insurer `39…`, no 記号, no 枝番), 国保 for
//!   most 65–74 and about a fifth of younger adults (6-digit insurer number), otherwise
//!   協会けんぽ (`01…`) or 健保組合 (`06…`); about 1.6 % receive 生活保護 (公費 `12…`, no card),
//!   close to the national share of recipients.
//! - **Chronic conditions** per age band and sex, as treated prevalences calibrated to the
//!   order of magnitude of the 令和2年患者調査 totals (高血圧性疾患 ≈15.1 M, 糖尿病 ≈5.8 M,
//!   脂質異常症 ≈4.0 M patients), plus asthma, GERD, depression, knee osteoarthritis, atrial
//!   fibrillation, CKD and Alzheimer's disease. Chronic patients are followed monthly or every
//!   two months at a clinic or (30 %) a hospital, with labs every third visit.
//! - **Acute episodes** (upper respiratory infection, influenza, gastroenteritis, bronchitis,
//!   COVID-19) with monthly seasonality (influenza peaking January–February), more often in
//!   young children and the elderly. Health checkups for some adults over 40, short hospital
//!   stays for some elderly hospital patients, influenza vaccination (about half of those 65+).
//! - **Long-term care**: certification rates by age (about 3 % at 65–69 rising to 72 % at 90+,
//!   after 介護保険事業状況報告) and the national spread of care levels; monthly benefit
//!   statements with day-care, home-help, rental, nursing and care-plan services.
//! - **Heavy tail**: persons whose index ends in 7 modulo 10 000 (0.01 %) are on haemodialysis
//!   three times a week: about 150 encounters, 1 800 lab results and daily receipt marks a year.
//! - **Regions**: persons are grouped 2 000 to a region with its own prefecture, four clinics,
//!   two hospitals (the EHR facilities, exporting FHIR) and two care providers. A person has one
//!   FHIR Patient per hospital visited, with its own id: linkage must use identifiers.
//!   Regions are built on up to four threads and written in order; the output does not
//!   depend on the thread count, and memory is bounded by the regions in flight (about
//!   130 MB peak RSS for 1 million persons).
//! - **Noise**: each record carries the person's identifiers in that source's convention
//!   (receipts: full-width 記号/番号, 6-digit 国保 insurer numbers, kana without space; FHIR:
//!   8-digit insurer, width per hospital; care: full-width space in names). On top, with
//!   probability `variant_rate`, one normalizable variant (digit width switch, hiragana,
//!   half-width kana, small kana written large, dropped long-vowel mark, missing 枝番) and with
//!   probability `typo_rate` one true typo (a digit of 番号, a kana, birth date ± 1 day).
//!
//! Codes: JLAC10, MEDIS, YJ, HOT9 and receipt codes have their real shapes; those copied from
//! the JP-CLINS examples and the receipt sample are real, the others are illustrative (see
//! `tables`). Facility, provider and insurer numbers are synthetic.

mod fhir;
mod noise;
mod person;
mod region;
mod rng;
mod tables;
mod uke;
mod visits;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use noise::NoiseKind;
pub use region::{CERT_HEADER, CONSENT_HEADER, FHIR_TYPES};
pub use uke::FIELD_COUNTS as UKE_FIELD_COUNTS;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of persons.
    pub persons: u64,
    /// Seed: equal configurations give byte-identical output.
    pub seed: u64,
    /// Probability that a record carries a true typo in an identifier (default 0.02).
    pub typo_rate: f64,
    /// First year of the period (January 1st).
    pub start_year: i32,
    /// Length of the period in months.
    pub months: u32,
    /// Probability that a record carries a normalizable variant of an identifier (default 0.1).
    pub variant_rate: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig { persons: 1000, seed: 1, typo_rate: 0.02, start_year: 2023, months: 12, variant_rate: 0.1 }
    }
}

impl SynthConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(SynthError::InvalidConfig { field, reason });
        if self.persons == 0 {
            return bad("persons", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.typo_rate) {
            return bad("typo_rate", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.variant_rate) {
            return bad("variant_rate", "must be between 0 and 1");
        }
        if !(1950..=2100).contains(&self.start_year) {
            return bad("start_year", "must be between 1950 and 2100");
        }
        if !(1..=120).contains(&self.months) {
            return bad("months", "must be between 1 and 120");
        }
        Ok(())
    }

    fn regions(&self) -> u64 {
        self.persons.div_ceil(person::REGION_SIZE)
    }
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A configuration value out of range.
    #[error("invalid synth configuration: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: &'static str },
    /// The output folder already holds files (stale files would break byte-identical trees).
    #[error("output folder {path} is not empty; choose a new folder")]
    OutputNotEmpty { path: PathBuf },
    /// A folder could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// Generated text that CP932 cannot represent (a bug in the embedded tables).
    #[error("{path}: generated text has a character CP932 cannot encode")]
    Unencodable { path: PathBuf },
}

/// Result alias of this crate.
pub type Result<T, E = SynthError> = std::result::Result<T, E>;

/// Files, records and bytes of one kind of output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub persons: u64,
    /// Per kind: `fhir/<Type>`, `fhir/bundles`, `receipts`, `care/benefit`,
    /// `care/care_certification`, `consent`, `ground_truth`.
    pub kinds: BTreeMap<String, KindStats>,
    /// Total bytes written, manifest excluded.
    pub bytes_written: u64,
}

/// The identifiers of one person-identifying source record, exactly as written into the
/// files (after noise), with the true person. `birth_date` is `YYYYMMDD` (FHIR writes the same
/// date as `YYYY-MM-DD`); `sex` is `1` or `2` (FHIR writes `male`/`female`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    /// As in `ground_truth.csv`.
    pub record_key: String,
    pub person_index: u64,
    pub insurer_number: Option<String>,
    pub kigo: Option<String>,
    pub bango: Option<String>,
    pub branch: Option<String>,
    pub kana_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// 介護保険 insurer number (care records only).
    pub care_insurer_number: Option<String>,
    /// 介護保険 insured-person number (care records only).
    pub care_insured_number: Option<String>,
    /// Which noise this record received.
    pub noise: NoiseKind,
}

/// The identities of every person-identifying record that [`generate`] writes for `cfg`,
/// in `ground_truth.csv` order, without writing files.
pub fn source_identities(cfg: &SynthConfig) -> impl Iterator<Item = SourceIdentity> {
    let cfg = cfg.clone();
    let mut cursor = region::Cursor::default();
    let regions = if cfg.validate().is_ok() { cfg.regions() } else { 0 };
    (0..regions).flat_map(move |r| region::build(&cfg, r, &mut cursor).identities)
}

struct Sink {
    path: PathBuf,
    w: BufWriter<File>,
    bytes: u64,
}

impl Sink {
    fn create(path: PathBuf) -> Result<Sink> {
        let f = File::create(&path).map_err(|source| SynthError::Write { path: path.clone(), source })?;
        Ok(Sink { path, w: BufWriter::with_capacity(1 << 20, f), bytes: 0 })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(|source| SynthError::Write { path: self.path.clone(), source })?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.w.flush().map_err(|source| SynthError::Write { path: self.path.clone(), source })?;
        Ok(self.bytes)
    }
}

fn cp932(path: &Path, text: &str) -> Result<Vec<u8>> {
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
    if bad {
        return Err(SynthError::Unencodable { path: path.to_owned() });
    }
    Ok(bytes.into_owned())
}

fn write_file(path: PathBuf, bytes: &[u8]) -> Result<u64> {
    fs::write(&path, bytes).map_err(|source| SynthError::Write { path, source })?;
    Ok(bytes.len() as u64)
}

fn mkdir(path: PathBuf) -> Result<()> {
    fs::create_dir_all(&path).map_err(|source| SynthError::CreateDir { path, source })
}

/// Generate the synthetic sources for `cfg` into `out` (created if missing; must be empty).
#[tracing::instrument(skip(cfg, out), fields(persons = cfg.persons, seed = cfg.seed))]
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS);
    generate_with(cfg, out, threads)
}

/// Upper bound of region builder threads (memory grows with regions in flight).
const MAX_THREADS: usize = 4;

/// [`generate`] with `threads` region builders; the output does not depend on `threads`.
fn generate_with(cfg: &SynthConfig, out: &Path, threads: usize) -> Result<SynthSummary> {
    cfg.validate()?;
    if out.exists() {
        let mut entries = fs::read_dir(out).map_err(|source| SynthError::CreateDir { path: out.to_owned(), source })?;
        if entries.next().is_some() {
            return Err(SynthError::OutputNotEmpty { path: out.to_owned() });
        }
    }
    for d in ["fhir/bundles", "receipts", "care", "consent"] {
        mkdir(out.join(d))?;
    }
    let mut ndjson: Vec<Sink> =
        FHIR_TYPES.iter().map(|t| Sink::create(out.join("fhir").join(format!("{t}.ndjson")))).collect::<Result<_>>()?;
    let cert_path = out.join("care/care_certification.csv");
    let mut cert = Sink::create(cert_path.clone())?;
    cert.write(&cp932(&cert_path, &format!("{CERT_HEADER}\r\n"))?)?;
    let mut consent = Sink::create(out.join("consent/consent.csv"))?;
    consent.write(format!("{CONSENT_HEADER}\n").as_bytes())?;
    let mut truth = Sink::create(out.join("ground_truth.csv"))?;
    truth.write(b"record_key,person_index\n")?;

    let mut s = SynthSummary { persons: cfg.persons, ..SynthSummary::default() };
    let mut stat = |kind: &str, files: u64, records: u64, bytes: u64| {
        let k = s.kinds.entry(kind.to_owned()).or_default();
        k.files += files;
        k.records += records;
        k.bytes += bytes;
    };
    let mut cursor = region::Cursor::default();
    let regions = cfg.regions();
    let batch = threads.max(1) as u64;
    let mut next = 0;
    while next < regions {
        let hi = (next + batch).min(regions);
        let built: Vec<region::RegionOut> = if hi - next == 1 {
            vec![region::build_local(cfg, next)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (next..hi).map(|i| scope.spawn(move || region::build_local(cfg, i))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
            })
        };
        for mut reg in built {
            let r = next;
            next += 1;
            region::finalize(&mut reg, &mut cursor);
            for (i, sink) in ndjson.iter_mut().enumerate() {
                sink.write(reg.ndjson[i].as_bytes())?;
                stat(&format!("fhir/{}", FHIR_TYPES[i]), 0, reg.ndjson_counts[i], reg.ndjson[i].len() as u64);
            }
            for b in &reg.bundles {
                let n = write_file(out.join("fhir/bundles").join(&b.name), b.text.as_bytes())?;
                stat("fhir/bundles", 1, b.records, n);
            }
            for f in &reg.receipts {
                let path = out.join("receipts").join(&f.name);
                let n = write_file(path.clone(), &cp932(&path, &f.text)?)?;
                stat("receipts", 1, f.records, n);
            }
            for f in &reg.care {
                let path = out.join("care").join(&f.name);
                let n = write_file(path.clone(), &cp932(&path, &f.text)?)?;
                stat("care/benefit", 1, f.records, n);
            }
            let bytes = cp932(&cert_path, &reg.cert)?;
            cert.write(&bytes)?;
            stat("care/care_certification", 0, reg.cert_rows, bytes.len() as u64);
            consent.write(reg.consent.as_bytes())?;
            stat("consent", 0, reg.consent_rows, reg.consent.len() as u64);
            let mut gt = String::with_capacity(reg.identities.len() * 48);
            for id in &reg.identities {
                gt.push_str(&id.record_key);
                gt.push(',');
                gt.push_str(&id.person_index.to_string());
                gt.push('\n');
            }
            truth.write(gt.as_bytes())?;
            stat("ground_truth", 0, reg.identities.len() as u64, gt.len() as u64);
            if (r + 1) % 50 == 0 || r + 1 == regions {
                tracing::info!(region = r + 1, regions, "synth progress");
            }
        }
    }
    for (i, sink) in ndjson.into_iter().enumerate() {
        let n = sink.finish()?;
        let k = s.kinds.entry(format!("fhir/{}", FHIR_TYPES[i])).or_default();
        k.files = 1;
        k.bytes = n;
    }
    let header_bytes = [
        ("care/care_certification", cert.finish()?),
        ("consent", consent.finish()?),
        ("ground_truth", truth.finish()?),
    ];
    for (kind, n) in header_bytes {
        let k = s.kinds.entry(kind.to_owned()).or_default();
        k.files = 1;
        k.bytes = n;
    }
    s.bytes_written = s.kinds.values().map(|k| k.bytes).sum();

    let counts: serde_json::Map<String, serde_json::Value> = s
        .kinds
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!({ "files": v.files, "records": v.records, "bytes": v.bytes })))
        .collect();
    let manifest = serde_json::json!({
        "generator": "niji-synth",
        "format_version": 1,
        "persons": cfg.persons,
        "seed": cfg.seed,
        "typo_rate": cfg.typo_rate,
        "variant_rate": cfg.variant_rate,
        "start_year": cfg.start_year,
        "months": cfg.months,
        "counts": counts,
    });
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    write_file(out.join("manifest.json"), text.as_bytes())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let bytes = fs::read(&p).unwrap_or_default();
                    out.insert(p.strip_prefix(dir).map(Path::to_owned).unwrap_or_default(), bytes);
                }
            }
        }
        out
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_builder_threads() {
        let cfg = SynthConfig { persons: 2 * person::REGION_SIZE + 300, seed: 11, ..SynthConfig::default() };
        let (Ok(a), Ok(b)) = (tempfile::tempdir(), tempfile::tempdir()) else { panic!("tempdir") };
        let sa = generate_with(&cfg, a.path(), 1);
        let sb = generate_with(&cfg, b.path(), 3);
        assert!(sa.is_ok() && sa.ok() == sb.ok());
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert!(fa.len() > 10);
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (k, v) in &fa {
            assert!(v == &fb[k], "{} differs", k.display());
        }
        // The streaming identities agree with the ground truth written in parallel.
        let truth = String::from_utf8(fa[Path::new("ground_truth.csv")].clone()).unwrap_or_default();
        let keys: Vec<String> =
            source_identities(&cfg).map(|i| format!("{},{}", i.record_key, i.person_index)).collect();
        assert_eq!(truth.lines().skip(1).map(str::to_owned).collect::<Vec<_>>(), keys);
    }
}
