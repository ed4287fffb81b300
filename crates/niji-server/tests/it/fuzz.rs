//! Threat T16: hostile paths, methods, headers and bodies never yield a 500; a 5xx is only ever
//! a documented refusal (501: a capability this server lacks, 503 `busy`), and every 4xx has a
//! stable error code. Paths come from the OpenAPI route table with random parameters, or are
//! random.

use axum::body::Body;
use axum::http::{Method, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::support::{code, full, send};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("ehr".to_owned()),
        Just("claims-http".to_owned()),
        Just("study".to_owned()),
        "[a-zA-Z0-9._~%-]{0,16}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let templates: Vec<&'static str> = niji_server::routes::routes().iter().map(|r| r.path).collect();
    prop_oneof![
        4 => (proptest::sample::select(templates), proptest::collection::vec(segment(), 3)).prop_map(|(t, segs)| {
            let mut out = String::new();
            let mut i = 0;
            for part in t.split('/').skip(1) {
                out.push('/');
                if part.starts_with('{') {
                    out.push_str(&segs[i % segs.len()]);
                    i += 1;
                } else {
                    out.push_str(part);
                }
            }
            out
        }),
        1 => "/[a-zA-Z0-9/._%?=&-]{0,40}",
    ]
}

fn sql() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("SELECT count(*) AS n FROM person".to_owned()),
        Just("SELECT sex, count(*) FROM person GROUP BY sex".to_owned()),
        Just("SELECT person_id FROM person".to_owned()),
        Just("DESCRIBE person".to_owned()),
        Just("EXPLAIN ANALYZE SELECT * FROM person".to_owned()),
        Just("SELECT * FROM '/etc/passwd'".to_owned()),
        Just("SELECT CAST(sex AS INT) FROM person".to_owned()),
        Just("SELECT 1/0".to_owned()),
        Just("SET datafusion.execution.batch_size = 1".to_owned()),
        Just("SELECT * FROM generate_series(1, 100000000)".to_owned()),
        ".{0,80}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1.5)),
        Just(json!(1e308)),
        Just(json!(1e-300)),
        Just(json!("1")),
        Just(Value::Null)
    ]
}

fn query_body() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("study")), Just(json!("nope")), Just(json!(1)), Just(json!(["x"])), Just(Value::Null)],
        sql(),
        prop_oneof![Just(json!("sdc")), Just(json!("extract")), Just(json!("dp")), Just(json!("bogus")), Just(Value::Null)],
        number(),
        number(),
        prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!("yes"))],
    )
        .prop_map(|(project, sql, mode, epsilon, delta, dry_run)| {
            json!({"project": project, "sql": sql, "mode": mode, "epsilon": epsilon, "delta": delta, "dry_run": dry_run})
        })
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        3 => query_body().prop_map(|v| Some(v.to_string().into_bytes())),
        1 => Just(Some(br#"{"reason": "x", "principal": "alice", "name": "p"}"#.to_vec())),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    Garbage,
    Researcher,
    Steward,
    Pipeline,
}

#[test]
fn hostile_requests_never_yield_a_500() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = rt.block_on(full());
    let strategy = (
        prop_oneof![
            Just(Method::GET),
            Just(Method::POST),
            Just(Method::DELETE),
            Just(Method::PUT),
            Just(Method::PATCH)
        ],
        path(),
        prop_oneof![
            Just(Who::Nobody),
            Just(Who::Garbage),
            Just(Who::Researcher),
            Just(Who::Steward),
            Just(Who::Pipeline)
        ],
        prop_oneof![
            Just(None),
            Just(Some("application/json")),
            Just(Some("text/plain")),
            Just(Some("application/json; charset=utf-8"))
        ],
        prop_oneof![
            Just(None),
            Just(Some("text/csv".to_owned())),
            Just(Some("application/vnd.apache.arrow.stream".to_owned())),
            Just(Some("*/*;q=0".to_owned())),
            "[ -~]{0,30}".prop_map(Some),
        ],
        body(),
    );
    // Seeded: the same few hundred cases on every run.
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 300, failure_persistence: None, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[42; 32]),
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    runner
        .run(&strategy, |(method, path, who, content_type, accept, body)| {
            let token = match who {
                Who::Nobody => None,
                Who::Garbage => Some("niji_zz".to_owned()),
                Who::Researcher => Some(f.researcher.clone()),
                Who::Steward => Some(f.steward.clone()),
                Who::Pipeline => Some(f.pipeline.clone()),
            };
            let mut req = Request::builder().method(method.clone()).uri(path.as_str());
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let Ok(req) = req.body(body.map(Body::from).unwrap_or_else(Body::empty)) else {
                // Not a valid HTTP request (the URI does not parse): nothing to send.
                return Ok(());
            };
            let r = rt.block_on(send(&f.state, req));
            *statuses.borrow_mut().entry(r.status.as_u16()).or_default() += 1;
            let b = r.json();
            if r.status.is_server_error() {
                prop_assert!(
                    matches!(r.status.as_u16(), 501 | 503) && code(&b) != "<no error code>",
                    "{method} {path}: {} {b}",
                    r.status
                );
            }
            if r.status.is_client_error() {
                prop_assert!(code(&b) != "<no error code>", "{method} {path}: {} without an error code", r.status);
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches past authentication: answers, refusals and auth failures all occur.
    let statuses = statuses.into_inner();
    // Nearly every generated case is a valid HTTP request and was sent.
    assert!(statuses.values().sum::<u32>() >= 250, "{statuses:?}");
    for s in [200, 400, 401, 403, 404] {
        assert!(statuses.contains_key(&s), "no {s} among {statuses:?}");
    }
}
