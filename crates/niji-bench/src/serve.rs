//! `serve`: N concurrent researchers against the HTTP API (`POST /v1/queries`, the same
//! router and query service as `niji serve`) on 127.0.0.1, over the cohort of
//! [`crate::cohort`]. The server runs as a child process of this command (this binary with
//! `__serve <data-dir>`) on a free loopback port, so its peak RSS is its own; it exits when
//! its stdin closes.
//!
//! Each researcher has their own token and sends the ten cohort queries in `sdc` mode, in
//! turn from a different starting point, one at a time, until it has sent `--queries` or
//! `--seconds` have passed. The baseline is one researcher sending each answered query once.
//! Only queries that `sdc` answers in the baseline are used for the load.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use niji_catalog::Catalog;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::{Opts, cohort, query, report};

/// The argument that makes this binary the server child.
pub const CHILD_ARG: &str = "__serve";

/// Per-request limit of the client (the service's own deadline is 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The server child: serve the API over `dir` on a free loopback port, print `addr=…`, and
/// exit when stdin closes.
pub fn child(dir: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let catalog = Catalog::open_default(dir).await?;
        let svc = cohort::service(dir, &catalog).await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        println!("addr={}", listener.local_addr()?);
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        niji_server::serve(listener, niji_server::AppState::new(catalog, svc)).await?;
        anyhow::Ok(())
    })
}

/// One `POST /v1/queries` over a fresh connection: (status, milliseconds).
async fn post(addr: SocketAddr, token: &str, body: &str) -> anyhow::Result<(u16, f64)> {
    let t = Instant::now();
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "POST /v1/queries HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
        let status: u16 = head.split_whitespace().nth(1).context("no HTTP status")?.parse()?;
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(REQUEST_TIMEOUT, go).await.context("request timed out")??;
    Ok((status, t.elapsed().as_secs_f64() * 1e3))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: &Opts) -> anyhow::Result<()> {
    let cohort = cohort::prepare(opts).await?;
    let catalog = Catalog::open_default(&cohort.dir).await?;
    let project = cohort::project(&cohort, &catalog, opts.researchers).await?;
    let mut tokens = Vec::new();
    for r in &project.researchers {
        tokens.push(catalog.issue_token("bench", r.id, None).await?.token);
    }
    let bodies: Vec<String> = query::QUERIES
        .iter()
        .map(|(_, q)| json!({"project": project.name, "sql": query::sql(q), "mode": "sdc"}).to_string())
        .collect();

    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg(CHILD_ARG)
        .arg(cohort.dir.as_os_str())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server child")?;
    let pid = child.id().context("server child pid")?.to_string();
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("the server did not start")??
        .context("the server exited")?;
    let addr: SocketAddr = line.strip_prefix("addr=").context("server address line")?.parse()?;
    anyhow::ensure!(addr.ip().is_loopback(), "the server must listen on loopback");
    let outcome = load(opts, addr, &tokens, &bodies).await;
    let rss = report::peak_rss_mib(&pid);
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        child.kill().await?;
    }
    let (base, loaded) = outcome?;
    let n = opts.researchers;
    println!(
        "serve: {} queries answered of {} sent by {n} researchers in {:.1} s against http://{addr}",
        loaded.ok, loaded.sent, loaded.seconds
    );
    println!(
        "  {n} researchers: {:.2} queries/s, p50 {:.0} ms, p99 {:.0} ms; 1 researcher: {:.2} queries/s, p50 {:.0} ms, p99 {:.0} ms; server peak RSS {rss:.0} MiB",
        loaded.qps, loaded.p50, loaded.p99, base.qps, base.p50, base.p99
    );
    let note = format!("{} of {} answered; {} query kinds (sdc)", loaded.ok, loaded.sent, base.kinds);
    let what = format!("{n} researchers vs 1");
    report::pair("serve", &format!("{what}: throughput"), "queries/s", loaded.qps, "1 researcher", base.qps, &note);
    report::pair("serve", &format!("{what}: p50 latency"), "ms", loaded.p50, "1 researcher", base.p50, "");
    report::pair("serve", &format!("{what}: p99 latency"), "ms", loaded.p99, "1 researcher", base.p99, "");
    report::record(report::Row {
        item: "serve".into(),
        what: "server peak RSS".into(),
        unit: "MiB".into(),
        ours: Some(rss),
        peer: "-".into(),
        peer_value: None,
        note: format!("child process, {n} researchers"),
    });
    report::detail(
        "serve",
        json!({"researchers": n, "addr": addr.to_string(), "peak_rss_mib": rss,
               "load": {"sent": loaded.sent, "ok": loaded.ok, "seconds": loaded.seconds, "qps": loaded.qps,
                        "p50_ms": loaded.p50, "p99_ms": loaded.p99, "statuses": loaded.statuses},
               "baseline": {"qps": base.qps, "p50_ms": base.p50, "p99_ms": base.p99, "queries": base.kinds}}),
    );
    Ok(())
}

/// Figures of one load phase.
#[derive(Debug, Default)]
struct Phase {
    sent: usize,
    ok: usize,
    seconds: f64,
    qps: f64,
    p50: f64,
    p99: f64,
    kinds: usize,
    statuses: std::collections::BTreeMap<u16, usize>,
}

fn phase(results: &[(u16, f64)], seconds: f64) -> Phase {
    let mut ok: Vec<f64> = results.iter().filter(|(s, _)| *s == 200).map(|(_, ms)| *ms).collect();
    ok.sort_by(f64::total_cmp);
    let mut statuses = std::collections::BTreeMap::new();
    for (s, _) in results {
        *statuses.entry(*s).or_insert(0) += 1;
    }
    Phase {
        sent: results.len(),
        ok: ok.len(),
        seconds,
        qps: ok.len() as f64 / seconds.max(1e-9),
        p50: percentile(&ok, 0.5),
        p99: percentile(&ok, 0.99),
        kinds: 0,
        statuses,
    }
}

async fn load(opts: &Opts, addr: SocketAddr, tokens: &[String], bodies: &[String]) -> anyhow::Result<(Phase, Phase)> {
    // Warm-up and baseline: one researcher, each query once (twice for the warm-up).
    let mut answered = Vec::new();
    for b in bodies {
        let _ = post(addr, &tokens[0], b).await?;
    }
    let t = Instant::now();
    let mut base = Vec::new();
    for b in bodies {
        let (status, ms) = post(addr, &tokens[0], b).await?;
        if status == 200 {
            answered.push(b.clone());
            base.push((status, ms));
        }
    }
    let mut base = phase(&base, t.elapsed().as_secs_f64());
    base.kinds = answered.len();
    anyhow::ensure!(!answered.is_empty(), "no query was answered in sdc mode");

    let answered = Arc::new(answered);
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (r, token) in tokens.iter().enumerate() {
        let (token, answered, per) = (token.clone(), answered.clone(), opts.per_researcher);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..per {
                if Instant::now() >= deadline {
                    break;
                }
                let b = &answered[(r + i) % answered.len()];
                out.push(post(addr, &token, b).await.unwrap_or((0, f64::NAN)));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok((base, phase(&all, t.elapsed().as_secs_f64())))
}
