//! `receipt`: `.UKE` → CDM Parquet records/s, ours against `iconv -f CP932 | DuckDB read_csv →
//! COPY … (FORMAT parquet)` on the same file in the same run.
//!
//! The input is the real third-party sample (`tests/data/receipts/`) with its receipts
//! repeated to about ten receipts per synthetic person (IR header once, GO trailer once).
//! Ours does the whole job (CP932 decode, receipt grouping, validation, linkage HMACs, six
//! CDM tables); the peer only transcodes and copies the lines into one all-varchar table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::{Opts, peer};

const PEER: &str = r#"
import subprocess, sys, time, duckdb
src, utf8, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
with open(utf8, "wb") as f:
    subprocess.run(["iconv", "-f", "CP932", "-t", "UTF-8", src], stdout=f, check=True)
cols = "{" + ",".join(f"'c{i}': 'VARCHAR'" for i in range(48)) + "}"
con = duckdb.connect()
con.execute(f"COPY (SELECT * FROM read_csv('{utf8}', columns={cols}, header=false, delim=',', quote='', escape='', null_padding=true, auto_detect=false)) TO '{out}' (FORMAT parquet)")
t1 = time.perf_counter()
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(f"seconds={t1 - t0}")
print(f"rows={rows}")
"#;

/// Build the input file: IR + the sample's receipts repeated + GO. Returns (path, lines).
fn build_input(opts: &Opts) -> anyhow::Result<(PathBuf, u64)> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/receipts/RECEIPTC_GAIRAI_SAMPLE.UKE");
    let bytes = std::fs::read(&sample).with_context(|| format!("reading {}", sample.display()))?;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let header = lines.iter().find(|l| l.starts_with(b"IR,")).context("sample has no IR")?;
    let body: Vec<&[u8]> = lines.iter().copied().filter(|l| !l.starts_with(b"IR,") && !l.starts_with(b"GO,")).collect();
    let receipts_per_copy = body.iter().filter(|l| l.starts_with(b"RE,")).count() as u64;
    let copies = (opts.persons * 10).div_ceil(receipts_per_copy).max(1);
    let mut out = Vec::with_capacity(bytes.len() * copies as usize);
    out.extend_from_slice(header);
    out.push(b'\n');
    for _ in 0..copies {
        for l in &body {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(format!("GO,{},0,99\r\n", receipts_per_copy * copies).as_bytes());
    let path = opts.work.join("receipt-bench.UKE");
    std::fs::write(&path, &out)?;
    Ok((path, 2 + copies * body.len() as u64))
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let (input, lines) = build_input(opts)?;
    let size = std::fs::metadata(&input)?.len();
    println!("receipt: {} lines, {:.1} MB CP932", lines, size as f64 / 1e6);
    let key = niji_pseudo::PseudonymKey::from_bytes(&[7; 32])?;
    let out = opts.work.join("receipt-bench-out");
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    let (report, stats) = niji_ingest::receipt::run(std::slice::from_ref(&input), &out, &key, None)?;
    let ours = t.elapsed().as_secs_f64();
    anyhow::ensure!(report.records == lines && report.quarantined == 0, "benchmark input did not load cleanly");
    println!(
        "  ours: {} receipts, {} rows in {:.3} s",
        stats.receipts,
        report.rows_per_table.values().sum::<u64>(),
        ours
    );
    let utf8 = opts.work.join("receipt-bench.utf8.csv");
    let parquet = opts.work.join("receipt-bench-duckdb.parquet");
    let res = peer::run(PEER, &[&path_str(&input)?, &path_str(&utf8)?, &path_str(&parquet)?])?;
    let peer_s = peer::value(&res, "seconds")?;
    let peer_rows = peer::value(&res, "rows")?;
    anyhow::ensure!(peer_rows as u64 == lines, "peer loaded {peer_rows} rows, expected {lines}");
    println!("  duckdb: {peer_rows} rows in {peer_s:.3} s");
    peer::row("receipt", "receipt .UKE → Parquet", "records/s", lines as f64 / ours, "duckdb", lines as f64 / peer_s);
    peer::row(
        "receipt",
        "receipt .UKE → Parquet",
        "MB/s",
        size as f64 / 1e6 / ours,
        "duckdb",
        size as f64 / 1e6 / peer_s,
    );
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(p)?;
    abs.to_str().map(str::to_owned).context("non-UTF-8 path")
}
