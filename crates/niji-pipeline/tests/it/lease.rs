//! The lease: of many concurrent takers exactly one wins; and two schedulers ticking the same
//! per-second pipeline never run it at the same time.

use std::sync::Arc;
use std::time::Duration;

use niji_pipeline::PipelineSpec;
use niji_pipeline::schedule::{Scheduler, TickResult};

use crate::support::{catalog, claims_spec, key, land_receipts, opts, synth};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_many_takers_gets_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path()).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let cat = cat.clone();
        tasks.push(tokio::spawn(async move { cat.acquire_lease("p", &format!("h{i}"), 60_000).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    let holder = cat.lease_holder("p").await.unwrap().unwrap();
    assert!(!cat.acquire_lease("p", "other", 60_000).await.unwrap());
    assert!(cat.renew_lease("p", &holder, 60_000).await.unwrap());
    assert!(!cat.renew_lease("p", "other", 60_000).await.unwrap());
    cat.release_lease("p", &holder).await.unwrap();
    assert!(cat.acquire_lease("p", "other", 1).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Expired: another may take it, and the old holder can no longer renew it.
    assert!(cat.acquire_lease("p", "third", 60_000).await.unwrap());
    assert!(!cat.renew_lease("p", "other", 60_000).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_never_run_one_pipeline_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = synth(d);
    land_receipts(&all, d, |_| true);
    let path = claims_spec(d, false);
    let text = std::fs::read_to_string(&path).unwrap().replace("0 3 * * *", "* * * * * *");
    std::fs::write(&path, text).unwrap();
    let spec = PipelineSpec::load(&path).unwrap();
    let cat = catalog(d).await;
    let k = Arc::new(key());
    let make = |name: &str| {
        let mut o = opts(d);
        o.holder = name.to_owned();
        Scheduler::new(vec![spec.clone()], cat.clone(), k.clone(), o)
    };
    let (a, b) = (Arc::new(make("sched-a")), Arc::new(make("sched-b")));
    let mut handles = Vec::new();
    for s in [a, b] {
        handles.push(tokio::spawn(async move {
            let mut ran = 0;
            let mut busy = 0;
            let stop = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < stop {
                for (_, r) in s.tick().await.unwrap() {
                    match r {
                        TickResult::Ran(r) => {
                            r.unwrap();
                            ran += 1;
                        }
                        TickResult::Busy => busy += 1,
                        TickResult::NotDue => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ran, busy)
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap().0;
    }
    let mut runs = cat.pipeline_runs(Some("claims-test"), 1000).await.unwrap();
    runs.sort_by_key(|r| r.started_at);
    assert_eq!(runs.len(), total, "every run the schedulers report is in the catalog");
    assert!(total >= 2, "a per-second schedule runs several times in 5 s");
    for w in runs.windows(2) {
        assert!(w[0].finished_at.unwrap() <= w[1].started_at, "runs {} and {} overlap", w[0].seq, w[1].seq);
    }
    // The first run loaded everything; the later ones had nothing to do.
    assert_eq!(runs[0].status, "succeeded");
    assert!(runs[1..].iter().all(|r| r.status == "noop"));
    assert_eq!(cat.versions(None, Some("claims")).await.unwrap().len(), 1);
}
