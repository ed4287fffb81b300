//! A tiny smoke run of the `query` and `pseudo` items without the Python peers: no network,
//! a few hundred persons, one run per query. Checks that the benchmark still runs, not speed.
#![allow(clippy::unwrap_used)]

use crate::query::{self, Released};
use crate::{Opts, pseudo, report};

#[test]
fn query_and_pseudo_items_run_small_without_peers() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts { persons: 200, work: dir.path().to_owned(), runs: 1, peers: false, ..Opts::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = rt.block_on(query::run_async(&opts)).unwrap();
    assert_eq!(results.len(), query::QUERIES.len());
    for r in &results {
        assert!(r.plain_ms.is_some(), "{} failed in plain DataFusion", r.name);
        for (mode, out) in [("sdc", &r.sdc), ("dp", &r.dp)] {
            if let Released::Refused { code, .. } = out {
                // A refusal is a result to report; a bug is not.
                assert!(
                    !["internal", "sql_plan", "execution_failed"].contains(&code.as_str()),
                    "{} {mode}: {code}",
                    r.name
                );
            }
        }
    }
    assert!(results.iter().any(|r| matches!(r.sdc, Released::Answered { .. })), "sdc answered nothing");
    let (hmac, hex, sha) = pseudo::measure(2_000).unwrap();
    assert!(hmac > 0.0 && hex > 0.0 && sha > 0.0);
    let table = report::table();
    assert!(table.contains("q1 persons by age band"), "{table}");
}
