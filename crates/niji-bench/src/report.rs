//! Results of one `niji-bench` run: every figure is printed as it is measured and recorded
//! here; at the end the summary table goes to stdout and everything to a JSON file.

use std::sync::Mutex;

use serde_json::{Value, json};

/// One line of the summary: our figure against a peer's (or a baseline's) figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// Benchmark item (`fhir`, `receipt`, `pseudo`, `query`, `serve`).
    pub item: String,
    /// What was measured.
    pub what: String,
    /// Unit of both figures.
    pub unit: String,
    /// Ours.
    pub ours: Option<f64>,
    /// The peer's name.
    pub peer: String,
    /// The peer's figure.
    pub peer_value: Option<f64>,
    /// Free-form note (refusal codes, agreement of answers, …).
    pub note: String,
}

impl Row {
    /// ours / peer, when both are there.
    pub fn ratio(&self) -> Option<f64> {
        match (self.ours, self.peer_value) {
            (Some(o), Some(p)) if p > 0.0 => Some(o / p),
            _ => None,
        }
    }
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
static DETAILS: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());

/// Record a summary row.
pub fn record(row: Row) {
    if let Ok(mut rows) = ROWS.lock() {
        rows.push(row);
    }
}

/// The median of some timings (the upper one of an even count; NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Shorthand for a row with both figures.
pub fn pair(item: &str, what: &str, unit: &str, ours: f64, peer: &str, peer_value: f64, note: &str) {
    record(Row {
        item: item.into(),
        what: what.into(),
        unit: unit.into(),
        ours: Some(ours),
        peer: peer.into(),
        peer_value: Some(peer_value),
        note: note.into(),
    });
}

/// Attach item details (per-query answers, latencies, …) to the JSON file.
pub fn detail(item: &str, value: Value) {
    if let Ok(mut d) = DETAILS.lock() {
        d.push((item.to_owned(), value));
    }
}

/// The rows recorded so far.
pub fn rows() -> Vec<Row> {
    ROWS.lock().map(|r| r.clone()).unwrap_or_default()
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// The summary table (markdown, so it can go into docs as is).
pub fn table() -> String {
    let mut s = String::from(
        "| item | what | unit | ours | peer | peer figure | ours / peer | note |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows() {
        let ratio = r.ratio().map_or_else(|| "-".to_owned(), |x| format!("{x:.2}×"));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.item,
            r.what,
            r.unit,
            fmt(r.ours),
            r.peer,
            fmt(r.peer_value),
            ratio,
            r.note
        ));
    }
    s
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({"cores": cores, "memory_gib": mem_kib as f64 / 1024.0 / 1024.0, "cpu": cpu, "loadavg_at_end": load.trim()})
}

/// Everything as JSON.
pub fn json(persons: u64, items: &[String], seconds: f64) -> Value {
    let rows: Vec<Value> = rows()
        .iter()
        .map(|r| {
            json!({"item": r.item, "what": r.what, "unit": r.unit, "ours": r.ours, "peer": r.peer,
                   "peer_value": r.peer_value, "ratio": r.ratio(), "note": r.note})
        })
        .collect();
    let details: Vec<Value> =
        DETAILS.lock().map(|d| d.iter().map(|(k, v)| json!({"item": k, "detail": v})).collect()).unwrap_or_default();
    json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "persons": persons,
        "items": items,
        "seconds": seconds,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": machine(),
        "rows": rows,
        "details": details,
    })
}

/// Peak resident set size of a process (`self` or a pid), in MiB.
pub fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
