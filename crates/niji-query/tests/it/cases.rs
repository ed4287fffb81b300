//! Runs every `tests/sql/*.slt` file (format in tests/sql/README.md).

use std::path::Path;

use niji_catalog::Mode;
use niji_query::{QueryRequest, encode};

use crate::support::{fixture, pid};

#[derive(Debug)]
enum Expect {
    Rows { csv: Vec<String>, suppressed: u64 },
    Error(String),
}

#[derive(Debug)]
struct Case {
    file: String,
    line: usize,
    project: String,
    mode: Mode,
    sql: String,
    expect: Expect,
}

fn parse(file: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut cases = Vec::new();
    let mut project = "study".to_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["project", p] => {
                project = (*p).to_owned();
                i += 1;
            }
            ["query", mode] | ["error", mode, _] => {
                let mode: Mode = mode.parse().unwrap();
                let mut sql = Vec::new();
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
                    sql.push(lines[i]);
                    i += 1;
                }
                let expect = if words[0] == "error" {
                    Expect::Error(words[2].to_owned())
                } else {
                    assert_eq!(lines.get(i).map(|l| l.trim()), Some("----"), "{name}:{start}: `----` expected");
                    i += 1;
                    let mut csv = Vec::new();
                    let mut suppressed = 0;
                    while i < lines.len() && !lines[i].trim().is_empty() {
                        if let Some(n) = lines[i].trim().strip_prefix("-- suppressed ") {
                            suppressed = n.parse().unwrap();
                        } else {
                            csv.push(lines[i].trim_end().to_owned());
                        }
                        i += 1;
                    }
                    Expect::Rows { csv, suppressed }
                };
                cases.push(Case {
                    file: name.clone(),
                    line: start,
                    project: project.clone(),
                    mode,
                    sql: sql.join("\n"),
                    expect,
                });
            }
            _ => panic!("{name}:{start}: cannot read `{line}`"),
        }
    }
    cases
}

/// Values of the population that must never appear in a refusal.
fn data_values() -> Vec<String> {
    let mut v: Vec<String> = (0..120).map(pid).collect();
    v.extend(["'F'", "'M'", "'U'", "\"F\"", "\"M\"", "3D045000001906202"].map(String::from));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_files() {
    let f = fixture().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let values = data_values();
    let mut failures = Vec::new();
    let mut n = 0;
    for file in files {
        for case in parse(&file) {
            n += 1;
            let req = QueryRequest {
                project: case.project.clone(),
                sql: case.sql.clone(),
                mode: Some(case.mode),
                ..QueryRequest::default()
            };
            let got = f.service.run(&f.researcher, &req).await;
            let at = format!("{}:{}", case.file, case.line);
            match (&case.expect, got) {
                (Expect::Rows { csv, suppressed }, Ok(a)) => {
                    let text = String::from_utf8(encode::csv(&a.schema, &a.batches).unwrap()).unwrap();
                    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                    let got_suppressed = a.privacy.suppressed_rows.unwrap_or(0);
                    if &lines != csv || got_suppressed != *suppressed {
                        failures.push(format!(
                            "{at}: expected {csv:?} (suppressed {suppressed}), got {lines:?} (suppressed {got_suppressed})"
                        ));
                    }
                }
                (Expect::Rows { .. }, Err(e)) => {
                    failures.push(format!("{at}: expected rows, refused {}: {e}", e.code()));
                }
                (Expect::Error(code), Ok(a)) => {
                    failures.push(format!("{at}: expected refusal {code}, answered {} rows", a.num_rows()));
                }
                (Expect::Error(code), Err(e)) => {
                    if e.code() != code {
                        failures.push(format!("{at}: expected {code}, got {}: {e}", e.code()));
                    }
                    let msg = e.public_message();
                    if let Some(v) = values.iter().find(|v| msg.contains(v.as_str())) {
                        failures.push(format!("{at}: the refusal message contains the data value {v}: {msg}"));
                    }
                }
            }
        }
    }
    assert!(n >= 55, "only {n} cases ran");
    assert!(failures.is_empty(), "{} of {n} cases failed:\n{}", failures.len(), failures.join("\n"));
}
