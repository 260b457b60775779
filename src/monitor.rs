//! The check loop: one task per target checks every interval (and at once when a connection
//! drops or comes back) over one [`Connection`] or, for Redis Cluster, one per node; each named
//! check of each component goes through its own [`Tracker`]. Each round goes to [`publish`],
//! the one writer of [`Snapshot`]s, which merges the latest round of every target, so a hung
//! target never delays another's verdict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::checks::{answered, evaluate, ClusterReady};
use crate::cluster::Cluster;
use crate::config::{Config, Target};
use crate::connection::{reconnect_delay, Connection, Event};
use crate::health::{Component, Failure, NamedCheck, Outcome, Report, Status, Tracker, Verdict};
use crate::metrics::Metrics;
use crate::names::DEFAULT_TARGET;
use crate::page::History;
use crate::snapshot::Snapshot;

/// The Redis side of one target: one connection, or one per node of a cluster.
// One per target, never moved in a loop: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Servers {
    Single(Connection),
    Cluster(Cluster),
}

impl Servers {
    /// Starts connecting in the background; never waits for Redis.
    /// `topology_changes` counts a cluster's changes of primaries (a Sentinel's failovers are
    /// seen by [`run`]).
    pub fn start(
        config: &Config,
        target: &Target,
        connection_errors: Counter,
        topology_changes: Counter,
    ) -> anyhow::Result<Self> {
        match target.redis.cluster_seeds() {
            Some(seeds) => Ok(Self::Cluster(Cluster::start(
                config,
                target,
                seeds,
                connection_errors,
                topology_changes,
            )?)),
            None => Ok(Self::Single(Connection::start(
                config,
                target.redis.client_config().clone(),
                connection_errors,
            )?)),
        }
    }

    /// Runs one check: a report per server.
    pub async fn check(&mut self, target: &Target) -> Vec<Report> {
        match self {
            Self::Single(connection) => {
                let commands = target.checks.commands();
                let replies = connection.check_once(&commands).await;
                let id = target.redis.component_id(connection.connected_to());
                let report = evaluate(String::new(), id, replies, &commands, &target.checks);
                connection.watch_closely(!report.all_pass());
                vec![report]
            }
            Self::Cluster(cluster) => cluster.check(&target.checks).await,
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

/// One target's latest round: its named checks, thresholds applied.
pub struct Round {
    /// The target's index in the configuration.
    pub target: usize,
    pub checks: Vec<NamedCheck>,
}

/// Runs the checks of target `index` until `stop` turns true, sending each round to
/// [`publish`].
///
/// A check runs every interval, and also at once when the client reports the connection lost
/// or made (at most one such extra check per reconnect delay), so a crash or a recovery shows
/// within milliseconds; the interval PING catches the hangs no socket event reveals. Failed
/// reconnect attempts during an outage only refresh the reason the next check reports. Each
/// change of the request counter `reconnect` (SIGHUP) reads the TLS files again and reconnects.
pub async fn run(
    config: Arc<Config>,
    index: usize,
    mut servers: Servers,
    metrics: Arc<Metrics>,
    rounds: mpsc::Sender<Round>,
    mut reconnect: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) -> Servers {
    let target = &config.targets[index];
    let mut trackers: Trackers = BTreeMap::new();
    let mut seen = Seen::new();
    let min_gap = reconnect_delay(config.interval);
    let mut status: Option<Status> = None;
    let mut due = tokio::time::Instant::now();
    // The earliest moment for a check brought forward by a connection event, and whether the
    // next check is one: only such checks wait for each other, so a crash just after an
    // interval's check is still seen at once.
    let mut earliest_extra = due;
    let mut extra = false;
    let mut events_open = true;

    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            _ = tokio::time::sleep_until(due) => {}
            Ok(()) = reconnect.changed() => {
                info!(redis_target = target.name, password_file = target.redis.has_password_file(), "reconnecting to redis on request");
                target.redis.reload_tls(config.timeout).await;
                servers.reconnect().await;
                continue;
            }
            event = servers.next_event(), if events_open => {
                match event {
                    // Only changes trigger a check: every failed reconnect attempt doing so
                    // would make --failure-threshold count attempts instead of intervals.
                    Event::Lost | Event::Connected => {
                        if matches!(event, Event::Lost) {
                            // The reconnection's handshake then uses files as they are now.
                            target.redis.reload_tls_in_background();
                        }
                        let at = earliest_extra.max(tokio::time::Instant::now());
                        if at < due {
                            due = at;
                            extra = true;
                        }
                    }
                    Event::StillDown | Event::Retrying => {}
                    Event::Closed => {
                        warn!(redis_target = target.name, "redis client closed its event streams; checks go on at the interval only");
                        events_open = false;
                    }
                }
                continue;
            }
        }
        let check_started = tokio::time::Instant::now();
        target.redis.reload_tls_in_background();
        let reports = servers.check(target).await;
        if let Servers::Cluster(_) = servers {
            let nodes = reports.iter().map(|o| (o.key.as_str(), answered(o)));
            metrics.record_cluster_nodes(target.name, nodes);
        }
        note_restarts(target, &reports, &mut seen, &metrics);
        let mut verdict = judge(reports, &mut trackers, target);
        if let (Servers::Cluster(_), ClusterReady::Majority) = (&servers, target.checks.cluster_ready) {
            crate::cluster::tolerate_a_minority(&mut verdict);
        }
        metrics.record(target.name, &verdict);
        status = Some(log_transition(target.name, status, &verdict));
        if rounds
            .send(Round {
                target: index,
                checks: verdict.checks,
            })
            .await
            .is_err()
        {
            break;
        }
        due = check_started + config.interval;
        if std::mem::take(&mut extra) {
            earliest_extra = tokio::time::Instant::now() + min_gap;
        }
    }
    servers
}

/// Rounds of the first target between two trims of the heap when no request was served (a
/// round after requests always trims, so memory under load stays as low as trimming every
/// round kept it). Not every round: an idle check's own garbage (its INFO reply, the bodies it
/// replaced) is reused by the next check, and trimming it each time cost a walk of the heap,
/// `madvise` calls and page faults to fill the same pages again (13 % of an idle daemon's CPU
/// samples, against 5 % every tenth round).
const TRIM_EVERY: u32 = 10;

/// True on the first call and on every `n`th after it: housekeeping that need not run every
/// round.
#[derive(Debug)]
struct Every {
    n: u32,
    count: u32,
}

impl Every {
    fn new(n: u32) -> Self {
        Self {
            n: n.max(1),
            count: 0,
        }
    }

    fn due(&mut self) -> bool {
        let due = self.count == 0;
        self.count = (self.count + 1) % self.n;
        due
    }
}

/// Publishes a snapshot whenever targets complete rounds (the rounds queued meanwhile make one
/// snapshot): every target's latest named checks, in configuration order, with a pending
/// `<target>:responseTime` for a target that has not completed a round yet. Returns when every
/// target's loop has ended.
pub async fn publish(
    config: Arc<Config>,
    mut rounds: mpsc::Receiver<Round>,
    metrics: Arc<Metrics>,
    snapshots: watch::Sender<Arc<Snapshot>>,
) {
    let description = description(&config);
    let mut latest: Latest = vec![None; config.targets.len()];
    let mut history = History::default();
    let mut trim = Every::new(TRIM_EVERY);
    let mut started = false;
    while let Some(round) = rounds.recv().await {
        // The first target's rounds pace the history (one sample per interval) and the trim.
        let mut paced = round.target == 0;
        latest[round.target] = Some((Instant::now(), round.checks));
        while let Ok(round) = rounds.try_recv() {
            paced |= round.target == 0;
            latest[round.target] = Some((Instant::now(), round.checks));
        }
        let verdict = combine(&config, &latest, Instant::now());
        metrics.record_statuses(&verdict);
        if paced {
            history.record(&verdict);
        }
        let snapshot = Snapshot::new(Instant::now(), verdict, &description, started, &history);
        started = snapshot.started;
        snapshots.send_replace(Arc::new(snapshot));
        if paced {
            crate::process::release_free_memory(trim.due());
        }
    }
}

/// Each target's latest round: when it arrived, and its named checks.
type Latest = Vec<Option<(Instant, Vec<NamedCheck>)>>;

/// Every target's latest named checks, in configuration order: a pending `responseTime` for a
/// target with no round yet, and a failing one for a target whose last round is older than
/// max-age (its loop wedged), whatever the other targets' rounds do for the snapshot's age.
fn combine(config: &Config, latest: &Latest, now: Instant) -> Verdict {
    let checks = config
        .targets
        .iter()
        .zip(latest)
        .flat_map(|(target, round)| match round {
            None => vec![pending(target)],
            Some((at, _)) if now.saturating_duration_since(*at) > config.max_age => {
                vec![stale(target, config.max_age)]
            }
            Some((_, checks)) => checks.clone(),
        });
    Verdict {
        checks: checks.collect(),
    }
}

/// The `responseTime` check of a target whose loop completed no round within max-age.
fn stale(target: &Target, max_age: Duration) -> NamedCheck {
    let reason = format!(
        "stale: no check of this target completed within max-age {}; its check loop is wedged",
        humantime::format_duration(max_age)
    );
    // Failing at once, whatever the target's thresholds: the loop is wedged.
    let at_once = crate::health::Thresholds {
        failure: 1,
        success: 1,
    };
    failing_response_time(target, Failure::Error(reason), at_once)
}

/// A target's `responseTime` check with one failing component: its address and `failure`.
fn failing_response_time(
    target: &Target,
    failure: Failure,
    thresholds: crate::health::Thresholds,
) -> NamedCheck {
    let outcome = Outcome {
        at: SystemTime::now(),
        result: Err(failure),
    };
    NamedCheck {
        name: target.checks.names.response_time,
        components: vec![Component {
            id: target.redis.redacted().to_owned(),
            kind: "datastore",
            server: None,
            state: Tracker::new(thresholds).observe(outcome),
        }],
        readiness: target.readiness,
    }
}

/// The `responseTime` check of a target with no completed round yet: failing, not yet known.
pub fn pending(target: &Target) -> NamedCheck {
    failing_response_time(
        target,
        Failure::Unreachable(NO_CHECK_YET.to_owned()),
        target.thresholds,
    )
}

/// Why a target has no verdict yet.
pub const NO_CHECK_YET: &str = "no check has completed yet";

/// A [`Tracker`] per (check name, component key).
pub type Trackers = BTreeMap<(&'static str, String), Tracker>;

/// Folds one round of a target's reports into its trackers and returns its verdict: one
/// named check per check some component reported, in the target's name order. A component
/// gone from the round (a former cluster primary) takes its trackers with it; a check a
/// component skipped (the state checks while Redis does not answer) keeps its tracker.
pub fn judge(reports: Vec<Report>, trackers: &mut Trackers, target: &Target) -> Verdict {
    trackers.retain(|(_, key), _| reports.iter().any(|o| &o.key == key));
    let mut checks: Vec<NamedCheck> = Vec::new();
    for report in reports {
        for (name, outcome) in report.outcomes {
            let state = trackers
                .entry((name, report.key.clone()))
                .or_insert_with(|| Tracker::new(target.thresholds))
                .observe(outcome);
            let component = Component {
                id: report.id.clone(),
                kind: "datastore",
                server: report.server.clone(),
                state,
            };
            match checks.iter_mut().find(|c| c.name == name) {
                Some(check) => check.components.push(component),
                None => checks.push(NamedCheck {
                    name,
                    components: vec![component],
                    readiness: target.readiness,
                }),
            }
        }
    }
    let order = target.checks.names.all();
    checks.sort_by_key(|c| order.iter().position(|n| *n == c.name));
    Verdict { checks }
}

/// What the last round read of each component (by its tracking key): the server's address
/// (`componentId`) and its `run_id`.
type Seen = BTreeMap<String, (String, String)>;

/// Counts and logs a server whose `run_id` changed since the last check at the same address:
/// Redis restarted and may have lost data. A component now answered by another server (a
/// Sentinel failover followed) is a topology change instead, logged once and counted apart.
/// Servers gone from the round (former cluster primaries) are forgotten.
fn note_restarts(target: &Target, reports: &[Report], seen: &mut Seen, metrics: &Metrics) {
    for report in reports {
        let Some((run_id, uptime)) = &report.run else {
            continue;
        };
        let now = (report.id.clone(), run_id.clone());
        match seen.insert(report.key.clone(), now) {
            Some((id, _)) if id != report.id => {
                metrics.topology_changes(target.name).inc();
                warn!(redis_target = target.name, component = %report.id, previous = %id, "now checking another server (a Sentinel failover followed): not a restart");
            }
            Some((_, previous)) if previous != *run_id => {
                metrics.count_restart(target.name);
                let uptime = uptime.map_or_else(|| "unknown".to_owned(), |s| format!("{s}s"));
                warn!(redis_target = target.name, component = %report.id, uptime = %uptime, "redis restarted (new run_id): data not persisted may be lost");
            }
            _ => {}
        }
    }
    seen.retain(|key, _| reports.iter().any(|r| &r.key == key));
}

/// The document's `description`: the Redis URL, or with several targets each name and URL.
pub fn description(config: &Config) -> String {
    match config.targets.as_slice() {
        [only] if only.name == DEFAULT_TARGET => {
            format!("Redis at {} as seen by redis-healthd", only.redis.redacted())
        }
        targets => {
            let named: Vec<String> = targets
                .iter()
                .map(|t| format!("{} ({})", t.name, t.redis.redacted()))
                .collect();
            format!("Redis targets {} as seen by redis-healthd", named.join(", "))
        }
    }
}

/// Logs a change of a target's verdict once, with its reason (repeated failures stay quiet);
/// returns the status.
fn log_transition(target: &'static str, previous: Option<Status>, verdict: &Verdict) -> Status {
    // The target's own status: an informational target's failure is still a failure here.
    let status = verdict
        .checks
        .iter()
        .map(NamedCheck::status)
        .max()
        .unwrap_or(Status::Fail);
    if previous == Some(status) {
        return status;
    }
    let reason = verdict.output().unwrap_or_default();
    match status {
        Status::Pass => info!(redis_target = target, "redis check passing"),
        Status::Warn => warn!(redis_target = target, reason = %reason, "redis check warning"),
        Status::Fail => warn!(redis_target = target, reason = %reason, "redis check failing"),
    }
    status
}
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn housekeeping_runs_on_the_first_round_and_every_nth_after() {
        let mut every = Every::new(10);
        let rounds: Vec<u32> = (0..25u32).filter(|_| every.due()).collect();
        assert_eq!(rounds, vec![0, 10, 20]);
        let mut always = Every::new(1);
        assert!((0..5).all(|_| always.due()));
    }

    #[test]
    fn a_new_server_under_the_same_component_is_a_topology_change_not_a_restart() {
        let cli = Cli::parse_args(["redis-healthd"]).unwrap();
        let config = Config::from_flags(cli.serve.flags()).unwrap();
        let metrics = Metrics::new(config.timeout, &["redis"]);
        let report = |id: &str, run: &str| Report {
            key: String::new(),
            id: id.into(),
            outcomes: Vec::new(),
            run: Some((run.into(), Some(1))),
            server: None,
        };
        let target = &config.targets[0];
        let mut seen = Seen::new();
        let rounds = [
            report("redis://m:1", "a"),
            report("redis://m:1", "a"),
            report("redis://r:2", "b"), // Sentinel names the promoted replica
            report("redis://r:2", "b"),
            report("redis://r:2", "c"), // that server restarts
        ];
        for round in rounds {
            note_restarts(target, &[round], &mut seen, &metrics);
        }
        metrics.record(target.name, &Verdict { checks: Vec::new() });
        let text = String::from_utf8_lossy(&metrics.encode(false, true).0).into_owned();
        for line in [
            "redis_healthd_redis_restarts_total{target=\"redis\"} 1\n",
            "redis_healthd_topology_changes_total{target=\"redis\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn run_ids_of_servers_gone_from_the_round_are_forgotten() {
        let cli = Cli::parse_args(["redis-healthd"]).unwrap();
        let config = Config::from_flags(cli.serve.flags()).unwrap();
        let metrics = Metrics::new(config.timeout, &["redis"]);
        let report = |key: &str, run: &str| Report {
            key: key.into(),
            id: key.into(),
            outcomes: Vec::new(),
            run: Some((run.into(), Some(1))),
            server: None,
        };
        let mut run_ids = Seen::new();
        let target = &config.targets[0];
        note_restarts(
            target,
            &[report("a:1", "x"), report("b:1", "y")],
            &mut run_ids,
            &metrics,
        );
        note_restarts(target, &[report("b:1", "y")], &mut run_ids, &metrics);
        assert_eq!(run_ids.keys().collect::<Vec<_>>(), ["b:1"]);
        // A node that comes back is not taken for a restart of the one it was.
        note_restarts(
            target,
            &[report("a:1", "z"), report("b:1", "y")],
            &mut run_ids,
            &metrics,
        );
        let text = String::from_utf8_lossy(&metrics.encode(false, true).0).into_owned();
        assert!(
            text.contains("redis_healthd_redis_restarts_total{target=\"redis\"} 0\n"),
            "{text}"
        );
    }

    /// Two targets, the second's loop wedged: its last `pass` goes stale on its own after
    /// max-age, though the first target's rounds keep the snapshot fresh.
    #[test]
    fn a_wedged_target_goes_stale_whatever_the_other_targets_do() {
        let cli = Cli::parse_args([
            "redis-healthd",
            "--target",
            "cache=redis://127.0.0.1:1",
            "--target",
            "queue=redis://127.0.0.1:2",
        ])
        .unwrap();
        let config = Config::from_flags(cli.serve.flags()).unwrap();
        let passing = |target: &Target| NamedCheck {
            name: target.checks.names.response_time,
            components: vec![Component {
                id: target.redis.redacted().to_owned(),
                kind: "datastore",
                server: None,
                state: Tracker::new(crate::health::Thresholds {
                    failure: 1,
                    success: 1,
                })
                .observe(Outcome {
                    at: SystemTime::now(),
                    result: Ok(crate::health::Reading::pass(
                        crate::health::ObservedValue::Nothing,
                    )),
                }),
            }],
            readiness: true,
        };
        let start = Instant::now();
        let wedged_at = start;
        let mut latest: Latest = config
            .targets
            .iter()
            .map(|t| Some((start, vec![passing(t)])))
            .collect();
        let statuses = |verdict: &Verdict| -> Vec<(&str, Status)> {
            verdict.checks.iter().map(|c| (c.name, c.status())).collect()
        };
        // Within max-age both pass; then the first target keeps completing rounds, the second
        // does not.
        let within = start + config.max_age;
        latest[0] = Some((within, vec![passing(&config.targets[0])]));
        assert_eq!(
            statuses(&combine(&config, &latest, within)),
            [
                ("cache:responseTime", Status::Pass),
                ("queue:responseTime", Status::Pass)
            ]
        );
        let past = wedged_at + config.max_age + Duration::from_millis(1);
        latest[0] = Some((past, vec![passing(&config.targets[0])]));
        let verdict = combine(&config, &latest, past);
        assert_eq!(
            statuses(&verdict),
            [
                ("cache:responseTime", Status::Pass),
                ("queue:responseTime", Status::Fail)
            ]
        );
        let output = verdict.checks[1].components[0]
            .state
            .output
            .clone()
            .unwrap_or_default();
        assert!(
            output.starts_with("stale: no check of this target completed within max-age 6s"),
            "{output}"
        );
    }

    /// The check loop's future lives in one task; fred's command futures are several KiB each,
    /// and five of them unboxed in one check made it 70 KiB, copied through the main stack at
    /// spawn (+190 KiB of resident stack, measured). Boxed, it stays a few KiB.
    #[tokio::test]
    async fn the_check_loop_future_stays_small() {
        let cli = Cli::parse_args([
            "redis-healthd",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--check-writes",
        ])
        .unwrap();
        let config = Arc::new(Config::from_flags(cli.serve.flags()).unwrap());
        let metrics = Arc::new(Metrics::new(config.timeout, &["redis"]));
        let servers = Servers::start(
            &config,
            &config.targets[0],
            metrics.connection_errors("redis"),
            Counter::default(),
        )
        .unwrap();
        let (rounds, _) = mpsc::channel(2);
        let (_, reconnect) = watch::channel(0);
        let (_, stop) = watch::channel(false);
        let run = run(config, 0, servers, metrics, rounds, reconnect, stop);
        assert!(
            std::mem::size_of_val(&run) < 8 * 1024,
            "{} bytes",
            std::mem::size_of_val(&run)
        );
    }
}
