//! The named checks, no I/O: what a target's checks ask and how they judge ([`Plan`]), what
//! goes to a server each round ([`Commands`]), what it answered ([`Replies`]), and how the
//! answers become one [`Outcome`] per named check, a [`Report`] ([`evaluate`]). The daemon's
//! loop, the cluster code and `probe` run every server's replies through the same [`evaluate`].
//!
//! PING alone answers PONG while Redis refuses every write (OOM, NOREPLICAS, a demoted master)
//! or serves stale reads; the checks here read `INFO` sent alongside the PING, and optionally
//! write a key and look for a drain key, in the same round trip.

use std::time::{Duration, SystemTime};

use crate::health::{format_ms, Failure, ObservedValue, Outcome, Reading, Report};
use crate::info::{Info, Role, PERSISTENCE_FIELDS};
use crate::names::{measurement, Names, RESPONSE_TIME};

/// The role `--expect-role` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectRole {
    Master,
    Replica,
    Any,
}

/// What `--cluster-ready` asks of a cluster's primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterReady {
    /// Every primary passes (a dead one fails readiness).
    All,
    /// More than half pass: the failing ones show as `warn`, with their reasons.
    Majority,
}

/// What a target's checks ask and how they judge what they read.
#[derive(Clone, Debug)]
pub struct Plan {
    /// A slower PONG is `warn`.
    pub warn_latency: Duration,
    /// Send `INFO` with each PING (role, replication, memory, persistence).
    pub state: bool,
    pub expect_role: ExpectRole,
    /// The URL reaches a server that must be a master (Sentinel's, a cluster's primaries):
    /// a replica there is a failover in progress.
    pub master_by_topology: Option<&'static str>,
    /// With `noeviction`, used memory from this percentage of `maxmemory` on is `warn`.
    pub warn_memory: f64,
    /// A replica whose master was last heard from longer ago than this is stale.
    pub max_replication_lag: Duration,
    /// A cluster is ready with every primary passing, or with more than half.
    pub cluster_ready: ClusterReady,
    /// `--check-writes`: the key `SET` each check (a cluster gives each primary its own).
    pub write_key: Option<String>,
    /// The expiry of the write key.
    pub write_ttl: Duration,
    pub drain_key: Option<String>,
    /// The target's check names.
    pub names: Names,
}

impl Plan {
    /// The role this server must have and why (`--expect-role`, or Sentinel or the cluster
    /// naming it the master); `None` when any role will do.
    pub fn required_role(&self) -> Option<(Role, String)> {
        match (self.master_by_topology, self.expect_role) {
            (Some(by), _) => Some((Role::Master, format!("{by} names it the master"))),
            (None, ExpectRole::Master) => Some((Role::Master, "--expect-role master".into())),
            (None, ExpectRole::Replica) => Some((Role::Replica, "--expect-role replica".into())),
            (None, ExpectRole::Any) => None,
        }
    }

    /// What to ask a single server (not a cluster node) each check.
    pub fn commands(&self) -> Commands {
        Commands {
            cluster_info: false,
            info: self.state,
            role_required: self.required_role().is_some(),
            write: self.write_key.clone().map(|key| (key, self.write_ttl)),
            drain: self.drain_key.clone(),
        }
    }
}

/// What one check sends a server besides PING, all pipelined on its connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// `CLUSTER INFO` (cluster nodes).
    pub cluster_info: bool,
    /// `INFO`: the sections the state checks read, as the schedule picks them (`info_schedule`).
    pub info: bool,
    /// A role is required (`--expect-role`, Sentinel, a cluster): `INFO replication` every
    /// round, whatever the server's role.
    pub role_required: bool,
    /// `SET key <unix ms> PX ttl`.
    pub write: Option<(String, Duration)>,
    /// `EXISTS key`.
    pub drain: Option<String>,
}

/// The reply to `INFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfoReply {
    /// Not asked: state checks off.
    NotAsked,
    /// The user may not run INFO (`NOPERM ...`); not asked again until the next connection.
    Denied(String),
    /// No usable answer.
    Failed(String),
    Text(String),
}

/// What a server answered in one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replies {
    /// Wall-clock time the check started.
    pub at: SystemTime,
    /// The PONG's round trip, or why there was none.
    pub ping: Result<Duration, Failure>,
    pub cluster_info: Option<Result<String, String>>,
    pub info: InfoReply,
    /// The SET's round trip, or the reply that refused it.
    pub write: Option<Result<Duration, Failure>>,
    /// Whether the drain key exists.
    pub drain: Option<Result<bool, Failure>>,
}

impl Replies {
    /// A check that sent nothing: it failed before a command went out.
    pub fn failed(at: SystemTime, failure: Failure) -> Self {
        Self {
            at,
            ping: Err(failure),
            cluster_info: None,
            info: InfoReply::NotAsked,
            write: None,
            drain: None,
        }
    }
}

/// Turns one server's replies into an outcome per named check. While the server does not
/// answer PING only `redis:responseTime` is reported: the state checks cannot look.
pub fn evaluate(key: String, id: String, replies: Replies, commands: &Commands, plan: &Plan) -> Report {
    let at = replies.at;
    let outcome = |result| Outcome { at, result };
    let ping = loading_progress(replies.ping, &replies.info).and_then(|rtt| match replies.cluster_info {
        Some(Ok(text)) => {
            crate::info::cluster_state_problem(&text).map_or(Ok(rtt), |p| Err(Failure::Error(p)))
        }
        Some(Err(reason)) => Err(Failure::Error(format!("CLUSTER INFO failed: {reason}"))),
        None => Ok(rtt),
    });
    let answered = ping.is_ok();
    let names = &plan.names;
    let mut outcomes = vec![(
        names.response_time,
        outcome(ping.map(|rtt| response_time(rtt, plan))),
    )];
    if !answered {
        return Report {
            key,
            id,
            outcomes,
            run: None,
            server: None,
        };
    }
    let mut run = None;
    let mut server = None;
    match replies.info {
        InfoReply::NotAsked => {}
        InfoReply::Text(text) => {
            let info = Info::parse(&text);
            run = info.run_id.clone().map(|id| (id, info.uptime_in_seconds));
            server = info.server.clone();
            outcomes.push((names.role, outcome(role(&info, plan))));
            if info.role == Some(Role::Replica) {
                outcomes.push((names.replication, outcome(replication(&info, plan))));
            }
            outcomes.push((names.memory, outcome(memory(&info, plan))));
            outcomes.push((names.persistence, outcome(persistence(&info))));
        }
        InfoReply::Denied(reason) | InfoReply::Failed(reason) => {
            let unknown = format!("not checked: INFO failed: {reason}");
            // A role the operator asked for fails closed: nobody knows it.
            let role = match plan.required_role() {
                Some((expected, why)) => Err(Failure::Error(format!(
                    "{unknown}: the role must be {} ({why}), and only INFO tells it (ACL: +info)",
                    expected.as_str()
                ))),
                None => Ok(Reading::warn(ObservedValue::Nothing, unknown.clone())),
            };
            outcomes.push((names.role, outcome(role)));
            for name in [names.memory, names.persistence] {
                outcomes.push((
                    name,
                    outcome(Ok(Reading::warn(ObservedValue::Nothing, unknown.clone()))),
                ));
            }
        }
    }
    if let Some(write) = replies.write {
        outcomes.push((
            names.writable,
            outcome(write.map(|rtt| Reading::pass(ObservedValue::RoundTrip(rtt)))),
        ));
    }
    if let (Some(exists), Some(key)) = (replies.drain, &commands.drain) {
        let result = match exists {
            Ok(true) => Err(Failure::Error(format!("drained: key {key} exists"))),
            Ok(false) => Ok(Reading::pass(ObservedValue::Text("not drained".into()))),
            // A drain key that cannot be read must not take the server out of rotation.
            Err(failure) => Ok(Reading::warn(
                ObservedValue::Nothing,
                format!("cannot read the drain key {key}: {failure}"),
            )),
        };
        outcomes.push((names.drain, outcome(result)));
    }
    Report {
        key,
        id,
        outcomes,
        run,
        server,
    }
}

/// A `LOADING` refusal of PING, with how far the load is and the time left from the INFO sent
/// alongside it (INFO answers during a load).
fn loading_progress(ping: Result<Duration, Failure>, info: &InfoReply) -> Result<Duration, Failure> {
    match (ping, info) {
        (Err(Failure::Error(reason)), InfoReply::Text(text)) if reason.starts_with("LOADING") => {
            let progress = Info::parse(text).loading.and_then(|l| l.describe());
            Err(Failure::Error(match progress {
                Some(progress) => format!("{reason} ({progress})"),
                None => reason,
            }))
        }
        (ping, _) => ping,
    }
}

/// True when the server answered the PING (and, for a cluster, said `cluster_state:ok`).
pub fn answered(report: &Report) -> bool {
    report
        .outcomes
        .iter()
        .any(|(name, o)| measurement(name) == measurement(RESPONSE_TIME) && o.result.is_ok())
}

/// `redis:responseTime`: a PONG, `warn` when slower than `--warn-latency`.
fn response_time(rtt: Duration, plan: &Plan) -> Reading {
    let value = ObservedValue::RoundTrip(rtt);
    if rtt > plan.warn_latency {
        let warning = format!(
            "slow PONG: {} is over the warn latency {}",
            format_ms(rtt),
            humantime::format_duration(plan.warn_latency)
        );
        Reading::warn(value, warning)
    } else {
        Reading::pass(value)
    }
}

/// `redis:role`: the role against `--expect-role`, or against the topology (a server that
/// Sentinel or the cluster calls a master but that says it is a replica is mid-failover).
/// A Sentinel fails whatever the flags: it answers PING and INFO, but no data command.
fn role(info: &Info, plan: &Plan) -> Result<Reading, Failure> {
    if let Some(mode) = info.mode.as_deref().filter(|m| *m == "sentinel") {
        return Err(Failure::Error(format!(
            "this is a Sentinel (mode {mode}), not a data server: the application cannot run a \
             data command here; to check the master it monitors, give a Sentinel URL \
             (redis-sentinel://host:26379?sentinelServiceName=<master name>)"
        )));
    }
    let Some(role) = info.role else {
        return match plan.required_role() {
            // Fail closed: the role was asked for and nobody knows it.
            Some((expected, why)) => Err(Failure::Error(format!(
                "INFO has no role field: the role must be {} ({why})",
                expected.as_str()
            ))),
            None => Ok(Reading::warn(
                ObservedValue::Nothing,
                "INFO has no role field".into(),
            )),
        };
    };
    let described = match (role, &info.master) {
        (Role::Replica, Some(master)) => format!("replica of {master}"),
        _ => role.as_str().to_owned(),
    };
    match (plan.required_role(), plan.master_by_topology) {
        (Some((expected, _)), Some(by)) if expected != role => Err(Failure::Error(format!(
            "role is {described}, but {by} names it the master: a failover is in progress"
        ))),
        (Some((expected, _)), None) if expected != role => Err(Failure::Error(format!(
            "role is {described}, expected {}",
            expected.as_str()
        ))),
        _ => Ok(Reading::pass(ObservedValue::Text(role.as_str().to_owned()))),
    }
}

/// `redis:replication` (replicas only): the link to the master is up, no sync runs, and the
/// master was heard from within `--max-replication-lag` (a frozen or partitioned master keeps
/// the link `up` for up to `repl-timeout`, 60 s, while the reads go staler). Otherwise `fail`
/// when a replica is expected, else `warn` (stale reads). The observed value is the lag in
/// seconds: since the master was last heard from, or since the link went down.
fn replication(info: &Info, plan: &Plan) -> Result<Reading, Failure> {
    let link = info.master_link_status.as_deref().unwrap_or("unknown");
    let up = link == "up";
    let last_io = info.master_last_io_seconds_ago;
    let lag = match (up, last_io, info.master_link_down_since_seconds) {
        (true, Some(io), _) if io >= 0 => Some(io.unsigned_abs()),
        (false, _, Some(down)) if down >= 0 => Some(down.unsigned_abs()),
        _ => None,
    };
    let value = lag.map_or_else(|| ObservedValue::Text(link.to_owned()), ObservedValue::Seconds);
    let limit = plan.max_replication_lag;
    let mut fields = Vec::new();
    if !up {
        fields.push(format!("master_link_status:{link}"));
        if let Some(since) = info.master_link_down_since_seconds {
            // -1: the link was never up since this replica started (Redis's own convention).
            let words = if since < 0 { " (never linked)" } else { "" };
            fields.push(format!("master_link_down_since_seconds:{since}{words}"));
        }
    }
    if info.master_sync_in_progress {
        if up {
            fields.push("master_link_status:up".into());
        }
        fields.push("master_sync_in_progress:1".into());
    }
    match last_io.filter(|_| up) {
        Some(io) if io < 0 => fields.push(format!("master_last_io_seconds_ago:{io} (no link)")),
        Some(io) if Duration::from_secs(io.unsigned_abs()) > limit => fields.push(format!(
            "master_last_io_seconds_ago:{io}, over the max replication lag {}: the master is not heard from",
            humantime::format_duration(limit)
        )),
        _ => {}
    }
    if fields.is_empty() {
        return Ok(Reading::pass(value));
    }
    let master = info.master.as_deref().unwrap_or("its master");
    let problem = format!(
        "{}: reads from this replica of {master} may be stale",
        fields.join(", ")
    );
    if plan.expect_role == ExpectRole::Replica {
        Err(Failure::Error(problem))
    } else {
        Ok(Reading::warn(value, problem))
    }
}

/// `redis:memory`: used memory as a percentage of `maxmemory` (bytes without a limit), counted
/// as Redis counts it (`used_memory` less `mem_not_counted_for_evict`). A full Redis refuses
/// writes when it can evict nothing: under `noeviction`, and under a `volatile-*` policy when
/// no key has an expiry. Only then is it `warn` near or over the limit; never on a replica,
/// which ignores `maxmemory` (`replica-ignore-maxmemory`) and takes no writes of its own.
fn memory(info: &Info, plan: &Plan) -> Result<Reading, Failure> {
    let Some(used) = info.used_memory else {
        return Ok(Reading::warn(
            ObservedValue::Nothing,
            "INFO has no used_memory field".into(),
        ));
    };
    let limit = info.maxmemory.unwrap_or(0);
    if limit == 0 {
        return Ok(Reading::pass(ObservedValue::Bytes(used)));
    }
    let counted = used.saturating_sub(info.mem_not_counted_for_evict.unwrap_or(0));
    // Exact below 2^53, which no Redis reaches.
    let percent = counted as f64 * 100.0 / limit as f64;
    let value = ObservedValue::Percent(percent);
    let policy = info.maxmemory_policy.as_deref().unwrap_or("unknown");
    let cannot_evict = match policy {
        "noeviction" => Some(String::from("noeviction")),
        volatile if volatile.starts_with("volatile-") && info.expires == Some(0) => {
            Some(format!("{volatile} and no key with an expiry to evict"))
        }
        _ => None,
    };
    let Some(why) = cannot_evict.filter(|_| info.role != Some(Role::Replica)) else {
        return Ok(Reading::pass(value));
    };
    if percent < plan.warn_memory {
        return Ok(Reading::pass(value));
    }
    let warning = if counted > limit {
        format!(
            "used_memory {} over maxmemory {} with {why}: writes fail with OOM",
            mib(counted),
            mib(limit)
        )
    } else {
        format!(
            "used_memory {} is {percent:.1}% of maxmemory {} with {why}: writes fail with OOM at 100%",
            mib(counted),
            mib(limit)
        )
    };
    Ok(Reading::warn(value, warning))
}

/// `redis:persistence`: `warn` naming each status field that says `err`.
fn persistence(info: &Info) -> Result<Reading, Failure> {
    let failed: Vec<String> = info
        .persistence
        .iter()
        .filter(|(_, value)| value == "err")
        .map(|(field, value)| format!("{field}:{value}"))
        .collect();
    if failed.is_empty() {
        let known = info.persistence.len() == PERSISTENCE_FIELDS.len();
        return Ok(if known {
            Reading::pass(ObservedValue::Text("ok".into()))
        } else {
            Reading::warn(
                ObservedValue::Nothing,
                "INFO has no persistence status fields".into(),
            )
        });
    }
    Ok(Reading::warn(
        ObservedValue::Text("err".into()),
        format!("{}: the last save or append-only write failed", failed.join(", ")),
    ))
}

/// Bytes as MiB with one decimal (`1.3 MiB`), as Redis's `*_human` fields round.
fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if (mib - mib.round()).abs() < 0.05 {
        format!("{} MiB", mib.round())
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{DRAIN, MEMORY, PERSISTENCE, REPLICATION, ROLE, WRITABLE};

    fn plan() -> Plan {
        Plan {
            warn_latency: Duration::from_millis(100),
            state: true,
            expect_role: ExpectRole::Any,
            master_by_topology: None,
            warn_memory: 90.0,
            max_replication_lag: Duration::from_secs(30),
            cluster_ready: ClusterReady::All,
            write_key: None,
            write_ttl: Duration::from_secs(3),
            drain_key: None,
            names: Names::DEFAULT,
        }
    }

    fn replies(info: &str) -> Replies {
        Replies {
            at: SystemTime::UNIX_EPOCH,
            ping: Ok(Duration::from_millis(1)),
            cluster_info: None,
            info: InfoReply::Text(info.into()),
            write: None,
            drain: None,
        }
    }

    /// `(check, Ok(warning) | Err(failure))` per outcome.
    fn judged(report: &Report) -> Vec<(&'static str, Result<Option<String>, String>)> {
        report
            .outcomes
            .iter()
            .map(|(name, o)| {
                let judged = match &o.result {
                    Ok(reading) => Ok(reading.warning.clone()),
                    Err(failure) => Err(failure.to_string()),
                };
                (*name, judged)
            })
            .collect()
    }

    fn judge(info: &str, plan: &Plan) -> Vec<(&'static str, Result<Option<String>, String>)> {
        let commands = plan.commands();
        judged(&evaluate(
            String::new(),
            "id".into(),
            replies(info),
            &commands,
            plan,
        ))
    }

    const MASTER: &str = "run_id:abc\r\nuptime_in_seconds:5\r\nrole:master\r\nused_memory:1000\r\nmaxmemory:0\r\n\
        maxmemory_policy:noeviction\r\nrdb_last_bgsave_status:ok\r\naof_last_bgrewrite_status:ok\r\naof_last_write_status:ok\r\n";

    #[test]
    fn a_healthy_master_passes_every_state_check() {
        let report = evaluate(
            String::new(),
            "id".into(),
            replies(MASTER),
            &Commands::default(),
            &plan(),
        );
        assert_eq!(report.run, Some(("abc".into(), Some(5))));
        assert_eq!(
            judged(&report),
            [
                (RESPONSE_TIME, Ok(None)),
                (ROLE, Ok(None)),
                (MEMORY, Ok(None)),
                (PERSISTENCE, Ok(None)),
            ]
        );
        assert_eq!(
            report.outcomes[2].1.result.as_ref().unwrap().value,
            ObservedValue::Bytes(1000)
        );
    }

    #[test]
    fn a_role_other_than_expected_fails() {
        let replica = MASTER.replace(
            "role:master",
            "role:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\nmaster_link_status:up",
        );
        let expect_master = Plan {
            expect_role: ExpectRole::Master,
            ..plan()
        };
        assert_eq!(
            judge(&replica, &expect_master)[1],
            (
                ROLE,
                Err("role is replica of 10.0.0.7:6379, expected master".into())
            )
        );
        let sentinel = Plan {
            master_by_topology: Some("Sentinel"),
            ..plan()
        };
        assert_eq!(
            judge(&replica, &sentinel)[1],
            (
                ROLE,
                Err("role is replica of 10.0.0.7:6379, but Sentinel names it the master: a failover is in progress".into())
            )
        );
        let expect_replica = Plan {
            expect_role: ExpectRole::Replica,
            ..plan()
        };
        assert_eq!(
            judge(MASTER, &expect_replica)[1],
            (ROLE, Err("role is master, expected replica".into()))
        );
        assert_eq!(judge(&replica, &expect_replica)[1], (ROLE, Ok(None)));
        assert_eq!(judge(&replica, &expect_replica)[2], (REPLICATION, Ok(None)));
    }

    #[test]
    fn a_replica_whose_master_is_not_heard_from_is_stale_however_its_link_looks() {
        let replica = MASTER.replace(
            "role:master",
            "role:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\nmaster_link_status:up\r\n\
             master_last_io_seconds_ago:3\r\nmaster_sync_in_progress:0",
        );
        let report = judge(&replica, &plan());
        assert_eq!(report[2], (REPLICATION, Ok(None)));
        let frozen = replica.replace("master_last_io_seconds_ago:3", "master_last_io_seconds_ago:45");
        let problem = "master_last_io_seconds_ago:45, over the max replication lag 30s: the master is not \
                       heard from: reads from this replica of 10.0.0.7:6379 may be stale";
        assert_eq!(
            judge(&frozen, &plan())[2],
            (REPLICATION, Ok(Some(problem.into())))
        );
        let expect_replica = Plan {
            expect_role: ExpectRole::Replica,
            ..plan()
        };
        assert_eq!(
            judge(&frozen, &expect_replica)[2],
            (REPLICATION, Err(problem.into()))
        );
        let lax = Plan {
            max_replication_lag: Duration::from_secs(60),
            ..plan()
        };
        assert_eq!(judge(&frozen, &lax)[2], (REPLICATION, Ok(None)));
        let no_link = replica.replace("master_last_io_seconds_ago:3", "master_last_io_seconds_ago:-1");
        let (_, said) = &judge(&no_link, &plan())[2];
        assert!(
            format!("{said:?}").contains("master_last_io_seconds_ago:-1 (no link)"),
            "{said:?}"
        );
    }

    #[test]
    fn a_replica_with_its_link_down_warns_or_fails_as_expected() {
        let stale = MASTER.replace(
            "role:master",
            "role:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\nmaster_link_status:down\r\n\
             master_sync_in_progress:0\r\nmaster_link_down_since_seconds:12",
        );
        let problem =
            "master_link_status:down, master_link_down_since_seconds:12: reads from this replica of \
                       10.0.0.7:6379 may be stale";
        assert_eq!(judge(&stale, &plan())[2], (REPLICATION, Ok(Some(problem.into()))));
        let expect_replica = Plan {
            expect_role: ExpectRole::Replica,
            ..plan()
        };
        assert_eq!(
            judge(&stale, &expect_replica)[2],
            (REPLICATION, Err(problem.into()))
        );
        let never = stale.replace(
            "master_link_down_since_seconds:12",
            "master_link_down_since_seconds:-1",
        );
        let words = "master_link_status:down, master_link_down_since_seconds:-1 (never linked): reads";
        let (_, said) = &judge(&never, &plan())[2];
        assert!(format!("{said:?}").contains(words), "{said:?}");
        let syncing = stale
            .replace("master_link_status:down", "master_link_status:up")
            .replace("master_sync_in_progress:0", "master_sync_in_progress:1");
        assert_eq!(
            judge(&syncing, &plan())[2],
            (
                REPLICATION,
                Ok(Some(
                    "master_link_status:up, master_sync_in_progress:1: reads from this replica of 10.0.0.7:6379 \
                     may be stale"
                        .into()
                ))
            )
        );
    }

    #[test]
    fn memory_warns_near_the_limit_only_with_noeviction() {
        let full = MASTER
            .replace("used_memory:1000", "used_memory:1363149")
            .replace("maxmemory:0", "maxmemory:1048576");
        assert_eq!(
            judge(&full, &plan())[2],
            (
                MEMORY,
                Ok(Some(
                    "used_memory 1.3 MiB over maxmemory 1 MiB with noeviction: writes fail with OOM".into()
                ))
            )
        );
        let near = full.replace("used_memory:1363149", "used_memory:996147");
        assert_eq!(
            judge(&near, &plan())[2],
            (
                MEMORY,
                Ok(Some(
                    "used_memory 0.9 MiB is 95.0% of maxmemory 1 MiB with noeviction: writes fail with OOM at 100%"
                        .into()
                ))
            )
        );
        let lax = Plan {
            warn_memory: 96.0,
            ..plan()
        };
        assert_eq!(judge(&near, &lax)[2], (MEMORY, Ok(None)));
        let evicting = full.replace("noeviction", "allkeys-lru");
        assert_eq!(judge(&evicting, &plan())[2], (MEMORY, Ok(None)));
    }

    #[test]
    fn a_volatile_policy_with_nothing_to_evict_is_judged_as_noeviction() {
        let full = MASTER
            .replace("used_memory:1000", "used_memory:1363149")
            .replace("maxmemory:0", "maxmemory:1048576")
            .replace("noeviction", "volatile-lru");
        let keyspace = |dbs: &str| format!("{full}# Keyspace\r\n{dbs}");
        assert_eq!(
            judge(&keyspace("db0:keys=9000,expires=0,avg_ttl=0\r\n"), &plan())[2],
            (
                MEMORY,
                Ok(Some(
                    "used_memory 1.3 MiB over maxmemory 1 MiB with volatile-lru and no key with an expiry to evict: writes fail with OOM".into()
                ))
            )
        );
        // An empty keyspace has nothing to evict either; a key with an expiry in any database
        // can be evicted; no keyspace section (not asked) is judged as before.
        assert!(matches!(judge(&keyspace(""), &plan())[2], (MEMORY, Ok(Some(_)))));
        let some = keyspace("db0:keys=9000,expires=0,avg_ttl=0\r\ndb3:keys=2,expires=1,avg_ttl=500\r\n");
        assert_eq!(judge(&some, &plan())[2], (MEMORY, Ok(None)));
        assert_eq!(judge(&full, &plan())[2], (MEMORY, Ok(None)));
    }

    #[test]
    fn memory_is_counted_as_redis_counts_it_and_replicas_are_not_warned() {
        // 1.3 MiB used, 0.5 MiB of it replication buffers: 0.8 MiB counted, 76.2%.
        let buffers = MASTER
            .replace(
                "used_memory:1000",
                "used_memory:1363149\r\nmem_not_counted_for_evict:524288",
            )
            .replace("maxmemory:0", "maxmemory:1048576");
        let report = judge(&buffers, &plan());
        assert_eq!(report[2], (MEMORY, Ok(None)));
        let full = MASTER
            .replace("used_memory:1000", "used_memory:1363149")
            .replace("maxmemory:0", "maxmemory:1048576");
        let replica = full.replace(
            "role:master",
            "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up",
        );
        let memory = judge(&replica, &plan())
            .into_iter()
            .find(|(name, _)| *name == MEMORY)
            .unwrap();
        assert_eq!(memory, (MEMORY, Ok(None)));
    }

    #[test]
    fn persistence_errors_warn_naming_the_field() {
        let failed = MASTER.replace("rdb_last_bgsave_status:ok", "rdb_last_bgsave_status:err");
        assert_eq!(
            judge(&failed, &plan())[3],
            (
                PERSISTENCE,
                Ok(Some(
                    "rdb_last_bgsave_status:err: the last save or append-only write failed".into()
                ))
            )
        );
    }

    #[test]
    fn a_loading_redis_says_how_far_the_load_is() {
        let mut loading = replies(
            "# Persistence\r\nloading:1\r\nloading_start_time:1700000000\r\nloading_loaded_perc:47.30\r\nloading_eta_seconds:12\r\n",
        );
        loading.ping = Err(Failure::Error(
            "LOADING Redis is loading the dataset in memory".into(),
        ));
        let report = evaluate(String::new(), "id".into(), loading, &plan().commands(), &plan());
        assert_eq!(
            judged(&report),
            [(
                RESPONSE_TIME,
                Err("LOADING Redis is loading the dataset in memory (47.3% loaded, about 12 s left by its estimate)".into())
            )]
        );
        // No progress fields (INFO refused, or an older server): Redis's reason alone.
        let mut bare = replies("# Persistence\r\nloading:1\r\n");
        bare.ping = Err(Failure::Error(
            "LOADING Valkey is loading the dataset in memory".into(),
        ));
        let report = evaluate(String::new(), "id".into(), bare, &plan().commands(), &plan());
        assert_eq!(
            judged(&report),
            [(
                RESPONSE_TIME,
                Err("LOADING Valkey is loading the dataset in memory".into())
            )]
        );
    }

    #[test]
    fn a_failed_ping_reports_only_the_response_time() {
        let mut replies = replies(MASTER);
        replies.ping = Err(Failure::Error("Connection refused".into()));
        let report = evaluate(String::new(), "id".into(), replies, &Commands::default(), &plan());
        assert_eq!(
            judged(&report),
            [(RESPONSE_TIME, Err("Connection refused".into()))]
        );
    }

    #[test]
    fn denied_info_warns_instead_of_failing() {
        let mut replies = replies("");
        replies.info =
            InfoReply::Denied("NOPERM this user has no permissions to run the 'info' command".into());
        let report = evaluate(String::new(), "id".into(), replies, &Commands::default(), &plan());
        let warning =
            "not checked: INFO failed: NOPERM this user has no permissions to run the 'info' command"
                .to_owned();
        assert_eq!(
            judged(&report),
            [
                (RESPONSE_TIME, Ok(None)),
                (ROLE, Ok(Some(warning.clone()))),
                (MEMORY, Ok(Some(warning.clone()))),
                (PERSISTENCE, Ok(Some(warning))),
            ]
        );
    }

    #[test]
    fn a_required_role_fails_closed_when_nobody_can_read_it() {
        let denied = "NOPERM this user has no permissions to run the 'info' command";
        for (plan, why) in [
            (
                Plan {
                    expect_role: ExpectRole::Master,
                    ..plan()
                },
                "master (--expect-role master)",
            ),
            (
                Plan {
                    expect_role: ExpectRole::Replica,
                    ..plan()
                },
                "replica (--expect-role replica)",
            ),
            (
                Plan {
                    master_by_topology: Some("Sentinel"),
                    ..plan()
                },
                "master (Sentinel names it the master)",
            ),
        ] {
            let mut replies = replies("");
            replies.info = InfoReply::Denied(denied.into());
            let report = evaluate(String::new(), "id".into(), replies, &Commands::default(), &plan);
            let role = judged(&report)
                .into_iter()
                .find(|(name, _)| *name == ROLE)
                .unwrap()
                .1;
            assert_eq!(
                role,
                Err(format!(
                    "not checked: INFO failed: {denied}: the role must be {why}, and only INFO tells it (ACL: +info)"
                ))
            );
            let no_field = judge("# Server\r\nredis_version:7.0.15\r\n", &plan);
            assert_eq!(
                no_field[1],
                (
                    ROLE,
                    Err(format!("INFO has no role field: the role must be {why}"))
                )
            );
        }
        // Without a requirement, an unknown role only warns.
        assert_eq!(
            judge("# Server\r\nredis_version:7.0.15\r\n", &plan())[1],
            (ROLE, Ok(Some("INFO has no role field".into())))
        );
    }

    #[test]
    fn a_sentinel_fails_the_role_check_whatever_the_flags() {
        // Redis says redis_mode, Valkey says server_mode.
        for info in [
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:sentinel\r\n",
            "# Server\r\nvalkey_version:8.1.1\r\nserver_mode:sentinel\r\n",
        ] {
            for plan in [
                plan(),
                Plan {
                    expect_role: ExpectRole::Master,
                    ..plan()
                },
            ] {
                let role = judge(info, &plan)[1].clone();
                assert!(
                    matches!(&role, (ROLE, Err(why)) if why.starts_with("this is a Sentinel (mode sentinel), not a data server")),
                    "{role:?}"
                );
            }
        }
        let standalone = format!("redis_mode:standalone\r\n{MASTER}");
        assert_eq!(judge(&standalone, &plan())[1], (ROLE, Ok(None)));
    }

    #[test]
    fn writes_and_the_drain_key_are_judged_from_their_replies() {
        let plan = Plan {
            write_key: Some("redis-healthd:h".into()),
            drain_key: Some("drain".into()),
            ..plan()
        };
        let mut replies = replies(MASTER);
        replies.write = Some(Err(Failure::Error(
            "READONLY You can't write against a read only replica.".into(),
        )));
        replies.drain = Some(Ok(true));
        let report = evaluate(String::new(), "id".into(), replies, &plan.commands(), &plan);
        let judged = judged(&report);
        assert_eq!(
            judged[4..],
            [
                (
                    WRITABLE,
                    Err("READONLY You can't write against a read only replica.".into())
                ),
                (DRAIN, Err("drained: key drain exists".into())),
            ]
        );
    }

    #[test]
    fn mib_rounds_like_redis() {
        assert_eq!(mib(1_048_576), "1 MiB");
        assert_eq!(mib(1_363_149), "1.3 MiB");
    }
}
