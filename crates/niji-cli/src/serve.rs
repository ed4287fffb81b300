//! `niji serve`: the HTTP API over the catalog in the data directory.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::{catalog, output};

/// Arguments of `niji serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: put TLS termination in front for anything else.
    #[arg(long, env = "NIJI_LISTEN", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

/// Run `niji serve` until interrupted.
pub fn run(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    catalog::runtime()?.block_on(async {
        let catalog = catalog::open(data_dir).await?;
        serve(catalog, args.addr).await
    })
}

/// Bind and serve; prints the address actually bound (port 0 picks a free one).
pub async fn serve(catalog: niji_catalog::Catalog, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    output::line(format_args!("niji API listening on http://{bound} (Ctrl-C to stop)"));
    niji_server::serve(listener, niji_server::AppState { catalog }).await.context("serving the API")
}
