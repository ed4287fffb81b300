//! `niji serve`: the HTTP API over the catalog and lake in the data directory, optionally with
//! pipeline runs over HTTP and the cron scheduler in the same process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use niji_pipeline::schedule::Scheduler;
use niji_pipeline::{PipelineSpec, RunOptions};
use niji_query::QueryService;
use niji_server::{AppState, PipelineRunner};

use crate::{catalog, keys, output, query};

/// Arguments of `niji serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: put TLS termination in front for anything else.
    #[arg(long, env = "NIJI_LISTEN", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Query service settings.
    #[command(flatten)]
    pub service: query::ServiceArgs,
    /// Serve `POST /v1/pipelines/{name}/runs` for the specs in this folder. The process then
    /// holds the pseudonymization key (`--key-file` or `NIJI_PSEUDONYM_KEY`).
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
    /// Also run the pipelines on their cron schedules (needs `--pipelines`).
    #[arg(long, requires = "pipelines")]
    pub schedule: bool,
    /// How often the scheduler looks for due pipelines, in seconds.
    #[arg(long, default_value_t = 30)]
    pub schedule_every: u64,
    /// The pseudonymization key file (else `NIJI_PSEUDONYM_KEY`, else the public demo key).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

/// Run `niji serve` until interrupted.
pub fn run(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    catalog::runtime()?.block_on(async {
        let catalog = catalog::open(data_dir).await?;
        let svc = query::service(&catalog, data_dir, &args.service).await?;
        let mut state = AppState::new(catalog.clone(), svc);
        if let Some(dir) = &args.pipelines {
            let specs = PipelineSpec::load_dir(dir).with_context(|| format!("loading {}", dir.display()))?;
            let key = keys::load(args.key_file.as_deref())?;
            let mut opts = RunOptions::new(data_dir);
            opts.actor = "pipeline:scheduler".to_owned();
            if args.schedule {
                let sched = Scheduler::new(specs.clone(), catalog.clone(), Arc::new(key.clone()), opts.clone());
                for (name, next) in sched.next_runs().await? {
                    let next = next.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
                    output::line(format_args!("scheduler: {name} next run {next}"));
                }
                let every = Duration::from_secs(args.schedule_every.max(1));
                tokio::spawn(async move {
                    // A run cut short is resumed by the next tick; a failing tick is logged, not fatal.
                    if let Err(e) = sched.run_until(every, std::future::pending()).await {
                        tracing::error!(error = %e, "the pipeline scheduler stopped");
                    }
                });
            }
            state = state.with_pipelines(PipelineRunner::new(specs, key, opts));
        }
        let listener =
            tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        output::line(format_args!("niji API listening on http://{bound} (Ctrl-C to stop)"));
        niji_server::serve(listener, state).await.context("serving the API")
    })
}

/// Serve on a bound listener until the process ends (queries and steward endpoints only).
pub async fn serve_listener(
    catalog: niji_catalog::Catalog,
    query: QueryService,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    niji_server::serve(listener, AppState::new(catalog, query)).await.context("serving the API")
}
