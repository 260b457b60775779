//! The check loop: a check every interval (and at once when a connection drops or comes
//! back) over one [`Connection`] or, for Redis Cluster, one per node; each component's outcome
//! goes through its own [`Tracker`], and the verdict is published as a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::connection::{Connection, Event};
use crate::health::{Component, NamedCheck, Outcome, Snapshot, Status, Thresholds, Tracker, Verdict};
use crate::metrics::Metrics;

/// The name of the PING check in the health+json document.
pub const CHECK_NAME: &str = "redis:responseTime";

/// One check's finding for one component, before thresholds.
pub struct Observation {
    /// What the component's thresholds are tracked under (stable across a Sentinel failover).
    pub key: String,
    /// The component's `componentId` (never a secret).
    pub id: String,
    pub outcome: Outcome,
}

/// The Redis side of the daemon: one connection, or one per node of a cluster.
pub enum Probe {
    Single(Connection),
    Cluster(Cluster),
}

impl Probe {
    /// Starts connecting in the background; never waits for Redis.
    pub fn start(config: &Config, connection_errors: Counter) -> anyhow::Result<Self> {
        match config.redis.cluster_seeds() {
            Some(seeds) => Ok(Self::Cluster(Cluster::start(config, seeds, connection_errors)?)),
            None => Ok(Self::Single(Connection::start(
                config,
                config.redis.client_config().clone(),
                connection_errors,
            )?)),
        }
    }

    /// Runs one check: an observation per component.
    async fn check(&mut self, config: &Config) -> Vec<Observation> {
        match self {
            Self::Single(connection) => {
                let outcome = connection.check_once(false).await;
                vec![Observation {
                    key: String::new(),
                    id: config.redis.component_id(connection.connected_to()),
                    outcome,
                }]
            }
            Self::Cluster(cluster) => cluster.check().await,
        }
    }

    async fn next_event(&mut self) -> Event {
        match self {
            Self::Single(connection) => connection.next_event().await,
            Self::Cluster(cluster) => cluster.next_event().await,
        }
    }

    /// Drops the connections and makes new ones (reading the password file again).
    async fn reconnect(&mut self) {
        match self {
            Self::Single(connection) => connection.reconnect().await,
            Self::Cluster(cluster) => cluster.reconnect().await,
        }
    }

    /// Closes the client(s), bounded: QUIT can hang while disconnected.
    pub async fn quit(self, budget: Duration) {
        match self {
            Self::Single(connection) => connection.quit(budget).await,
            Self::Cluster(cluster) => cluster.quit(budget).await,
        }
    }
}

/// Runs checks until `stop` turns true, publishing a snapshot after each one.
///
/// A check runs every interval, and also at once when the client reports the connection lost
/// or made (at most one such extra check per reconnect delay), so a crash or a recovery shows
/// within milliseconds; the interval PING catches the hangs no socket event reveals. Failed
/// reconnect attempts during an outage only refresh the reason the next check reports.
pub async fn run(
    config: Config,
    mut probe: Probe,
    metrics: Arc<Metrics>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    reconnect: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Probe {
    let description = description(&config);
    let thresholds = Thresholds {
        failure: config.failure_threshold,
        success: config.success_threshold,
        warn_latency: config.warn_latency,
    };
    let mut trackers: BTreeMap<String, Tracker> = BTreeMap::new();
    let min_gap = config.reconnect_delay();
    let mut started = false;
    let mut status: Option<Status> = None;
    let mut due = tokio::time::Instant::now();
    let mut earliest_extra = due;
    let mut events_open = true;

    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            _ = tokio::time::sleep_until(due) => {}
            _ = reconnect.notified() => {
                info!(password_file = config.redis.has_password_file(), "reconnecting to redis on request");
                probe.reconnect().await;
                continue;
            }
            event = probe.next_event(), if events_open => {
                match event {
                    // Only changes trigger a check: every failed reconnect attempt doing so
                    // would make --failure-threshold count attempts instead of intervals.
                    Event::Lost | Event::Connected => {
                        due = due.min(earliest_extra.max(tokio::time::Instant::now()));
                    }
                    Event::StillDown => {}
                    Event::Closed => {
                        warn!("redis client closed its event streams; checks go on at the interval only");
                        events_open = false;
                    }
                }
                continue;
            }
        }
        let check_started = tokio::time::Instant::now();
        let observations = probe.check(&config).await;
        if let Probe::Cluster(_) = probe {
            metrics.record_cluster_nodes(
                observations
                    .iter()
                    .map(|o| (o.key.as_str(), o.outcome.result.is_ok())),
            );
        }
        // A component gone from the check (a former cluster primary) takes its count with it.
        trackers.retain(|key, _| observations.iter().any(|o| &o.key == key));
        let components: Vec<Component> = observations
            .into_iter()
            .map(|o| Component {
                state: trackers
                    .entry(o.key)
                    .or_insert_with(|| Tracker::new(thresholds))
                    .observe(o.outcome),
                id: o.id,
                kind: "datastore",
            })
            .collect();
        metrics.record(components.iter().map(|c| &c.state));
        let verdict = Verdict {
            checks: vec![NamedCheck {
                name: CHECK_NAME,
                components,
            }],
        };
        let snapshot = Snapshot::new(Instant::now(), verdict, &description, started);
        started = snapshot.started;
        log_transition(status, &snapshot);
        status = Some(snapshot.status);
        snapshots.send_replace(Arc::new(snapshot));
        crate::process::release_free_memory();
        due = check_started + config.interval;
        earliest_extra = tokio::time::Instant::now() + min_gap;
    }
    probe
}

/// The document's `description`.
pub fn description(config: &Config) -> String {
    format!("Redis at {} as seen by redis-healthd", config.redis.redacted())
}

/// Logs a verdict change once, with its reason; repeated failures stay quiet.
fn log_transition(previous: Option<Status>, snapshot: &Snapshot) {
    if previous == Some(snapshot.status) {
        return;
    }
    let reason = snapshot
        .verdict
        .as_ref()
        .and_then(Verdict::output)
        .unwrap_or_default();
    match snapshot.status {
        Status::Pass => info!("redis check passing"),
        Status::Warn => warn!(reason = %reason, "redis check warning"),
        Status::Fail => warn!(reason = %reason, "redis check failing"),
    }
}
