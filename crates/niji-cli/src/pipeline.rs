//! `niji pipeline run|list|runs|schedule`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use niji_pipeline::schedule::{Scheduler, TickResult};
use niji_pipeline::{PipelineSpec, Progress, RunOptions};

use crate::{keys, output};

/// Pipeline commands.
#[derive(Debug, clap::Subcommand)]
pub enum PipelineCommand {
    /// Run one pipeline now: load new source files into a new dataset version (pending review).
    Run {
        /// Pipeline name (the `name` of a spec in --dir).
        name: String,
        #[command(flatten)]
        common: Common,
        /// Wait up to this many seconds when another process is running the pipeline.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Print the full run report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// List the pipelines: dataset, sources, schedule and the last run.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Run history with outcomes, newest first.
    Runs {
        /// Only this pipeline.
        name: Option<String>,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run due pipelines by their cron schedule until stopped.
    Schedule {
        #[command(flatten)]
        common: Common,
        /// Seconds between checks.
        #[arg(long, default_value_t = 30)]
        every: u64,
        /// Check once and exit.
        #[arg(long)]
        once: bool,
    },
}

/// Arguments shared by the commands that read specs or run pipelines.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Folder of pipeline specs.
    #[arg(long, default_value = "pipelines")]
    pub dir: PathBuf,
    /// Pseudonymization key file (hex). Defaults to NIJI_PSEUDONYM_KEY (hex) or a demo key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn actor() -> String {
    std::env::var("USER").map_or_else(|_| "pipeline".to_owned(), |u| format!("pipeline:{u}"))
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_prefix(name.to_owned());
    }
    fn step(&self, what: &str) {
        self.0.set_message(what.to_owned());
        self.0.inc(1);
    }
}

fn find(dir: &Path, name: &str) -> anyhow::Result<PipelineSpec> {
    let specs = PipelineSpec::load_dir(dir)?;
    specs
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| niji_pipeline::PipelineError::UnknownPipeline(name.to_owned()).into())
}

pub fn run(cmd: PipelineCommand, data_dir: &Path) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let catalog = niji_catalog::Catalog::open(data_dir).await.context("opening the catalog")?;
        match cmd {
            PipelineCommand::Run { name, common, wait, json, quiet } => {
                let spec = find(&common.dir, &name)?;
                let key = keys::load(common.key_file.as_deref())?;
                let mut opts = RunOptions::new(data_dir);
                opts.actor = actor();
                opts.lease_wait = Duration::from_secs(wait);
                let bar = (!quiet).then(|| {
                    let b = indicatif::ProgressBar::new(0);
                    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})") {
                        b.set_style(style);
                    }
                    b
                });
                if let Some(b) = &bar {
                    opts.progress = Some(Arc::new(Bar(b.clone())));
                }
                let out = niji_pipeline::run_pipeline(&spec, &catalog, &key, &opts).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let out = out?;
                if json {
                    output::line(serde_json::to_string_pretty(&out.report)?);
                } else {
                    summary(&out);
                }
                let failed = out.report["counts"]["files_failed"].as_u64().unwrap_or(0);
                if failed > 0 {
                    anyhow::bail!("{failed} source file(s) could not be read (listed above; they will be retried)");
                }
            }
            PipelineCommand::List { common } => {
                let specs = PipelineSpec::load_dir(&common.dir)?;
                let now = chrono::Utc::now();
                for s in specs {
                    let last = catalog.pipeline_runs(Some(&s.name), 1).await?;
                    let last = last.first().map_or_else(
                        || "never run".to_owned(),
                        |r| format!("last run #{} {} at {}", r.seq, r.status, ms_time(r.started_at)),
                    );
                    let next = s.next_due(now).map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
                    let sources: Vec<String> = s.sources.iter().map(|x| format!("{}:{}", x.name, x.format.as_str())).collect();
                    output::line(format!(
                        "{:<16} dataset {:<8} sources {:<30} schedule {:<14} next {}  {}",
                        s.name,
                        s.dataset,
                        sources.join(","),
                        s.schedule_text.as_deref().unwrap_or("-"),
                        next,
                        last
                    ));
                }
            }
            PipelineCommand::Runs { name, limit } => {
                let runs = catalog.pipeline_runs(name.as_deref(), limit).await?;
                if runs.is_empty() {
                    output::line("no runs");
                }
                for r in runs {
                    let took = r.finished_at.map_or_else(|| "-".to_owned(), |f| format!("{:.1}s", (f - r.started_at) as f64 / 1000.0));
                    let counts = r.summary.as_ref().map_or_else(String::new, |c| {
                        format!(
                            "files {} (failed {}), records {} = loaded {} + quarantined {} + consent-excluded {}, rows +{} -{}",
                            c["files_loaded"], c["files_failed"], c["records"], c["loaded"], c["quarantined"],
                            c["consent_excluded"], c["rows_appended"], c["rows_deleted_consent"]
                        )
                    });
                    let version = r.version_id.map_or_else(String::new, |v| format!(" → version {v}"));
                    let err = r.error.as_deref().map_or_else(String::new, |e| format!(" error: {e}"));
                    output::line(format!(
                        "{:<16} #{:<4} {:<9} {} attempts {} took {}{} {}{}",
                        r.pipeline, r.seq, r.status, ms_time(r.started_at), r.attempts, took, version, counts, err
                    ));
                }
            }
            PipelineCommand::Schedule { common, every, once } => {
                let specs = PipelineSpec::load_dir(&common.dir)?;
                let key = Arc::new(keys::load(common.key_file.as_deref())?);
                let mut opts = RunOptions::new(data_dir);
                opts.actor = actor();
                let sched = Scheduler::new(specs, catalog.clone(), key, opts);
                for (name, next) in sched.next_runs().await? {
                    let next = next.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
                    output::line(format!("{name}: next run {next}"));
                }
                if once {
                    for (name, r) in sched.tick().await? {
                        match r {
                            TickResult::NotDue => output::line(format!("{name}: not due")),
                            TickResult::Busy => output::line(format!("{name}: running elsewhere")),
                            TickResult::Ran(r) => match *r {
                                Ok(out) => summary(&out),
                                Err(e) => output::line(format!("{name}: failed: {e}")),
                            },
                        }
                    }
                } else {
                    // Runs until the process is stopped; a run cut short is resumed by the next one.
                    sched.run_until(Duration::from_secs(every.max(1)), std::future::pending()).await?;
                }
            }
        }
        catalog.close().await;
        Ok(())
    })
}

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "?".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn summary(out: &niji_pipeline::RunOutcome) {
    let r = &out.report;
    let c = &r["counts"];
    let what = match out.version_id {
        Some(v) => format!("dataset version {v} registered (pending review)"),
        None => "nothing new: no version registered".to_owned(),
    };
    output::line(format!(
        "{} run #{}{}: {what}",
        r["pipeline"].as_str().unwrap_or("?"),
        out.seq,
        if out.resumed { " (resumed)" } else { "" }
    ));
    output::line(format!(
        "  files: {} loaded, {} failed, {} already loaded",
        c["files_loaded"], c["files_failed"], c["files_skipped_already_loaded"]
    ));
    output::line(format!(
        "  records: {} = {} loaded + {} quarantined + {} consent-excluded",
        c["records"], c["loaded"], c["quarantined"], c["consent_excluded"]
    ));
    if let Some(m) = r["quarantined_by_reason"].as_object() {
        for (k, v) in m {
            output::line(format!("  quarantined {k}: {v}"));
        }
    }
    if let Some(m) = r["rows_per_table"].as_object() {
        for (k, v) in m {
            output::line(format!("  {k}: +{v} rows"));
        }
    }
    if let Some(m) = r["consent"]["deleted_rows"].as_object() {
        for (k, v) in m {
            output::line(format!("  {k}: -{v} rows (consent withdrawn)"));
        }
    }
    if let Some(q) = r["quality"].as_array() {
        for rule in q {
            output::line(format!(
                "  quality {}: {} of {} rows failing ({})",
                rule["rule"].as_str().unwrap_or("?"),
                rule["failing"],
                rule["rows"],
                if rule["passed"].as_bool() == Some(true) { "ok" } else { "FAILED" }
            ));
        }
    }
    if let Some(reid) = r["reidentification"].as_object() {
        output::line(format!(
            "  re-identification: {} persons, {} below k={} ({} classes)",
            reid.get("records").cloned().unwrap_or_default(),
            reid.get("records_below_k").cloned().unwrap_or_default(),
            reid.get("k").cloned().unwrap_or_default(),
            reid.get("classes_below_k").cloned().unwrap_or_default(),
        ));
    }
    for i in r["inputs"].as_array().into_iter().flatten().filter(|i| !i["error"].is_null()) {
        output::line(format!(
            "  not read: {}: {}",
            i["file"].as_str().unwrap_or("?"),
            i["error"].as_str().unwrap_or("")
        ));
    }
}
