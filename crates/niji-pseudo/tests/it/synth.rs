//! Linkage quality on niji-synth output against its ground truth, at typo rates 0 % and 2 %,
//! with the stateless rule and with the resolver (strict and bridging). Prints the figures
//! quoted in docs/PSEUDONYMIZATION.md; asserts floors that a broken normalization or rule
//! would miss.

use std::collections::BTreeMap;

use niji_pseudo::linkage::{Id2Bridging, LinkageQuality, RawIdentifiers, Resolver, evaluate, link_raw};
use niji_pseudo::{PseudoError, PseudonymKey};
use niji_synth::{SourceIdentity, SynthConfig, source_identities};

const PERSONS: u64 = 20_000;

struct Run {
    records: usize,
    quarantined: BTreeMap<String, usize>,
    stateless: LinkageQuality,
    strict: LinkageQuality,
    bridge: LinkageQuality,
    ambiguous_id2: usize,
}

fn raw(s: &SourceIdentity) -> RawIdentifiers<'_> {
    RawIdentifiers {
        insurer_number: s.insurer_number.as_deref(),
        kigo: s.kigo.as_deref(),
        bango: s.bango.as_deref(),
        branch: s.branch.as_deref(),
        kana_name: s.kana_name.as_deref(),
        birth_date: s.birth_date.as_deref(),
        sex: s.sex.as_deref(),
        source_id: None,
    }
}

/// A label per record: the predicted person, or the record's own key when unlinked (its
/// missed pairs count against recall).
fn labels(ids: &[SourceIdentity], predicted: &[Option<String>]) -> Vec<(String, u64)> {
    ids.iter()
        .zip(predicted)
        .map(|(s, p)| (p.clone().unwrap_or_else(|| format!("unlinked:{}", s.record_key)), s.person_index))
        .collect()
}

fn run(typo_rate: f64) -> Run {
    let cfg = SynthConfig { persons: PERSONS, seed: 20_241_125, typo_rate, ..SynthConfig::default() };
    let key = PseudonymKey::from_bytes(b"linkage evaluation key, not a secret").unwrap();
    let ids: Vec<SourceIdentity> = source_identities(&cfg).collect();
    let mut quarantined = BTreeMap::new();
    let links: Vec<_> = ids
        .iter()
        .map(|s| match link_raw(&key, &raw(s), None) {
            Ok(l) => Some(l),
            Err(e) => {
                let why = match e {
                    PseudoError::MalformedIdentifier { field, reason } => format!("{field}: {reason}"),
                    other => other.to_string(),
                };
                *quarantined.entry(why).or_insert(0) += 1;
                None
            }
        })
        .collect();
    let stateless: Vec<Option<String>> = links.iter().map(|l| l.as_ref().map(|l| l.person_id.clone())).collect();
    let resolve = |mode| {
        let mut r = Resolver::new(mode);
        for l in &links {
            r.add(l.as_ref());
        }
        r.resolve()
    };
    let (strict, bridge) = (resolve(Id2Bridging::Strict), resolve(Id2Bridging::Bridge));
    Run {
        records: ids.len(),
        quarantined,
        stateless: evaluate(labels(&ids, &stateless)),
        strict: evaluate(labels(&ids, &strict.person_ids)),
        bridge: evaluate(labels(&ids, &bridge.person_ids)),
        ambiguous_id2: bridge.ambiguous_id2,
    }
}

fn print(typo_rate: f64, r: &Run) {
    println!(
        "typo rate {:.0} %: {} records of {} persons, quarantined {:?}, ambiguous ID2 {}",
        typo_rate * 100.0,
        r.records,
        r.stateless.true_persons,
        r.quarantined,
        r.ambiguous_id2
    );
    println!("| rule | precision | recall | F1 | predicted persons |");
    for (name, q) in
        [("stateless (ID1 else ID2)", &r.stateless), ("resolver strict", &r.strict), ("resolver bridge", &r.bridge)]
    {
        println!("| {name} | {:.5} | {:.5} | {:.5} | {} |", q.precision, q.recall, q.f1, q.predicted_persons);
    }
}

#[test]
fn linkage_quality_on_synthetic_persons() {
    let clean = run(0.0);
    print(0.0, &clean);
    let typos = run(0.02);
    print(0.02, &typos);

    assert!(clean.records as u64 > PERSONS, "several records per person");
    // Without typos nothing is malformed and nobody is merged with someone else.
    assert!(clean.quarantined.is_empty(), "{:?}", clean.quarantined);
    for q in [&clean.stateless, &clean.strict, &clean.bridge] {
        assert!(q.precision >= 0.999, "{q:?}");
    }
    // The resolver links every normalizable variant: recall is (near) perfect at 0 %.
    assert!(clean.strict.recall >= 0.999, "{:?}", clean.strict);
    assert!(clean.strict.recall >= clean.stateless.recall);
    // The stateless rule cannot join ID2-only records (care, consent) to ID1 persons.
    assert!(clean.stateless.recall >= 0.75, "{:?}", clean.stateless);
    // 2 % typos cost some recall but precision stays high.
    for q in [&typos.stateless, &typos.strict, &typos.bridge] {
        assert!(q.precision >= 0.999, "{q:?}");
    }
    assert!(typos.stateless.recall >= 0.75, "{:?}", typos.stateless);
    assert!(typos.strict.recall >= 0.95, "{:?}", typos.strict);
    assert!(typos.bridge.recall >= typos.strict.recall);
    assert!(typos.strict.recall >= typos.stateless.recall);
}
