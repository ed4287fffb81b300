//! Prometheus metrics, hand-rolled: a few counters and one histogram behind mutexes, rendered
//! in the text exposition format by `GET /metrics`.
//!
//! Labels are bounded by construction: `route` is the matched route *template*
//! (`/v1/projects/{id}`, never `/v1/projects/7`; `unmatched` when no route matched), `method`
//! one of the usual verbs or `other`, `status` the numeric status, `mode` one of the release
//! modes or `default`, `outcome` `answered` or a stable refusal code. No label ever holds an
//! id, a token, SQL or a data value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the query-duration histogram buckets.
pub const QUERY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Count per bucket (not cumulative); the last slot is +Inf.
    counts: [u64; QUERY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// The process's metrics. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    queries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    query_seconds: Mutex<Histogram>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a counter lock cannot leave a counter half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Escape a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Count one HTTP response.
    pub fn http(&self, route: &str, method: &Method, status: u16) {
        *lock(&self.http).entry((route.to_owned(), method_label(method), status)).or_default() += 1;
    }

    /// Count one query outcome (`answered` or a refusal code) and, when it reached the
    /// query service, its duration.
    pub fn query(&self, mode: &'static str, outcome: &'static str, took: Option<Duration>) {
        *lock(&self.queries).entry((mode, outcome)).or_default() += 1;
        if let Some(took) = took {
            let s = took.as_secs_f64();
            let mut h = lock(&self.query_seconds);
            let i = QUERY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(QUERY_BUCKETS.len());
            h.counts[i] += 1;
            h.sum += s;
            h.count += 1;
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP niji_build_info Build of this server; the value is always 1.\n");
        out.push_str("# TYPE niji_build_info gauge\n");
        let _ = writeln!(out, "niji_build_info{{version=\"{}\"}} 1", escape(env!("CARGO_PKG_VERSION")));

        out.push_str("# HELP niji_http_requests_total HTTP responses by matched route template, method and status.\n");
        out.push_str("# TYPE niji_http_requests_total counter\n");
        for ((route, method, status), n) in lock(&self.http).iter() {
            let _ = writeln!(
                out,
                "niji_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }

        out.push_str("# HELP niji_queries_total Queries by release mode and outcome (answered or the refusal code).\n");
        out.push_str("# TYPE niji_queries_total counter\n");
        for ((mode, outcome), n) in lock(&self.queries).iter() {
            let _ = writeln!(out, "niji_queries_total{{mode=\"{mode}\",outcome=\"{outcome}\"}} {n}");
        }

        out.push_str("# HELP niji_query_duration_seconds Time the query service took per query, refusals included.\n");
        out.push_str("# TYPE niji_query_duration_seconds histogram\n");
        let h = lock(&self.query_seconds);
        let mut cumulative = 0;
        for (i, upper) in QUERY_BUCKETS.iter().enumerate() {
            cumulative += h.counts[i];
            let _ = writeln!(out, "niji_query_duration_seconds_bucket{{le=\"{upper}\"}} {cumulative}");
        }
        cumulative += h.counts[QUERY_BUCKETS.len()];
        let _ = writeln!(out, "niji_query_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "niji_query_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "niji_query_duration_seconds_count {}", h.count);
        out
    }
}

/// Middleware: count every response under its matched route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    metrics.http(&route, &method, resp.status().as_u16());
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_up() {
        let m = Metrics::default();
        m.query("sdc", "answered", Some(Duration::from_millis(3)));
        m.query("sdc", "answered", Some(Duration::from_millis(700)));
        m.query("default", "invalid_request", None);
        m.query("extract", "timeout", Some(Duration::from_secs(500)));
        let text = m.render();
        assert!(text.contains("niji_query_duration_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("niji_query_duration_seconds_bucket{le=\"0.5\"} 1\n"), "{text}");
        assert!(text.contains("niji_query_duration_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("niji_query_duration_seconds_bucket{le=\"120\"} 2\n"), "{text}");
        assert!(text.contains("niji_query_duration_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("niji_query_duration_seconds_count 3\n"), "{text}");
        assert!(text.contains("niji_queries_total{mode=\"sdc\",outcome=\"answered\"} 2\n"), "{text}");
        assert!(text.contains("niji_queries_total{mode=\"default\",outcome=\"invalid_request\"} 1\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_methods_bounded() {
        let m = Metrics::default();
        m.http("/a\"b", &Method::from_bytes(b"BREW").unwrap_or(Method::GET), 200);
        let text = m.render();
        assert!(text.contains(r#"route="/a\"b",method="other",status="200""#), "{text}");
    }
}
