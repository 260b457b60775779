//! redis-healthd: a health-check sidecar for Redis. One long-lived Redis client PINGs on an
//! interval; the verdict is cached and served over HTTP, so a probe never touches Redis.
//!
//! - [`config`]: the command line (flags with env twins), validation, redaction of secrets;
//!   [`credentials`] reads the password file at every (re)connection; [`tls`] builds the
//!   rustls configuration for `rediss://`.
//! - [`probe`]: the check loop, which publishes [`snapshot::Snapshot`]s; [`connection`] is the
//!   only code that talks to Redis (one fred client per server: PING with INFO, SET and EXISTS
//!   pipelined alongside), [`cluster`] keeps one per node of a Redis Cluster and reads its
//!   topology.
//! - [`checks`]: the named checks (`redis:responseTime`, `redis:role`, `redis:memory`, ...):
//!   what to ask a server and how its replies become outcomes, no I/O; [`info`] parses the
//!   `INFO` and `CLUSTER INFO` text they read.
//! - [`health`]: plain data: thresholds, staleness, the health+json document, what each
//!   endpoint answers.
//! - [`http`]: the accept loop and `route`, answering from the latest snapshot;
//!   [`admission`] decides which connections it keeps when full.
//! - [`metrics`]: the Prometheus registry (recorded by the probe, encoded per scrape);
//!   [`process`] adds the standard `process_*` metrics from `/proc/self`.
//! - [`check`]: the `check` subcommand, a one-shot HTTP probe for container health checks;
//!   [`isready`]: the `probe` subcommand, pg_isready for Redis (the daemon's checks, once).
//!
//! Data flows one way: the probe task is the only writer of a `watch` channel of immutable
//! snapshots (bodies pre-rendered); every request reads the latest one and compares its age
//! with max-age.

pub mod admission;
pub mod check;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod health;
pub mod http;
pub mod info;
pub mod isready;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod process;
pub mod snapshot;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tracing::info;

use crate::config::Config;
use crate::snapshot::{FixedBodies, Snapshot};

/// Bound on closing the Redis client at shutdown: QUIT can hang while disconnected.
const QUIT_BUDGET: Duration = Duration::from_secs(1);

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send: drop it here, not in the caller's select!.
    let _ = stop.wait_for(|stopping| *stopping).await.is_ok();
}

/// Runs the daemon on `listener` until `shutdown` completes, then drains and returns. Each
/// notification of `reconnect` (SIGHUP in the binary) makes the Redis client reconnect, reading
/// the password file again.
///
/// Redis being down is never an error here: it is a failing verdict.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    reconnect: Arc<Notify>,
) -> anyhow::Result<()> {
    let description = probe::description(&config);
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::initial(
        Instant::now(),
        &description,
        &[checks::RESPONSE_TIME],
    )));
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(metrics::Metrics::new(config.timeout).with_tls(config.redis.tls_metrics()));
    let state = Arc::new(http::State::new(
        snapshot_rx,
        FixedBodies::new(&description, config.max_age),
        config.max_age,
        metrics.clone(),
    ));
    let probe = probe::Probe::start(&config, metrics.connection_errors())?;
    info!(
        listen = %listener.local_addr()?,
        redis = %config.redis,
        interval = %humantime::format_duration(config.interval),
        timeout = %humantime::format_duration(config.timeout),
        "redis-healthd serving"
    );
    let max_connections = config.max_connections as usize;
    let checks = tokio::spawn(probe::run(
        config,
        probe,
        metrics,
        snapshot_tx,
        reconnect,
        stop_rx.clone(),
    ));
    let server = tokio::spawn(http::serve(listener, state.clone(), max_connections, stop_rx));

    shutdown.await;
    info!("shutting down");
    state.start_draining();
    stop_tx.send_replace(true);
    server.await?;
    checks.await?.quit(QUIT_BUDGET).await;
    info!("stopped");
    Ok(())
}
