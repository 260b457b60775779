//! Redis Cluster: one [`Connection`] per node, so a dead primary fails its own entry and no
//! other (fred's cluster client drops every connection and reconnects them all when one node
//! goes away). Each check first reads the primaries from `CLUSTER SLOTS` on a node that
//! answered last time, then PINGs every primary with `CLUSTER INFO` alongside, since a node of
//! a failing cluster still answers PONG.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use fred::prelude::{Server, Value};
use fred::types::cluster::ClusterRouting;
use fred::util::redis_keyslot;
use futures_util::future::{join_all, select_all};
use prometheus_client::metrics::counter::Counter;
use tracing::{debug, info, warn};

use crate::checks::{evaluate, Commands, Plan, Replies};
use crate::config::{Config, Target};
use crate::connection::{Connection, Event};
use crate::health::{Failure, Report, Status, Verdict};

/// The cluster as the probe sees it: the seed nodes from the URL, the primaries once known,
/// and a connection to each of them.
pub struct Cluster {
    config: Config,
    target: Target,
    seeds: Vec<Server>,
    /// The primaries `CLUSTER SLOTS` named last, each with its slot ranges; `None` until a
    /// node has answered.
    primaries: Option<Vec<Primary>>,
    /// A connection per seed and per primary, by `host:port`.
    nodes: BTreeMap<String, Connection>,
    /// The nodes whose last check passed: asked first for the topology.
    healthy: Vec<String>,
    connection_errors: Counter,
    /// Counts the changes of primaries or slots after the first topology read.
    topology_changes: Counter,
}

/// A primary and the slots it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Primary {
    server: Server,
    slots: Vec<(u16, u16)>,
    /// `--check-writes`: the write key made to land in one of its slots, found once per
    /// topology (a primary with few slots takes thousands of tries).
    write_key: Option<String>,
}

impl Primary {
    fn owns(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|(start, end)| (*start..=*end).contains(&slot))
    }

    /// What to ask this primary: `CLUSTER INFO` always; the write key with a hash tag that
    /// lands in one of its own slots (a key it does not own would answer `MOVED`); the drain
    /// key only on the primary that owns it.
    fn commands(&self, plan: &Plan) -> Commands {
        let mut commands = plan.commands();
        commands.cluster_info = true;
        commands.write = commands
            .write
            .and_then(|(_, ttl)| Some((self.write_key.clone()?, ttl)));
        commands.drain = commands
            .drain
            .filter(|key| self.owns(redis_keyslot(key.as_bytes())));
        commands
    }

    /// `key{tag}` with the first numeric tag whose slot this primary owns.
    fn own_key(&self, key: &str) -> Option<String> {
        // 16384 slots: a primary that owns even one is found within a few tens of thousands.
        (0..1_000_000u32)
            .map(|tag| format!("{key}{{{tag}}}"))
            .find(|candidate| self.owns(redis_keyslot(candidate.as_bytes())))
    }
}

/// A node's key in the connection map.
fn key(server: &Server) -> String {
    format!("{}:{}", server.host, server.port)
}

impl Cluster {
    /// Starts a connection to every seed node; never waits for Redis.
    pub fn start(
        config: &Config,
        target: &Target,
        mut seeds: Vec<Server>,
        connection_errors: Counter,
        topology_changes: Counter,
    ) -> anyhow::Result<Self> {
        // The order entries are listed in before the primaries are known.
        seeds.sort();
        let mut cluster = Self {
            config: config.clone(),
            target: target.clone(),
            seeds,
            primaries: None,
            nodes: BTreeMap::new(),
            healthy: Vec::new(),
            connection_errors,
            topology_changes,
        };
        cluster.connect_missing(&cluster.seeds.clone())?;
        Ok(cluster)
    }

    /// Opens a connection to each of `servers` not connected yet.
    fn connect_missing(&mut self, servers: &[Server]) -> anyhow::Result<()> {
        for server in servers {
            if !self.nodes.contains_key(&key(server)) {
                debug!(node = %key(server), "connecting to cluster node");
                let connection = Connection::start(
                    &self.config,
                    self.target.redis.node_config(server),
                    self.connection_errors.clone(),
                )?;
                self.nodes.insert(key(server), connection);
            }
        }
        Ok(())
    }

    /// One check: the topology, then every primary (or, before any node has named the
    /// primaries, every seed) checked concurrently. A check takes up to twice the budget when
    /// the node asked for the topology stops answering; otherwise one.
    pub async fn check(&mut self, plan: &Plan) -> Vec<Report> {
        let discovered = tokio::time::timeout(self.config.timeout, self.discover())
            .await
            .unwrap_or_else(|_| Err(Failure::Timeout(self.config.timeout).to_string()));
        let unknown_topology = match discovered {
            Ok(primaries) => {
                self.update(primaries);
                None
            }
            Err(reason) => {
                debug!(reason = %reason, "cannot read the cluster topology");
                self.primaries.is_none().then_some(reason)
            }
        };
        // Before the topology is known only PING and CLUSTER INFO can go to the seeds.
        let targets: Vec<(Server, Commands)> = match &self.primaries {
            Some(primaries) => primaries
                .iter()
                .map(|p| (p.server.clone(), p.commands(plan)))
                .collect(),
            None => self
                .seeds
                .iter()
                .map(|seed| {
                    let commands = Commands {
                        cluster_info: true,
                        ..Commands::default()
                    };
                    (seed.clone(), commands)
                })
                .collect(),
        };
        let checks = self.nodes.iter_mut().filter_map(|(k, connection)| {
            let (_, commands) = targets.iter().find(|(server, _)| key(server) == *k)?;
            Some(async move { (k.clone(), connection.check_once(commands).await) })
        });
        let mut replies: BTreeMap<String, Replies> = join_all(checks).await.into_iter().collect();
        self.healthy = targets
            .iter()
            .map(|(server, _)| key(server))
            .filter(|k| replies.get(k).is_some_and(|r| r.ping.is_ok()))
            .collect();
        targets
            .into_iter()
            .map(|(server, commands)| {
                let mut node = replies.remove(&key(&server)).unwrap_or_else(|| {
                    Replies::failed(
                        SystemTime::now(),
                        Failure::Error("no client could be built for this node".to_owned()),
                    )
                });
                if let (Some(reason), Ok(_), Some(Ok(_))) =
                    (&unknown_topology, &node.ping, &node.cluster_info)
                {
                    // The node answers, but no node has said which nodes are the primaries.
                    node.ping = Err(Failure::Error(format!("CLUSTER SLOTS failed: {reason}")));
                }
                let report = evaluate(
                    key(&server),
                    self.target.redis.server_url(&server),
                    node,
                    &commands,
                    plan,
                );
                if let Some(connection) = self.nodes.get_mut(&key(&server)) {
                    connection.watch_closely(!report.all_pass());
                }
                report
            })
            .collect()
    }

    /// The primaries according to the first node that answers `CLUSTER SLOTS`: nodes whose last
    /// check passed first, then any node with a live connection.
    async fn discover(&mut self) -> Result<Vec<Primary>, String> {
        // At start, wait for a first connection to ask while some have not reported yet (the
        // caller bounds the wait).
        while !self.nodes.values().any(Connection::is_up) && !self.nodes.values().all(Connection::settled) {
            if let Event::Closed = self.next_event().await {
                break;
            }
        }
        // A connection known to be down would hold the query until its next reconnect attempt.
        self.nodes.values_mut().for_each(Connection::drain_events);
        let candidates = self
            .healthy
            .iter()
            .filter_map(|k| self.nodes.get_key_value(k))
            .filter(|(_, c)| c.is_up())
            .chain(
                self.nodes
                    .iter()
                    .filter(|(k, c)| c.is_up() && !self.healthy.contains(k)),
            );
        let mut last_error = "no cluster node is reachable".to_owned();
        for (node, connection) in candidates {
            let host = node.rsplit_once(':').map_or(node.as_str(), |(host, _)| host);
            match connection.query::<Value>("CLUSTER", &["SLOTS"]).await {
                Ok(slots) => return primaries(slots, host),
                Err(reason) => last_error = format!("{reason} (from {node})"),
            }
        }
        Err(last_error)
    }

    /// Adopts a new set of primaries: connects to new ones, closes connections to nodes that
    /// are neither a primary nor a seed any more.
    fn update(&mut self, mut primaries: Vec<Primary>) {
        let same = |known: &Vec<Primary>| {
            known.len() == primaries.len()
                && known
                    .iter()
                    .zip(&primaries)
                    .all(|(a, b)| a.server == b.server && a.slots == b.slots)
        };
        if self.primaries.as_ref().is_some_and(same) {
            return;
        }
        if let Some(key) = &self.target.checks.write_key {
            for primary in &mut primaries {
                primary.write_key = primary.own_key(key);
            }
        }
        let servers: Vec<Server> = primaries.iter().map(|p| p.server.clone()).collect();
        let listed = servers.iter().map(key).collect::<Vec<_>>().join(",");
        if self.primaries.is_some() {
            // A failover or a resharding: servers changed, none restarted.
            self.topology_changes.inc();
            warn!(redis_target = self.target.name, primaries = %listed, "cluster topology changed: following the new primaries and slots");
        } else {
            info!(redis_target = self.target.name, primaries = %listed, "cluster primaries");
        }
        if let Err(e) = self.connect_missing(&servers) {
            // Not seen: the configuration already built the seeds' clients. The node's entry
            // says so if it happens.
            warn!(reason = %e, "cannot build a client for a cluster node");
        }
        let keep: Vec<String> = servers.iter().chain(&self.seeds).map(key).collect();
        let gone: Vec<String> = self.nodes.keys().filter(|k| !keep.contains(k)).cloned().collect();
        for node in gone {
            if let Some(connection) = self.nodes.remove(&node) {
                debug!(node = %node, "closing the connection to a former cluster primary");
                tokio::spawn(connection.quit(self.config.timeout));
            }
        }
        self.primaries = Some(primaries);
    }

    /// Waits for the next connection event of any node; `Closed` only once every node's client has
    /// closed its events (one node's closing never silences the others).
    pub async fn next_event(&mut self) -> Event {
        if self.nodes.is_empty() {
            return std::future::pending().await;
        }
        let open: Vec<_> = self
            .nodes
            .values_mut()
            .filter(|c| !c.events_closed())
            .map(|c| Box::pin(c.next_event()))
            .collect();
        if open.is_empty() {
            return Event::Closed;
        }
        match select_all(open).await.0 {
            // That node's events ended: wait for the others'.
            Event::Closed => Event::StillDown,
            event => event,
        }
    }

    /// Reconnects every node (reading the password file again).
    pub async fn reconnect(&mut self) {
        join_all(self.nodes.values_mut().map(Connection::reconnect)).await;
    }

    /// Closes every connection, concurrently and bounded.
    pub async fn quit(self, budget: Duration) {
        join_all(self.nodes.into_values().map(|c| c.quit(budget))).await;
    }
}

/// The primaries in a `CLUSTER SLOTS` reply, sorted, with their slots (`host` fills in a
/// node's empty address).
fn primaries(slots: Value, host: &str) -> Result<Vec<Primary>, String> {
    let routing = ClusterRouting::from_cluster_slots(slots, host.to_owned())
        .map_err(|e| format!("unreadable CLUSTER SLOTS reply: {}", e.details()))?;
    let primaries: Vec<Primary> = routing
        .unique_primary_nodes()
        .into_iter()
        .map(|server| Primary {
            write_key: None,
            slots: routing
                .slots()
                .iter()
                .filter(|range| range.primary == server)
                .map(|range| (range.start, range.end))
                .collect(),
            server,
        })
        .collect();
    if primaries.is_empty() {
        return Err("no slot is assigned to any node (CLUSTER SLOTS is empty)".to_owned());
    }
    Ok(primaries)
}

/// `--cluster-ready majority`: while more than half of the primaries pass (none of their
/// checks failing), the failing primaries are tolerated: `warn` with their reasons, not waited
/// for by `/startupz`. At half or fewer, every failure stands. (With Redis's default
/// `cluster-require-full-coverage yes` the survivors report `cluster_state:fail` soon after a
/// primary is lost, so a majority holds only where the cluster serves without full coverage.)
pub fn tolerate_a_minority(verdict: &mut Verdict) {
    let mut primaries = BTreeSet::new();
    let mut failing = BTreeSet::new();
    for component in verdict.checks.iter().flat_map(|c| c.components.iter()) {
        primaries.insert(component.id.clone());
        if component.state.status == Status::Fail {
            failing.insert(component.id.clone());
        }
    }
    let passing = primaries.len() - failing.len();
    if failing.is_empty() || passing * 2 <= primaries.len() {
        return;
    }
    let total = primaries.len();
    for check in &mut verdict.checks {
        for component in check
            .components
            .iter_mut()
            .filter(|c| c.state.status == Status::Fail)
        {
            let reason = component.state.output.take().unwrap_or_default();
            // Shown as `warn` in its own entry too, as the issue of a minority it is.
            component.state.status = Status::Warn;
            component.state.latest = Status::Warn;
            component.state.tolerated = true;
            component.state.output = Some(format!(
                "{reason} (tolerated: {passing} of {total} primaries pass, --cluster-ready majority)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Component, NamedCheck, ObservedValue, Outcome, Reading, Thresholds, Tracker};

    /// One check per primary `(id, passing)`.
    fn verdict(primaries: &[(&str, bool)]) -> Verdict {
        let components = primaries
            .iter()
            .map(|(id, passing)| Component {
                id: (*id).into(),
                kind: "datastore",
                server: None,
                state: Tracker::new(Thresholds {
                    failure: 1,
                    success: 1,
                })
                .observe(Outcome {
                    at: SystemTime::now(),
                    result: if *passing {
                        Ok(Reading::pass(ObservedValue::Nothing))
                    } else {
                        Err(Failure::Unreachable("Connection refused".into()))
                    },
                }),
            })
            .collect();
        Verdict {
            checks: vec![NamedCheck {
                name: "redis:responseTime",
                components,
                readiness: true,
            }],
        }
    }

    #[test]
    fn a_majority_of_primaries_carries_the_failing_minority() {
        let mut two_of_three = verdict(&[("a", true), ("b", true), ("c", false)]);
        tolerate_a_minority(&mut two_of_three);
        assert_eq!(two_of_three.status(), Status::Warn);
        let c = &two_of_three.checks[0].components[2].state;
        assert!(c.tolerated);
        assert_eq!(
            c.output.as_deref(),
            Some("unreachable: Connection refused (tolerated: 2 of 3 primaries pass, --cluster-ready majority)")
        );
        // /startupz does not wait for a tolerated primary.
        assert!(two_of_three.has_passed());
        // Half is not more than half.
        for split in [
            &[("a", true), ("b", false)][..],
            &[("a", true), ("b", false), ("c", false)],
        ] {
            let mut no_majority = verdict(split);
            tolerate_a_minority(&mut no_majority);
            assert_eq!(no_majority.status(), Status::Fail, "{split:?}");
        }
    }

    #[test]
    fn a_primary_gets_a_write_key_in_its_own_slots() {
        let primary = Primary {
            server: Server::new("127.0.0.1", 7000),
            slots: vec![(5461, 10922)],
            write_key: None,
        };
        let key = primary.own_key("redis-healthd:h").unwrap();
        assert!(key.starts_with("redis-healthd:h{"), "{key}");
        assert!((5461..=10922).contains(&redis_keyslot(key.as_bytes())));
        let single = Primary {
            slots: vec![(16383, 16383)],
            ..primary
        };
        assert_eq!(redis_keyslot(single.own_key("k").unwrap().as_bytes()), 16383);
    }
}
