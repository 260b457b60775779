//! Redis Cluster: one [`Connection`] per node, so a dead primary fails its own entry and no
//! other (fred's cluster client drops every connection and reconnects them all when one node
//! goes away). Each check first reads the primaries from `CLUSTER SLOTS` on a node that
//! answered last time, then PINGs every primary with `CLUSTER INFO` alongside, since a node of
//! a failing cluster still answers PONG.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fred::prelude::{Server, Value};
use fred::types::cluster::ClusterRouting;
use futures_util::future::{join_all, select_all};
use prometheus_client::metrics::counter::Counter;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::connection::{Connection, Event};
use crate::health::{Failure, Outcome};
use crate::probe::Observation;

/// The cluster as the probe sees it: the seed nodes from the URL, the primaries once known,
/// and a connection to each of them.
pub struct Cluster {
    config: Config,
    seeds: Vec<Server>,
    /// The primaries `CLUSTER SLOTS` named last; `None` until a node has answered.
    primaries: Option<Vec<Server>>,
    /// A connection per seed and per primary, by `host:port`.
    nodes: BTreeMap<String, Connection>,
    /// The nodes whose last check passed: asked first for the topology.
    healthy: Vec<String>,
    connection_errors: Counter,
}

/// A node's key in the connection map.
fn key(server: &Server) -> String {
    format!("{}:{}", server.host, server.port)
}

impl Cluster {
    /// Starts a connection to every seed node; never waits for Redis.
    pub fn start(
        config: &Config,
        mut seeds: Vec<Server>,
        connection_errors: Counter,
    ) -> anyhow::Result<Self> {
        // The order entries are listed in before the primaries are known.
        seeds.sort();
        let mut cluster = Self {
            config: config.clone(),
            seeds,
            primaries: None,
            nodes: BTreeMap::new(),
            healthy: Vec::new(),
            connection_errors,
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
                    self.config.redis.node_config(server),
                    self.connection_errors.clone(),
                )?;
                self.nodes.insert(key(server), connection);
            }
        }
        Ok(())
    }

    /// One check: the topology, then every primary (or, before any node has named the
    /// primaries, every seed) PINGed concurrently. A check takes up to twice the budget when
    /// the node asked for the topology stops answering; otherwise one.
    pub async fn check(&mut self) -> Vec<Observation> {
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
        let targets: Vec<Server> = self.primaries.clone().unwrap_or_else(|| self.seeds.clone());
        let keys: Vec<String> = targets.iter().map(key).collect();
        let checks = self
            .nodes
            .iter_mut()
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, connection)| async move { (k.clone(), connection.check_once(true).await) });
        let mut outcomes: BTreeMap<String, Outcome> = join_all(checks).await.into_iter().collect();
        self.healthy = keys
            .iter()
            .filter(|k| outcomes.get(*k).is_some_and(|o| o.result.is_ok()))
            .cloned()
            .collect();
        targets
            .iter()
            .map(|server| {
                let mut outcome = outcomes.remove(&key(server)).unwrap_or_else(|| Outcome {
                    at: SystemTime::now(),
                    result: Err(Failure::Error(
                        "no client could be built for this node".to_owned(),
                    )),
                });
                if let (Some(reason), Ok(_)) = (&unknown_topology, &outcome.result) {
                    // The node answers, but no node has said which nodes are the primaries.
                    outcome.result = Err(Failure::Error(format!("CLUSTER SLOTS failed: {reason}")));
                }
                Observation {
                    key: key(server),
                    id: self.config.redis.server_url(server),
                    outcome,
                }
            })
            .collect()
    }

    /// The primaries according to the first node that answers `CLUSTER SLOTS`: nodes whose last
    /// check passed first, then any node with a live connection.
    async fn discover(&mut self) -> Result<Vec<Server>, String> {
        // At start, wait for a first connection to ask while some have not reported yet (the
        // caller bounds the wait).
        while !self.nodes.values().any(Connection::is_up) && !self.nodes.values().all(Connection::settled) {
            if let Event::Closed = self.next_event().await {
                break;
            }
        }
        // A connection known to be down would hold the query until fred's next reconnect.
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
    fn update(&mut self, primaries: Vec<Server>) {
        if self.primaries.as_ref() == Some(&primaries) {
            return;
        }
        info!(
            primaries = %primaries.iter().map(key).collect::<Vec<_>>().join(","),
            "cluster primaries"
        );
        if let Err(e) = self.connect_missing(&primaries) {
            // Not seen: the configuration already built the seeds' clients. The node's entry
            // says so if it happens.
            warn!(reason = %e, "cannot build a client for a cluster node");
        }
        let keep: Vec<String> = primaries.iter().chain(&self.seeds).map(key).collect();
        let gone: Vec<String> = self.nodes.keys().filter(|k| !keep.contains(k)).cloned().collect();
        for node in gone {
            if let Some(connection) = self.nodes.remove(&node) {
                debug!(node = %node, "closing the connection to a former cluster primary");
                tokio::spawn(connection.quit(self.config.timeout));
            }
        }
        self.primaries = Some(primaries);
    }

    /// Waits for the next connection event of any node.
    pub async fn next_event(&mut self) -> Event {
        if self.nodes.is_empty() {
            return std::future::pending().await;
        }
        let events = self.nodes.values_mut().map(|c| Box::pin(c.next_event()));
        select_all(events).await.0
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

/// The primaries in a `CLUSTER SLOTS` reply (`host` fills in a node's empty address).
fn primaries(slots: Value, host: &str) -> Result<Vec<Server>, String> {
    let routing = ClusterRouting::from_cluster_slots(slots, host.to_owned())
        .map_err(|e| format!("unreadable CLUSTER SLOTS reply: {}", e.details()))?;
    let primaries = routing.unique_primary_nodes();
    if primaries.is_empty() {
        return Err("no slot is assigned to any node (CLUSTER SLOTS is empty)".to_owned());
    }
    Ok(primaries)
}

/// What is wrong with the cluster according to a node's `CLUSTER INFO`, if anything:
/// `cluster_state` other than `ok`, with the slot counts that explain it.
pub fn state_problem(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
    };
    match field("cluster_state") {
        Some("ok") => None,
        Some(state) => {
            let details: Vec<String> = ["cluster_slots_ok", "cluster_slots_pfail", "cluster_slots_fail"]
                .iter()
                .filter_map(|name| Some(format!("{name}:{}", field(name)?)))
                .collect();
            Some(format!(
                "cluster_state:{} ({})",
                state.chars().take(32).collect::<String>(),
                details.join(", ")
            ))
        }
        None => Some("CLUSTER INFO has no cluster_state".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_state_other_than_ok_is_a_problem_with_its_slot_counts() {
        let ok = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(state_problem(ok), None);
        let failing = "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10922\r\n\
                       cluster_slots_pfail:0\r\ncluster_slots_fail:5462\r\ncluster_known_nodes:3\r\n";
        assert_eq!(
            state_problem(failing).as_deref(),
            Some(
                "cluster_state:fail (cluster_slots_ok:10922, cluster_slots_pfail:0, cluster_slots_fail:5462)"
            )
        );
        assert_eq!(
            state_problem("ERR unexpected").as_deref(),
            Some("CLUSTER INFO has no cluster_state")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_cluster_info_text_is_read_without_panicking(info in "\\PC{0,200}") {
            if let Some(problem) = state_problem(&info) {
                proptest::prop_assert!(problem.len() < 400);
            }
        }
    }
}
