//! `fhir`: FHIR Bulk Data NDJSON → Parquet on the same files in the same run, with one thread
//! each and again with two (where the machine has two cores):
//! - ours, pseudonymized: the full ingest (ViewDefinitions, linkage HMACs, CDM tables), with
//!   `threads` = 1 and 2 (`niji_ingest::fhir::ingest_with_threads`: with 2, reading, JSON
//!   parsing and view evaluation run on a second thread ahead of the mapping);
//! - ours, without pseudonymization: the same ViewDefinitions (`Mappings::builtin`) flattened
//!   straight to one zstd Parquet file per view — no linkage, no HMACs, no CDM mapping (with 2
//!   threads: evaluation on one, Arrow batches and Parquet on the other);
//! - DuckDB: `read_json` → `COPY … (FORMAT parquet)` with `SET threads` = 1 and 2;
//! - polars: `scan_ndjson` → `sink_parquet` (`POLARS_MAX_THREADS=1`).
//!
//! `--runs R` (default 3) repeats the whole comparison R times, each contender once per round in
//! turn, and reports medians with the range of the per-round ratios. `--no-peers` measures ours
//! only.
//!
//! The input is generated here in the JP-CLINS shapes (Patient with the insurance member id
//! and a kana name, Condition with a MEDIS code, laboratory Observation with JLAC10), one file
//! per resource type as Bulk Data exports them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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

type Rows = Vec<Vec<niji_ingest::fhir::Cell>>;

/// A resource's view and its rows (or the evaluation error).
fn eval_view<'m>(
    maps: &'m niji_ingest::fhir::Mappings,
    env: &niji_ingest::fhir::Env<'_>,
    u: &niji_ingest::fhir::read::Unit<'_>,
) -> Option<(&'m niji_ingest::fhir::View, Result<Rows, String>)> {
    let res = u.resource.as_ref().ok()?;
    let v = maps.view(u.resource_type)?;
    Some((v, v.eval(*res, env).map_err(|e| e.to_string())))
}

/// Ours without pseudonymization: NDJSON → the built-in ViewDefinitions → zstd Parquet, one
/// file per view, through the ingest's reader. Returns (seconds, rows written).
fn views_only(inputs: &[PathBuf], out: &Path, threads: usize) -> anyhow::Result<(f64, u64)> {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;
    use niji_ingest::fhir::View;

    std::fs::create_dir_all(out)?;
    let t = Instant::now();
    let maps = niji_ingest::fhir::Mappings::builtin()?;
    let env = niji_ingest::fhir::Env::default();
    let mut written = 0u64;
    for (i, input) in inputs.iter().enumerate() {
        let mut writer: Option<ArrowWriter<std::fs::File>> = None;
        let mut rows: Rows = Vec::new();
        let mut view: Option<&View> = None;
        let mut failure: Option<anyhow::Error> = None;
        let mut flush = |rows: &mut Rows, view: &View| -> anyhow::Result<()> {
            let batch = view.to_record_batch(rows)?;
            if writer.is_none() {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
                    .build();
                let f = std::fs::File::create(out.join(format!("view{i}.parquet")))?;
                writer = Some(ArrowWriter::try_new(f, batch.schema(), Some(props))?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch)?;
            }
            written += rows.len() as u64;
            rows.clear();
            Ok(())
        };
        // The views are evaluated in `prepare` (the reading thread when pipelined); rows are
        // collected and written on this one.
        let prepare = |u: &niji_ingest::fhir::read::Unit<'_>| eval_view(&maps, &env, u);
        niji_ingest::fhir::read::read_input_prepared(input, None, threads >= 2, &prepare, &mut |_, pre| {
            if failure.is_some() {
                return Ok(());
            }
            let outcome = match pre.map(Option::as_mut) {
                Ok(Some((v, Ok(r)))) => {
                    let v: &View = v;
                    rows.append(r);
                    view = Some(v);
                    if rows.len() >= niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS {
                        flush(&mut rows, v)
                    } else {
                        Ok(())
                    }
                }
                Ok(Some((_, Err(e)))) => Err(anyhow::anyhow!("view evaluation failed: {e}")),
                Ok(None) => Err(anyhow::anyhow!("a resource without a view")),
                Err(b) => Err(anyhow::anyhow!("bad record: {}", b.reason)),
            };
            failure = outcome.err();
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(v) = view
            && !rows.is_empty()
        {
            flush(&mut rows, v)?;
        }
        if let Some(w) = writer {
            w.close()?;
        }
    }
    Ok((t.elapsed().as_secs_f64(), written))
}

const DUCKDB: &str = r#"
import sys, time, duckdb
threads = int(sys.argv[1])
out = sys.argv[2]
files = sys.argv[3:]
con = duckdb.connect()
con.execute(f"SET threads TO {threads}")
t = time.perf_counter()
for i, f in enumerate(files):
    con.execute(f"COPY (SELECT * FROM read_json('{f}', format='newline_delimited')) TO '{out}/duck{i}.parquet' (FORMAT parquet)")
print(f"seconds={time.perf_counter() - t}")
"#;

/// The full ingest with `threads`; returns its seconds after checking that it loaded cleanly.
fn ours(inputs: &[PathBuf], out: &Path, threads: usize, resources: u64) -> anyhow::Result<(f64, Vec<(String, u64)>)> {
    let key = niji_pseudo::PseudonymKey::from_bytes(&[9u8; 32])?;
    let t = Instant::now();
    let report = niji_ingest::fhir::ingest_with_threads(
        &niji_ingest::fhir::FhirIngestOptions {
            inputs: inputs.to_vec(),
            out: out.to_owned(),
            batch_rows: niji_ingest::sink::CdmSink::DEFAULT_BATCH_ROWS,
        },
        &key,
        None,
        threads,
    )?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.quarantined == 0 && report.loaded == resources,
        "benchmark input did not load cleanly: {} resources, {} loaded, {} quarantined",
        resources,
        report.loaded,
        report.quarantined
    );
    Ok((secs, report.rows_per_table.into_iter().collect()))
}

/// Run the item.
pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let dir = opts.work.join(format!("fhir-{}", opts.persons));
    let (inputs, bytes, resources) = generate(&dir.join("in"), opts.persons)?;
    let mb = bytes as f64 / 1e6;
    // Two threads only where there are two cores: otherwise the second figure would measure
    // time slicing, not parallelism.
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let thread_counts: Vec<usize> = (1..=max_threads).collect();
    eprintln!("fhir: {} persons, {resources} resources, {mb:.1} MB NDJSON; threads {thread_counts:?}", opts.persons);

    // `--runs` rounds, each running every contender once in turn, so that a slow minute of a
    // shared machine hits all of them; medians are reported, with the range of the per-round
    // ratios.
    let runs = opts.runs;
    let n = thread_counts.len();
    let (mut ours_s, mut plain_s, mut duck_s) = (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
    let mut tables = None;
    let abs = |p: &Path| std::fs::canonicalize(p).map(|p| p.display().to_string());
    let files: Vec<String> = inputs.iter().map(|i| abs(i)).collect::<Result<_, _>>()?;
    for round in 1..=runs {
        for (k, &threads) in thread_counts.iter().enumerate() {
            let cpu0 = cpu_seconds();
            let (secs, rows) = ours(&inputs, &dir.join(format!("ours-{threads}")), threads, resources)?;
            let cpu = cpu_seconds() - cpu0;
            // The outputs do not depend on the thread count; the row counts per table must agree.
            if let Some(first) = &tables {
                anyhow::ensure!(first == &rows, "rows per table differ between thread counts");
            }
            tables = Some(rows);
            let (plain, view_rows) = views_only(&inputs, &dir.join(format!("views-only-{threads}")), threads)?;
            let mut line = format!(
                "fhir: round {round}/{runs}, {threads} thread(s): ours {secs:.2} s ({cpu:.2} s CPU), views only {plain:.2} s ({view_rows} rows)"
            );
            ours_s[k].push(secs);
            plain_s[k].push(plain);
            if opts.peers {
                let duck_out = dir.join(format!("duck-{threads}"));
                std::fs::create_dir_all(&duck_out)?;
                let mut args = vec![threads.to_string(), abs(&duck_out)?];
                args.extend(files.iter().cloned());
                let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let d = peer::value(&peer::run(DUCKDB, &arg_refs)?, "seconds")?;
                line.push_str(&format!(", duckdb {d:.2} s (ours / duckdb {:.2}x)", d / secs));
                duck_s[k].push(d);
            }
            eprintln!("{line}");
        }
    }
    let mut polars = None;
    if opts.peers {
        let polars_out = dir.join("polars");
        std::fs::create_dir_all(&polars_out)?;
        let mut args = vec![abs(&polars_out)?];
        args.extend(files.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let secs = peer::value(&peer::run(POLARS, &arg_refs)?, "seconds")?;
        eprintln!("fhir: polars with 1 thread {secs:.2} s");
        polars = Some(secs);
    }

    for (k, &threads) in thread_counts.iter().enumerate() {
        let t = if threads == 1 { "1 thread".to_owned() } else { format!("{threads} threads") };
        for (what, times) in [("pseudonymized", &ours_s[k]), ("no pseudonyms", &plain_s[k])] {
            let secs = crate::report::median(times.clone());
            let what = format!("fhir ndjson→parquet, {what}, {t}");
            let mut peers: Vec<(String, f64, String)> = Vec::new();
            if !duck_s[k].is_empty() {
                // Throughput ratios per round: peer seconds / our seconds.
                let per_round: Vec<f64> = duck_s[k].iter().zip(times).map(|(d, o)| d / o).collect();
                let (lo, hi) = per_round.iter().fold((f64::INFINITY, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
                let note = format!("median of {runs} alternating rounds; per-round ratio {lo:.2}–{hi:.2}x");
                eprintln!("fhir: {what}: {note}");
                peers.push((format!("duckdb {t}"), crate::report::median(duck_s[k].clone()), note));
            }
            if threads == 1
                && let Some(p) = polars
            {
                peers.push(("polars 1 thread".to_owned(), p, "polars: one run".to_owned()));
            }
            if peers.is_empty() {
                ours_only("fhir", &what, "MB/s", mb / secs);
                ours_only("fhir", &what, "resources/s", resources as f64 / secs);
            }
            for (peer_name, peer_s, note) in peers {
                peer::row_noted("fhir", &what, "MB/s", mb / secs, &peer_name, mb / peer_s, &note);
                let r = resources as f64;
                peer::row_noted("fhir", &what, "resources/s", r / secs, &peer_name, r / peer_s, &note);
            }
        }
    }
    Ok(())
}

/// A row with our figure only (`--no-peers`).
fn ours_only(item: &str, what: &str, unit: &str, ours: f64) {
    println!("{what:<36} {ours:>14.1} {unit:<12}");
    crate::report::record(crate::report::Row {
        item: item.into(),
        what: what.into(),
        unit: unit.into(),
        ours: Some(ours),
        peer: "-".into(),
        peer_value: None,
        note: "--no-peers".into(),
    });
}

/// CPU time of this process so far (user + system, all threads), from `/proc/self/stat`;
/// 0 where that is not available.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<f64>() / 100.0
}
