//! `pseudo`: keyed pseudonyms per second through niji-pseudo's API (`PseudonymKey`,
//! HMAC-SHA-256 with a pre-keyed state, domain `PersonId1`) against raw SHA-256 of the same
//! bytes (the domain tag and the 0x1F-separated parts the MAC sees), one thread, same inputs,
//! same run. Best of three passes over `--persons` × 10 ID1-shaped inputs (at least 100,000).

use std::hint::black_box;
use std::time::Instant;

use niji_pseudo::{Domain, PseudonymKey};
use sha2::{Digest, Sha256};

use crate::{Opts, report};

/// ID1-shaped inputs: insurer number, 記号, 番号, birth date, sex.
fn inputs(n: usize) -> Vec<[String; 5]> {
    (0..n)
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

/// The bytes the MAC sees, for plain SHA-256.
fn message(parts: &[String; 5]) -> Vec<u8> {
    let mut m = b"niji/person/id1".to_vec();
    for p in parts {
        m.push(0x1f);
        m.extend_from_slice(p.as_bytes());
    }
    m
}

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Measured rates, per second: (HMAC bytes, HMAC hex, SHA-256).
pub fn measure(n: usize) -> anyhow::Result<(f64, f64, f64)> {
    let key = PseudonymKey::from_bytes(&[11u8; 32])?;
    let inputs = inputs(n);
    let msgs: Vec<Vec<u8>> = inputs.iter().map(message).collect();
    let hmac = best_of_3(|| {
        for p in &inputs {
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            black_box(key.pseudonym_bytes(Domain::PersonId1, &parts));
        }
    });
    let hmac_hex = best_of_3(|| {
        let mut out = [0u8; 32];
        for p in &inputs {
            let parts = [p[0].as_str(), &p[1], &p[2], &p[3], &p[4]];
            key.pseudonym_hex(Domain::PersonId1, &parts, &mut out);
            black_box(&out);
        }
    });
    let sha = best_of_3(|| {
        for m in &msgs {
            black_box(Sha256::digest(m));
        }
    });
    Ok((n as f64 / hmac, n as f64 / hmac_hex, n as f64 / sha))
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let n = usize::try_from(opts.persons.saturating_mul(10).max(100_000))?;
    let (hmac, hex, sha) = measure(n)?;
    println!("pseudo: {n} ID1 inputs, one thread, best of 3");
    for (what, ours) in [("HMAC pseudonym (16 bytes)", hmac), ("HMAC pseudonym (32 hex chars)", hex)] {
        println!("  {what:<34} {:>8.2} M/s  SHA-256 {:>8.2} M/s  ratio {:.2}×", ours / 1e6, sha / 1e6, ours / sha);
        report::pair("pseudo", what, "M/s (1 thread)", ours / 1e6, "sha-256", sha / 1e6, "same inputs");
    }
    Ok(())
}
