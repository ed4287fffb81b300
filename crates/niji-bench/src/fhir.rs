//! `fhir`: FHIR Bulk Data NDJSON → Parquet, one thread each, on the same files in the same run:
//! - ours, pseudonymized: the full ingest (ViewDefinitions, linkage HMACs, CDM tables);
//! - ours, without pseudonymization: the same ViewDefinitions (`Mappings::builtin`) flattened
//!   straight to one zstd Parquet file per view — no linkage, no HMACs, no CDM mapping;
//! - DuckDB: `read_json` → `COPY … (FORMAT parquet)`;
//! - polars: `scan_ndjson` → `sink_parquet` (`POLARS_MAX_THREADS=1`).
//!
//! The input is generated here in the JP-CLINS shapes (Patient with the insurance member id
//! and a kana name, Condition with a MEDIS code, laboratory Observation with JLAC10), one file
//! per resource type as Bulk Data exports them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::{Opts, peer};

const KANA: [char; 10] = ['ア', 'イ', 'ウ', 'エ', 'オ', 'カ', 'キ', 'ク', 'ケ', 'コ'];

fn generate(dir: &Path, persons: u64) -> anyhow::Result<(Vec<PathBuf>, u64, u64)> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> =
        ["Patient", "Condition", "Observation"].iter().map(|t| dir.join(format!("{t}.ndjson"))).collect();
    let mut w: Vec<std::io::BufWriter<std::fs::File>> =
        paths.iter().map(|p| std::fs::File::create(p).map(std::io::BufWriter::new)).collect::<Result<_, _>>()?;
    let mut resources = 0u64;
    for i in 0..persons {
        let (y, m, d) = (1930 + i % 80, 1 + i % 12, 1 + i % 28);
        let sex = if i % 2 == 0 { "female" } else { "male" };
        // A distinct all-kana given name per person (the reader quarantines digits in kana names).
        let kana: String = i.to_string().chars().map(|c| KANA[c.to_digit(10).unwrap_or(0) as usize]).collect();
        writeln!(
            w[0],
            r#"{{"resourceType":"Patient","id":"p{i}","identifier":[{{"system":"http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID","value":"{:08}:あいう:{}:01"}}],"name":[{{"extension":[{{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}}],"text":"ヤマダ {kana}","family":"ヤマダ","given":["{kana}"]}}],"gender":"{sex}","birthDate":"{y}-{m:02}-{d:02}","address":[{{"state":"東京都","postalCode":"100-0001"}}]}}"#,
            10_000 + i % 5000,
            i
        )?;
        resources += 1;
        for j in 0..3 {
            writeln!(
                w[1],
                r#"{{"resourceType":"Condition","id":"c{i}-{j}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"code":{{"coding":[{{"system":"http://medis.or.jp/CodeSystem/master-disease-keyNumber","code":"2006{:04}"}},{{"system":"http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full","code":"E11{j}"}}],"text":"糖尿病"}},"subject":{{"reference":"Patient/p{i}"}},"onsetDateTime":"2021-0{}-1{j}","recordedDate":"2021-07-12"}}"#,
                (i * 7 + j) % 10_000,
                1 + j
            )?;
            resources += 1;
        }
        for j in 0..6 {
            writeln!(
                w[2],
                r#"{{"resourceType":"Observation","id":"o{i}-{j}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://medis.or.jp/CodeSystem/master-JLAC10-17digits","code":"3H01500000232610{j}"}}]}},"subject":{{"reference":"Patient/p{i}"}},"effectiveDateTime":"2021-07-1{j}T09:00:00+09:00","valueQuantity":{{"value":{}.{},"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}},"referenceRange":[{{"low":{{"value":3.5}},"high":{{"value":5.0}}}}]}}"#,
                3 + i % 3,
                j
            )?;
            resources += 1;
        }
    }
    for mut f in w {
        f.flush()?;
    }
    let bytes = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len())).sum::<Result<u64, _>>()?;
    Ok((paths, bytes, resources))
}

const POLARS: &str = r#"
import os, sys, time
os.environ["POLARS_MAX_THREADS"] = "1"
import polars as pl
out = sys.argv[1]
files = sys.argv[2:]
t = time.perf_counter()
for i, f in enumerate(files):
    pl.scan_ndjson(f).sink_parquet(f"{out}/polars{i}.parquet")
print(f"seconds={time.perf_counter() - t}")
"#;

/// Ours without pseudonymization: NDJSON → the built-in ViewDefinitions → zstd Parquet, one
/// file per view. Returns (seconds, rows written).
fn views_only(inputs: &[PathBuf], out: &Path) -> anyhow::Result<(f64, u64)> {
    use std::io::BufRead;

    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;

    std::fs::create_dir_all(out)?;
    let t = Instant::now();
    let maps = niji_ingest::fhir::Mappings::builtin()?;
    let env = niji_ingest::fhir::Env::default();
    let mut written = 0u64;
    for (i, input) in inputs.iter().enumerate() {
        let mut writer: Option<ArrowWriter<std::fs::File>> = None;
        let mut rows = Vec::new();
        let mut view = None;
        let reader = std::io::BufReader::new(std::fs::File::open(input)?);
        let mut flush = |rows: &mut Vec<Vec<niji_ingest::fhir::Cell>>,
                         view: &niji_ingest::fhir::View,
                         writer: &mut Option<ArrowWriter<std::fs::File>>|
         -> anyhow::Result<()> {
            let batch = view.to_record_batch(rows)?;
            if writer.is_none() {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
                    .build();
                let f = std::fs::File::create(out.join(format!("view{i}.parquet")))?;
                *writer = Some(ArrowWriter::try_new(f, batch.schema(), Some(props))?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)?;
            }
            written += rows.len() as u64;
            rows.clear();
            Ok(())
        };
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let res: serde_json::Value = serde_json::from_str(&line)?;
            let rt = res.get("resourceType").and_then(|v| v.as_str()).unwrap_or("");
            let v = maps.view(rt).with_context(|| format!("no view for {rt}"))?;
            rows.extend(v.eval(&res, &env)?);
            view = Some(v);
            if rows.len() >= niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS {
                flush(&mut rows, v, &mut writer)?;
            }
        }
        if let Some(v) = view
            && !rows.is_empty()
        {
            flush(&mut rows, v, &mut writer)?;
        }
        if let Some(w) = writer {
            w.close()?;
        }
    }
    Ok((t.elapsed().as_secs_f64(), written))
}

const DUCKDB: &str = r#"
import sys, time, duckdb
out = sys.argv[1]
files = sys.argv[2:]
con = duckdb.connect()
con.execute("SET threads TO 1")
t = time.perf_counter()
for i, f in enumerate(files):
    con.execute(f"COPY (SELECT * FROM read_json('{f}', format='newline_delimited')) TO '{out}/duck{i}.parquet' (FORMAT parquet)")
print(f"seconds={time.perf_counter() - t}")
"#;

/// Run the item.
pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let dir = opts.work.join(format!("fhir-{}", opts.persons));
    let (inputs, bytes, resources) = generate(&dir.join("in"), opts.persons)?;
    let mb = bytes as f64 / 1e6;
    eprintln!("fhir: {} persons, {resources} resources, {mb:.1} MB NDJSON", opts.persons);

    let key = niji_pseudo::PseudonymKey::from_bytes(&[9u8; 32])?;
    let out = dir.join("ours");
    let t = Instant::now();
    let report = niji_ingest::fhir::ingest(
        &niji_ingest::fhir::FhirIngestOptions {
            inputs: inputs.clone(),
            out: out.clone(),
            batch_rows: niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS,
        },
        &key,
    )?;
    let ours = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.quarantined == 0 && report.loaded == resources,
        "benchmark input did not load cleanly: {} resources, {} loaded, {} quarantined",
        resources,
        report.loaded,
        report.quarantined
    );

    let duck_out = dir.join("duck");
    std::fs::create_dir_all(&duck_out)?;
    let abs = |p: &Path| std::fs::canonicalize(p).map(|p| p.display().to_string());
    let mut args = vec![abs(&duck_out)?];
    for i in &inputs {
        args.push(abs(i)?);
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let duck = peer::value(&peer::run(DUCKDB, &arg_refs)?, "seconds")?;

    let polars_out = dir.join("polars");
    std::fs::create_dir_all(&polars_out)?;
    args[0] = abs(&polars_out)?;
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let polars = peer::value(&peer::run(POLARS, &arg_refs)?, "seconds")?;

    let (plain, view_rows) = views_only(&inputs, &dir.join("views-only"))?;
    eprintln!(
        "fhir: ours {ours:.2} s, views only {plain:.2} s ({view_rows} rows), duckdb {duck:.2} s, polars {polars:.2} s"
    );

    for (what, secs) in [("fhir ndjson→parquet, pseudonymized", ours), ("fhir ndjson→parquet, no pseudonyms", plain)]
    {
        for (peer_name, peer_s) in [("duckdb", duck), ("polars", polars)] {
            peer::row("fhir", what, "MB/s", mb / secs, peer_name, mb / peer_s);
            peer::row("fhir", what, "resources/s", resources as f64 / secs, peer_name, resources as f64 / peer_s);
        }
    }
    Ok(())
}
