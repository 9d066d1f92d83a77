//! `polar-test-server`: runs refundd's Polar-compatible test server by hand.
//!
//! Takes: `--listen ADDR` (default `127.0.0.1:8089`), `--seed FILE.json` (a
//! `refundd::polar_sim::Seed`), `--token`, `--settle-after-ms`. Gives: the
//! server until Ctrl-C, printing its base URL on stdout. Test controls are
//! under `/__sim/` (see `refundd::polar_sim`). Fails when the seed file is
//! unreadable or inconsistent, or the address cannot be bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use refundd::polar_sim::{PolarSim, Seed, SimConfig};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "A Polar-compatible API server for tests and demos")]
struct Args {
    /// Address to listen on (loopback only is sensible).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// JSON seed: {"customers": [...], "orders": [...], "disputes": [...]}.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// The bearer token clients must send.
    #[arg(long, env = "POLAR_SIM_TOKEN", default_value = "polar_oat_sim_token")]
    token: String,
    /// Pending refunds succeed after this many milliseconds (0: at once on
    /// the next request); without it they stay pending until
    /// `POST /__sim/refunds/{id}/settle`.
    #[arg(long)]
    settle_after_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seed {}", path.display()))?;
            serde_json::from_str::<Seed>(&text)
                .with_context(|| format!("parsing seed {}", path.display()))?
        }
        None => Seed::default(),
    };
    let config = SimConfig {
        listen: args.listen,
        token: args.token,
        settle_after: args.settle_after_ms.map(Duration::from_millis),
        seed,
        ..SimConfig::default()
    };
    let sim = PolarSim::start(config)
        .await
        .context("starting the Polar test server")?;
    println!("{}", sim.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}
