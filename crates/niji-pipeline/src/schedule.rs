//! The cron scheduler: runs due pipelines, never two runs of one pipeline at once, even across
//! processes.
//!
//! A pipeline is due when a cron occurrence lies between its last run's start (from the
//! catalog; the scheduler's start time when it never ran) and now. A tick takes the pipeline's
//! lease first and checks "due" again under it, so two schedulers that both saw it due run it
//! once: the loser either finds the lease held or, after the winner finished, finds the
//! occurrence already covered by the winner's run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use niji_catalog::Catalog;
use niji_pseudo::PseudonymKey;

use crate::run::{RunOptions, RunOutcome, run_pipeline};
use crate::spec::PipelineSpec;
use crate::{PipelineError, Result};

/// What one tick did for one pipeline.
#[derive(Debug)]
pub enum TickResult {
    /// Not due.
    NotDue,
    /// Another process holds the lease.
    Busy,
    /// Ran (successfully or not).
    Ran(Box<Result<RunOutcome>>),
}

/// A scheduler over a set of specs.
pub struct Scheduler {
    specs: Vec<PipelineSpec>,
    catalog: Catalog,
    key: Arc<PseudonymKey>,
    opts: RunOptions,
    started: DateTime<Utc>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("pipelines", &self.specs.len()).field("holder", &self.opts.holder).finish()
    }
}

impl Scheduler {
    /// A scheduler; only specs with a `schedule` are considered.
    pub fn new(specs: Vec<PipelineSpec>, catalog: Catalog, key: Arc<PseudonymKey>, opts: RunOptions) -> Self {
        let specs = specs.into_iter().filter(|s| s.schedule.is_some()).collect();
        Self { specs, catalog, key, opts, started: Utc::now() }
    }

    /// Names of the scheduled pipelines.
    pub fn pipelines(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    /// The next due time of each scheduled pipeline.
    pub async fn next_runs(&self) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
        let mut out = Vec::new();
        for s in &self.specs {
            out.push((s.name.clone(), s.next_due(self.last_start(s).await?)));
        }
        Ok(out)
    }

    async fn last_start(&self, spec: &PipelineSpec) -> Result<DateTime<Utc>> {
        let runs = self.catalog.pipeline_runs(Some(&spec.name), 1).await?;
        let last = runs.first().and_then(|r| DateTime::from_timestamp_millis(r.started_at));
        Ok(last.map_or(self.started, |l| l.max(self.started)))
    }

    async fn due(&self, spec: &PipelineSpec, now: DateTime<Utc>) -> Result<bool> {
        let from = self.last_start(spec).await?;
        Ok(spec.next_due(from).is_some_and(|t| t <= now))
    }

    /// Run every pipeline that is due now, one after the other.
    pub async fn tick(&self) -> Result<Vec<(String, TickResult)>> {
        let mut out = Vec::new();
        for spec in &self.specs {
            let now = Utc::now();
            if !self.due(spec, now).await? {
                out.push((spec.name.clone(), TickResult::NotDue));
                continue;
            }
            let ttl = i64::try_from(self.opts.lease_ttl.as_millis()).unwrap_or(i64::MAX);
            if !self.catalog.acquire_lease(&spec.name, &self.opts.holder, ttl).await? {
                out.push((spec.name.clone(), TickResult::Busy));
                continue;
            }
            // Due again under the lease: another scheduler may have just run it.
            if !self.due(spec, now).await? {
                self.catalog.release_lease(&spec.name, &self.opts.holder).await?;
                out.push((spec.name.clone(), TickResult::NotDue));
                continue;
            }
            tracing::info!(pipeline = %spec.name, "scheduled run starts");
            let r = run_pipeline(spec, &self.catalog, &self.key, &self.opts).await;
            if let Err(e) = &r {
                tracing::error!(pipeline = %spec.name, error = %e, "scheduled run failed");
            }
            out.push((spec.name.clone(), TickResult::Ran(Box::new(r))));
        }
        Ok(out)
    }

    /// Tick every `every` until `stop` resolves.
    pub async fn run_until(&self, every: Duration, stop: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        loop {
            match self.tick().await {
                Ok(_) => {}
                Err(e @ PipelineError::Catalog(_)) => tracing::error!(error = %e, "scheduler tick failed"),
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
