//! Pseudonyms per second per core against raw SHA-256 of the same inputs, in the same run.
//!
//! `cargo bench -p niji-pseudo --bench pseudonym` prints criterion's throughput for each
//! function and then a one-line summary table with the ratio. Criterion runs one thread, so
//! the figures are per core.
#![allow(clippy::print_stdout, clippy::unwrap_used)] // A benchmark prints its table; setup cannot fail.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use niji_pseudo::{Domain, PseudonymKey};
use sha2::{Digest, Sha256};

const N: usize = 10_000;

/// ID1-shaped inputs: insurer number, 記号, 番号, birth date, sex.
fn inputs() -> Vec<[String; 5]> {
    (0..N)
        .map(|i| {
            [
                format!("{:08}", 6_130_000 + i % 977),
                format!("{}", i % 97),
                format!("{}", 100_000 + i),
                format!("19{:02}{:02}{:02}", 20 + i % 80, 1 + i % 12, 1 + i % 28),
                if i % 2 == 0 { "M".to_owned() } else { "F".to_owned() },
            ]
        })
        .collect()
}

/// The exact bytes the MAC sees (domain tag, then 0x1F-separated parts), for plain SHA-256.
fn messages(inputs: &[[String; 5]]) -> Vec<Vec<u8>> {
    inputs
        .iter()
        .map(|parts| {
            let mut m = b"niji/person/id1".to_vec();
            for p in parts {
                m.push(0x1f);
                m.extend_from_slice(p.as_bytes());
            }
            m
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = PseudonymKey::from_bytes(b"benchmark key, 32 bytes or more!").unwrap();
    let inputs = inputs();
    let msgs = messages(&inputs);
    let mut g = c.benchmark_group("pseudonym");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("hmac_sha256_bytes", |b| {
        b.iter(|| {
            for p in &inputs {
                let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
                black_box(key.pseudonym_bytes(Domain::PersonId1, &parts));
            }
        })
    });
    g.bench_function("hmac_sha256_hex_string", |b| {
        b.iter(|| {
            for p in &inputs {
                let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
                black_box(key.pseudonym(Domain::PersonId1, &parts));
            }
        })
    });
    g.bench_function("plain_sha256", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(Sha256::digest(m));
            }
        })
    });
    g.finish();
}

/// CPU seconds this thread has run (Linux `/proc/thread-self/stat`, utime + stime at 100 Hz);
/// `None` elsewhere. On a shared machine wall time undercounts a core's throughput, CPU time
/// does not.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) / 100.0)
}

/// A direct measurement for the summary table: best of 5 rounds, per wall second and per
/// CPU second of the measuring thread.
fn summary() {
    let key = PseudonymKey::from_bytes(b"benchmark key, 32 bytes or more!").unwrap();
    let inputs = inputs();
    let msgs = messages(&inputs);
    let rounds = 300;
    let rate = |f: &dyn Fn()| {
        let (mut best_wall, mut best_cpu) = (0.0f64, 0.0f64);
        for _ in 0..5 {
            let (t, c) = (Instant::now(), thread_cpu_seconds());
            for _ in 0..rounds {
                f();
            }
            let n = (rounds * N) as f64;
            best_wall = best_wall.max(n / t.elapsed().as_secs_f64());
            if let (Some(c0), Some(c1)) = (c, thread_cpu_seconds())
                && c1 > c0
            {
                best_cpu = best_cpu.max(n / (c1 - c0));
            }
        }
        (best_wall, best_cpu)
    };
    let hmac = rate(&|| {
        for p in &inputs {
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            black_box(key.pseudonym_bytes(Domain::PersonId1, &parts));
        }
    });
    let hex = rate(&|| {
        for p in &inputs {
            let mut buf = [0u8; 32];
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            key.pseudonym_hex(Domain::PersonId1, &parts, &mut buf);
            black_box(buf);
        }
    });
    let string = rate(&|| {
        for p in &inputs {
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            black_box(key.pseudonym(Domain::PersonId1, &parts));
        }
    });
    let sha = rate(&|| {
        for m in &msgs {
            black_box(Sha256::digest(m));
        }
    });
    let avg = msgs.iter().map(Vec::len).sum::<usize>() / msgs.len();
    println!();
    println!("ID1-shaped inputs, {avg} bytes on average; one thread; best of 5 x {rounds} x {N}");
    println!("| function | M/s per wall second | M/s per CPU second | vs plain SHA-256 (CPU) |");
    println!("|---|---:|---:|---:|");
    for (name, (w, c)) in [
        ("keyed pseudonym, 128-bit bytes (HMAC-SHA-256, cloned pre-keyed state)", hmac),
        ("keyed pseudonym, 32 hex into a buffer (pseudonym_hex)", hex),
        ("keyed pseudonym, 32-hex String (pseudonym)", string),
        ("plain SHA-256 of the same bytes (unsafe: dictionary attack)", sha),
    ] {
        let ratio = if sha.1 > 0.0 { c / sha.1 } else { w / sha.0 };
        println!("| {name} | {:.2} | {:.2} | {ratio:.2} |", w / 1e6, c / 1e6);
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
