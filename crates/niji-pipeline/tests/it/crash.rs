//! Crash injection: the `niji-pipeline-run` process is killed (SIGKILL after a random delay, or
//! an abort at a named point) at least 20 times while it loads a second batch of files. After
//! every kill the previous version must be intact and readable and nothing new registered;
//! the final rerun must converge to exactly the content of a clean run, with a balanced report.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use niji_pipeline::{PipelineSpec, run_pipeline};
use rand::{Rng, SeedableRng};

use crate::support::{KEY_HEX, catalog, claims_spec, key, land_receipts, opts, synth, version_content};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            // A transient file (SQLite's -wal/-shm when a connection closes) may vanish between
            // the listing and the copy: it was not part of any state the test compares.
            match std::fs::copy(&p, to.join(e.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copying {}: {e}", p.display()),
            }
        }
    }
}

enum Kill {
    At(&'static str),
    After(Duration),
}

/// One attempt; returns true when the process was killed (false: it finished).
fn attempt(d: &Path, spec: &Path, kill: &Kill) -> bool {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_niji-pipeline-run"));
    cmd.arg(spec)
        .arg(d)
        .arg(d.join("outcome.json"))
        .env("NIJI_PSEUDONYM_KEY", KEY_HEX)
        .env("NIJI_LEASE_TTL_MS", "500")
        .env("NIJI_LEASE_WAIT_MS", "20000")
        .env_remove("NIJI_CATALOG_URL")
        .env_remove("NIJI_CRASH_AT");
    if let Kill::At(point) = kill {
        cmd.env("NIJI_CRASH_AT", point);
    }
    let mut child = cmd.spawn().unwrap();
    match kill {
        Kill::At(point) => {
            use std::os::unix::process::ExitStatusExt;
            let status = child.wait().unwrap();
            if status.success() {
                return false; // the point was not reached: the run completed
            }
            assert_eq!(
                status.signal(),
                Some(6),
                "run failed at {point} instead of aborting: {:?}",
                std::fs::read_to_string(d.join("outcome.json.err"))
            );
            true
        }
        Kill::After(delay) => {
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "run failed: {:?}", std::fs::read_to_string(d.join("outcome.json.err")));
                    return false;
                }
                if start.elapsed() >= *delay {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_leave_the_previous_version_and_converge() {
    let base = tempfile::tempdir().unwrap();
    let template = base.path().join("template");
    let all = synth(&template);
    land_receipts(&all, &template, |i| i % 3 == 0);
    let spec_path = claims_spec(&template, false);
    let spec = PipelineSpec::load(&spec_path).unwrap();
    {
        let cat = catalog(&template).await;
        run_pipeline(&spec, &cat, &key(), &opts(&template)).await.unwrap();
        cat.close().await;
    }
    // Reference: a clean second run over all files.
    let reference = base.path().join("reference");
    copy_dir(&template, &reference);
    land_receipts(&all, &reference, |_| true);
    let expected = {
        let cat = catalog(&reference).await;
        let out = run_pipeline(&spec, &cat, &key(), &opts(&reference)).await.unwrap();
        let v = cat.version(out.version_id.unwrap()).await.unwrap();
        let content = version_content(&reference, &v).await;
        cat.close().await;
        (content, out.report["counts"].clone(), out.report["rows_per_table"].clone())
    };

    let points = [
        "planned",
        "staged",
        "before_append:person",
        "after_append:person",
        "after_append:visit_occurrence",
        "after_append:condition_occurrence",
        "after_append:claim",
        "before_register",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    let mut rounds = 0;
    while kills < 20 || rounds < 2 {
        rounds += 1;
        let d = base.path().join(format!("round{rounds}"));
        copy_dir(&template, &d);
        land_receipts(&all, &d, |_| true);
        let spec_here = d.join("claims-test.toml");
        let cat = catalog(&d).await;
        let v1 = cat.versions(None, Some("claims")).await.unwrap().pop().unwrap();
        let v1_content = version_content(&d, &v1).await;
        let mut next_point = 0;
        for _ in 0..12 {
            let kill = if rng.random_bool(0.5) && next_point < points.len() {
                next_point += 1;
                Kill::At(points[next_point - 1])
            } else {
                Kill::After(Duration::from_millis(rng.random_range(50..2500)))
            };
            let killed = attempt(&d, &spec_here, &kill);
            let versions = cat.versions(None, Some("claims")).await.unwrap();
            if !killed {
                break;
            }
            kills += 1;
            // Killed: either nothing new is registered, or (killed just after registering) the
            // new version is complete; the previous version is intact either way.
            assert_eq!(version_content(&d, &v1).await, v1_content, "round {rounds}: previous version changed");
            if versions.len() == 2 {
                break;
            }
            assert_eq!(versions.len(), 1);
        }
        // Finish (resumes if needed), then compare with the clean run.
        let out = run_pipeline(&spec, &cat, &key(), &{
            let mut o = opts(&d);
            o.lease_wait = Duration::from_secs(20);
            o
        })
        .await
        .unwrap();
        let versions = cat.versions(None, Some("claims")).await.unwrap();
        assert_eq!(versions.len(), 2, "round {rounds}: exactly one new version");
        let latest = &versions[0];
        assert_eq!(version_content(&d, latest).await, expected.0, "round {rounds}: content differs from a clean run");
        let report = &latest.run_report;
        let c = &report["counts"];
        assert_eq!(
            c["records"].as_u64().unwrap(),
            c["loaded"].as_u64().unwrap()
                + c["quarantined"].as_u64().unwrap()
                + c["consent_excluded"].as_u64().unwrap()
        );
        assert_eq!(report["counts"]["records"], expected.1["records"]);
        assert_eq!(report["rows_per_table"], expected.2, "round {rounds}: recovered row counts");
        if out.version_id.is_some() {
            assert!(out.resumed || rounds > 0);
        }
        cat.close().await;
    }
    eprintln!("crash injection: {kills} kills over {rounds} rounds");
    assert!(kills >= 20);
}
