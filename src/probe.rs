//! The check loop: a check every interval (and at once when a connection drops or comes
//! back) over one [`Connection`] or, for Redis Cluster, one per node; each named check of each
//! component goes through its own [`Tracker`], and the verdict is published as a [`Snapshot`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::checks::{self, evaluate};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::connection::{Connection, Event};
use crate::health::{Component, NamedCheck, Observation, Status, Thresholds, Tracker, Verdict};
use crate::metrics::Metrics;
use crate::page::History;
use crate::snapshot::Snapshot;

/// The Redis side of the daemon: one connection, or one per node of a cluster.
// One per daemon, never moved in a loop: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
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
    pub async fn check(&mut self, config: &Config) -> Vec<Observation> {
        match self {
            Self::Single(connection) => {
                let asks = config.checks.asks();
                let replies = connection.check_once(&asks).await;
                let id = config.redis.component_id(connection.connected_to());
                vec![evaluate(String::new(), id, replies, &asks, &config.checks)]
            }
            Self::Cluster(cluster) => cluster.check(&config.checks).await,
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
    };
    let mut trackers: Trackers = BTreeMap::new();
    let mut run_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut history = History::default();
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
                config.redis.reload_tls();
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
            metrics.record_cluster_nodes(observations.iter().map(|o| (o.key.as_str(), checks::answered(o))));
        }
        note_restarts(&observations, &mut run_ids, &metrics);
        let verdict = judge(observations, &mut trackers, thresholds);
        metrics.record(&verdict);
        history.record(&verdict);
        let snapshot = Snapshot::new(Instant::now(), verdict, &description, started, &history);
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

/// A [`Tracker`] per (check name, component key).
pub type Trackers = BTreeMap<(&'static str, String), Tracker>;

/// Folds one round of observations into the trackers and returns the verdict: one named check
/// per check some component reported, in [`checks::ALL`] order. A component gone from the
/// round (a former cluster primary) takes its trackers with it; a check a component skipped
/// (the state checks while Redis does not answer) keeps its tracker.
pub fn judge(observations: Vec<Observation>, trackers: &mut Trackers, thresholds: Thresholds) -> Verdict {
    trackers.retain(|(_, key), _| observations.iter().any(|o| &o.key == key));
    let mut checks: Vec<NamedCheck> = Vec::new();
    for observation in observations {
        for (name, outcome) in observation.outcomes {
            let state = trackers
                .entry((name, observation.key.clone()))
                .or_insert_with(|| Tracker::new(thresholds))
                .observe(outcome);
            let component = Component {
                id: observation.id.clone(),
                kind: "datastore",
                state,
            };
            match checks.iter_mut().find(|c| c.name == name) {
                Some(check) => check.components.push(component),
                None => checks.push(NamedCheck {
                    name,
                    components: vec![component],
                }),
            }
        }
    }
    checks.sort_by_key(|c| checks::ALL.iter().position(|n| *n == c.name));
    Verdict { checks }
}

/// Counts and logs a server whose `run_id` changed since the last check: Redis restarted and
/// may have lost data.
fn note_restarts(observations: &[Observation], run_ids: &mut BTreeMap<String, String>, metrics: &Metrics) {
    for observation in observations {
        let Some((run_id, uptime)) = &observation.run else {
            continue;
        };
        if let Some(previous) = run_ids.insert(observation.key.clone(), run_id.clone()) {
            if previous != *run_id {
                metrics.count_restart();
                let uptime = uptime.map_or_else(|| "unknown".to_owned(), |s| format!("{s}s"));
                warn!(component = %observation.id, uptime = %uptime, "redis restarted (new run_id): data not persisted may be lost");
            }
        }
    }
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
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use clap::Parser;

    use super::*;
    use crate::config::Cli;

    /// The check loop's future lives in one task; fred's command futures are several KiB each,
    /// and five of them unboxed in one check made it 70 KiB, copied through the main stack at
    /// spawn (+190 KiB of resident stack, measured). Boxed, it stays a few KiB.
    #[tokio::test]
    async fn the_check_loop_future_stays_small() {
        let cli = Cli::try_parse_from([
            "redis-healthd",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--check-writes",
        ])
        .unwrap();
        let config = Config::from_args(&cli.serve).unwrap();
        let metrics = Arc::new(Metrics::new(config.timeout));
        let probe = Probe::start(&config, metrics.connection_errors()).unwrap();
        let (snapshots, _) = watch::channel(Arc::new(Snapshot::initial(Instant::now(), "d", &[])));
        let (_, stop) = watch::channel(false);
        let run = run(config, probe, metrics, snapshots, Arc::default(), stop);
        assert!(
            std::mem::size_of_val(&run) < 8 * 1024,
            "{} bytes",
            std::mem::size_of_val(&run)
        );
    }
}
