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

/// A direct measurement for the summary line: best of 5 rounds over the inputs.
fn summary() {
    let key = PseudonymKey::from_bytes(b"benchmark key, 32 bytes or more!").unwrap();
    let inputs = inputs();
    let msgs = messages(&inputs);
    let rounds = 200;
    let rate = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..rounds {
                    f();
                }
                (rounds * N) as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let hmac = rate(&|| {
        for p in &inputs {
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            black_box(key.pseudonym_bytes(Domain::PersonId1, &parts));
        }
    });
    let hex = rate(&|| {
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
    println!();
    println!("| function (one core, ID1-shaped input, {} bytes avg) | per second | vs plain SHA-256 |", {
        msgs.iter().map(Vec::len).sum::<usize>() / msgs.len()
    });
    println!("|---|---:|---:|");
    println!(
        "| keyed pseudonym, 128-bit bytes (HMAC-SHA-256, cloned pre-keyed state) | {:.2} M | {:.2} |",
        hmac / 1e6,
        hmac / sha
    );
    println!("| keyed pseudonym, 32-hex String | {:.2} M | {:.2} |", hex / 1e6, hex / sha);
    println!("| plain SHA-256 (not safe: dictionary attack) | {:.2} M | 1.00 |", sha / 1e6);
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
