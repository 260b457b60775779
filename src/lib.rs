//! redis-healthd: a health-check sidecar for Redis. Long-lived Redis clients check each named
//! target on an interval; the verdict is cached and served over HTTP, so a probe never touches
//! Redis.
//!
//! Start-up, from the command line to a running daemon:
//! - [`cli`]: the clap structs (every flag has an env twin), turned into clap-free
//!   descriptions, each value with where it was given. Nothing else uses clap.
//! - [`config`]: the validated [`config::Config`]: one [`config::TargetSpec`] per target
//!   (from `--redis-url`, `--target`, or a `[[target]]` of the `--config` file that
//!   [`config_file`] parses), each checked by the same code; [`error`]: the
//!   [`error::ConfigError`] that names the flag, variable or file key at fault; [`units`]:
//!   the durations and percentages both flags and the file give; [`write_key`]: the key
//!   `--check-writes` sets.
//! - [`address`]: where a target's Redis is and how to log in, redacted for every output;
//!   [`credentials`]: the password file, read at every (re)connection; [`tls`]: the rustls
//!   configuration for `rediss://`, its files read again at every handshake. Each has its own
//!   error type.
//!
//! The verdict, no I/O:
//! - [`names`]: check names (`<target>:<measurement>`), depending on nothing.
//! - [`checks`]: what a target's checks ask ([`checks::Plan`], [`checks::Commands`]) and how
//!   replies become outcomes; [`info`] parses the `INFO` and `CLUSTER INFO` text they read.
//! - [`health`]: the verdict model: outcomes, trackers with thresholds, the verdict.
//!
//! Talking to Redis:
//! - [`connection`]: the code that talks to Redis (one fred client per server: PING with
//!   INFO, SET and EXISTS pipelined alongside, reconnections in per-connection slots of the
//!   reconnect window ([`connection`]'s `attempts`), a dropped
//!   connection told apart from a dead server); [`reason`] says fred's errors in words;
//!   [`cluster`] keeps one per node of a Redis Cluster and reads its topology; [`loading`]
//!   asks a Redis that refuses PING with `LOADING` how far its load is, on a short connection.
//! - [`monitor`]: one check loop per target, and the publisher that merges their rounds into
//!   [`snapshot::Snapshot`]s.
//!
//! Serving the verdict, from the one snapshot:
//! - [`snapshot`]: the bodies rendered at most once per round: [`document`] (health+json) and
//!   [`page`] (the status page) when first asked for, and at once the summary and the [`kube`]
//!   conditions (the kube-apiserver's `?verbose` text) that the probes answer from.
//! - [`view`]: what each endpoint answers from the latest snapshot at a given moment.
//! - [`http`]: the accept loop (HTTPS when the web configuration says so) and the routing;
//!   [`http::access`] decides who may see what (basic auth, the rate limit) and re-reads the
//!   web configuration that [`web_config`] parses; [`admission`] decides which connections
//!   stay when full; [`agent`] speaks HAProxy's agent-check protocol from the same view.
//! - [`metrics`]: the Prometheus registry (recorded by the loops, encoded per scrape), every
//!   Redis series labelled by target; [`process`] adds the standard `process_*` metrics, read
//!   when a scrape asks for them, and trims the heap after requests or every tenth round.
//!
//! The subcommands, [`cmd::check`] (ask a running daemon) and [`cmd::probe`] (pg_isready for
//! Redis, the daemon's checks once), and [`cmd::check_config`] (`--check-config`); every exit code, [`exit`]; the signals, held from the
//! first line of `main` until their handlers run, [`signals`].
//!
//! Data flows one way: each target's loop sends its rounds to the publisher, the only writer
//! of a `watch` channel of immutable snapshots (bodies rendered once each); every request
//! reads the latest one and compares its age with max-age.

pub mod address;
pub mod admission;
pub mod agent;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod credentials;
pub mod document;
pub mod error;
pub mod exit;
pub mod health;
pub mod http;
pub mod info;
pub mod info_schedule;
pub mod kube;
pub mod loading;
pub mod metrics;
pub mod monitor;
pub mod names;
pub mod page;
pub mod process;
pub mod reason;
pub mod signals;
pub mod snapshot;
pub mod tls;
pub mod units;
pub mod view;
pub mod web_config;
pub mod web_tls;
pub mod write_key;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

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
/// notification of `reconnect` (SIGHUP in the binary) makes every target's Redis client
/// reconnect, reading the password and TLS files again.
///
/// Redis being down is never an error here: it is a failing verdict.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    reconnect: Arc<Notify>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    // Each is something the operator set that does not do what it seems to, or leaks.
    for notice in &config.notices {
        warn!("{notice}");
    }
    let description = monitor::description(&config);
    let pending: Vec<&'static str> = config
        .targets
        .iter()
        .map(|t| t.checks.names.response_time)
        .collect();
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::initial(
        Instant::now(),
        &description,
        &pending,
    )));
    let (stop_tx, stop_rx) = watch::channel(false);
    let names: Vec<&'static str> = config.targets.iter().map(|t| t.name).collect();
    let metrics = Arc::new(metrics::Metrics::new(config.timeout, &names).with_tls(&config.tls_metrics));
    let (access, web_watch) = match &config.web {
        None => (http::Access::open(), None),
        Some(web) => {
            let (settings_tx, settings_rx) = watch::channel(Arc::new(web.settings.clone()));
            let label = crate::tls::TargetLabel {
                target: http::access::RELOAD_LABEL,
            };
            let reload_errors = config.tls_metrics.reload_errors.get_or_create(&label).clone();
            let watcher = http::access::watch(
                web.path.clone(),
                web.sources.clone(),
                settings_tx,
                reload_errors,
                stop_rx.clone(),
            );
            (http::Access::new(settings_rx), Some(watcher))
        }
    };
    let web_watch = web_watch.map(tokio::spawn);
    let state = Arc::new(http::State::new(
        snapshot_rx,
        FixedBodies::new(&description, config.max_age),
        config.max_age,
        metrics.clone(),
        access,
    ));
    let servers = config
        .targets
        .iter()
        .map(|target| {
            let (errors, changes) = (
                metrics.connection_errors(target.name),
                metrics.topology_changes(target.name),
            );
            monitor::Servers::start(&config, target, errors, changes)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let agent_listener = match config.agent_listen {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };
    let agent_listen = match &agent_listener {
        Some(listener) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    info!(
        listen = %listener.local_addr()?,
        redis = %config.targets.iter().map(|t| match t.name {
            names::DEFAULT_TARGET => t.redis.to_string(),
            name => format!("{name}={}", t.redis),
        }).collect::<Vec<_>>().join(","),
        interval = %humantime::format_duration(config.interval),
        timeout = %humantime::format_duration(config.timeout),
        agent_listen = %agent_listen,
        web = %config.web.as_ref().map_or_else(|| "plain HTTP, no auth".to_owned(), |w| w.settings.summary()),
        "redis-healthd serving"
    );
    // SIGHUP reaches every target's loop as a new value of a counter.
    let (reconnects_tx, reconnects_rx) = watch::channel(0u64);
    let forward = tokio::spawn(async move {
        loop {
            reconnect.notified().await;
            reconnects_tx.send_modify(|n| *n += 1);
        }
    });
    let (rounds_tx, rounds_rx) = mpsc::channel(config.targets.len() * 2);
    let loops: Vec<_> = servers
        .into_iter()
        .enumerate()
        .map(|(index, servers)| {
            tokio::spawn(monitor::run(
                config.clone(),
                index,
                servers,
                metrics.clone(),
                rounds_tx.clone(),
                reconnects_rx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(rounds_tx);
    let publisher = tokio::spawn(monitor::publish(config.clone(), rounds_rx, metrics, snapshot_tx));
    let max_connections = config.max_connections as usize;
    let agent =
        agent_listener.map(|listener| tokio::spawn(agent::serve(listener, state.clone(), stop_rx.clone())));
    let server = tokio::spawn(http::serve(listener, state.clone(), max_connections, stop_rx));

    shutdown.await;
    info!("shutting down");
    state.start_draining();
    stop_tx.send_replace(true);
    server.await?;
    if let Some(watcher) = web_watch {
        watcher.await?;
    }
    if let Some(agent) = agent {
        agent.await?;
    }
    forward.abort();
    let mut quits = Vec::with_capacity(loops.len());
    for done in loops {
        quits.push(done.await?.quit(QUIT_BUDGET));
    }
    futures_util::future::join_all(quits).await;
    publisher.await?;
    info!("stopped");
    Ok(())
}
