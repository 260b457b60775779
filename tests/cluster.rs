//! Redis Cluster, all real: nodes started with `--cluster-enabled yes`, joined by
//! `redis-cli --cluster create`. Every primary gets its own entry; a dead primary fails its own
//! entry at once, the survivors' `cluster_state:fail` fails theirs; a failover moves the check
//! to the promoted replica.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_port, start_fast, wait_until, Certs, Daemon, RedisServer, DETECT, INTERVAL, SLACK};

/// How long a node must be unreachable before the cluster calls it failed.
const NODE_TIMEOUT: &str = "1000";

/// A Redis Cluster on loopback: `primaries` primaries with `replicas` replicas each; with
/// `tls`, every node also serves TLS (cluster bus included) on a port of its own.
struct Cluster {
    nodes: Vec<RedisServer>,
    tls_ports: Vec<u16>,
}

impl Cluster {
    fn create(primaries: usize, replicas: usize, tls: Option<&Certs>) -> Self {
        let mut tls_ports = Vec::new();
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                // The bus port is port + 10000 unless set: pick a free one of its own.
                let bus = free_port().to_string();
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    NODE_TIMEOUT,
                ]
                .map(String::from)
                .to_vec();
                if let Some(certs) = tls {
                    let port = free_port();
                    tls_ports.push(port);
                    args.extend([
                        "--tls-port".into(),
                        port.to_string(),
                        "--tls-cluster".into(),
                        "yes".into(),
                        "--tls-auth-clients".into(),
                        "no".into(),
                        "--tls-cert-file".into(),
                        certs.arg("server.pem"),
                        "--tls-key-file".into(),
                        certs.arg("server.key"),
                        "--tls-ca-cert-file".into(),
                        certs.arg("ca.pem"),
                    ]);
                }
                RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes, tls_ports };
        wait_until(
            Duration::from_secs(20),
            "every node says cluster_state:ok",
            || {
                cluster
                    .nodes
                    .iter()
                    .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        wait_until(Duration::from_secs(20), "every replica attached", || {
            cluster
                .nodes
                .iter()
                .filter(|n| n.cli(&["ROLE"]).starts_with("slave"))
                .count()
                == primaries * replicas
                && cluster.nodes.iter().all(|n| {
                    let role = n.cli(&["ROLE"]);
                    !role.starts_with("slave") || role.lines().any(|l| l.trim() == "connected")
                })
        });
        cluster
    }

    fn url(&self) -> String {
        format!(
            "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }

    /// The nodes that are primaries now, by their `componentId`.
    fn primary_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect();
        ids.sort();
        ids
    }
}

/// The `redis:responseTime` entries by `componentId`: (status, output).
fn entries(daemon: &Daemon) -> BTreeMap<String, (String, String)> {
    let doc = daemon.get("/health").json();
    doc["checks"]["redis:responseTime"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let text = |field: &str| e[field].as_str().unwrap_or_default().to_string();
                    (text("componentId"), (text("status"), text("output")))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_primary_is_written_in_its_own_slots_and_the_drain_key_gates_the_cluster() {
    let cluster = Cluster::create(3, 0, None);
    let daemon = start_fast(
        &cluster.url(),
        &["--check-writes", "--write-key", "healthd", "--drain-key", "drain"],
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let doc = daemon.get("/health").json();
    for check in ["redis:role", "redis:memory", "redis:writable"] {
        let entries = doc["checks"][check].as_array().unwrap();
        let mut ids: Vec<&str> = entries
            .iter()
            .map(|e| e["componentId"].as_str().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, cluster.primary_ids(), "{check}: one entry per primary");
        assert!(
            entries.iter().all(|e| e["status"] == "pass"),
            "{check}: {entries:?}"
        );
    }
    // Each primary's key is one it owns: written there, not redirected.
    for node in &cluster.nodes {
        let keys = node.cli(&["KEYS", "healthd{*}"]);
        assert_eq!(keys.lines().count(), 1, "{keys}");
    }
    // The drain key is read on the one primary that owns it.
    assert_eq!(doc["checks"]["redis:drain"].as_array().unwrap().len(), 1);
    let set = Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &cluster.nodes[0].port.to_string(),
            "SET",
            "drain",
            "1",
        ])
        .output()
        .unwrap();
    assert!(set.status.success());
    let (took, output) = support::wait_for_check(daemon.addr, "redis:drain", "fail", "drained", DETECT);
    println!("cluster drained after {took:?}: {output}");
    assert_eq!(daemon.status("/readyz"), 503);
}

#[test]
fn every_primary_is_checked_and_a_dead_one_fails_the_verdict() {
    let mut cluster = Cluster::create(3, 0, None);
    let daemon = start_fast(&cluster.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let healthy = entries(&daemon);
    assert_eq!(healthy.keys().cloned().collect::<Vec<_>>(), cluster.primary_ids());
    assert!(
        healthy.values().all(|(status, _)| status == "pass"),
        "{healthy:?}"
    );
    // A dead seed is no obstacle while another seed answers; it is not a component.
    let dead_seed = format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}",
        free_port(),
        cluster.nodes[1].port
    );
    let other = start_fast(&dead_seed, &[]);
    other.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        entries(&other).keys().cloned().collect::<Vec<_>>(),
        cluster.primary_ids()
    );
    drop(other);

    let dead = format!("redis://127.0.0.1:{}", cluster.nodes[2].port);
    cluster.nodes[2].kill();
    let killed = Instant::now();
    let detected = daemon.wait_for("/readyz", 503, DETECT);
    println!("503 {detected:?} after a primary was killed");
    let (status, reason) = &entries(&daemon)[&dead];
    assert_eq!(status, "fail");
    assert!(
        reason.contains("Connection refused") || reason.contains("Connection closed"),
        "{reason}"
    );

    // The survivors still answer PONG; their CLUSTER INFO turns the cluster's state to fail
    // once the node timeout has passed.
    let survivors_fail = wait_until(
        Duration::from_secs(10),
        "the survivors report cluster_state:fail",
        || {
            let now = entries(&daemon);
            now.len() == 3
                && now
                    .iter()
                    .filter(|(id, _)| **id != dead)
                    .all(|(_, (status, output))| status == "fail" && output.starts_with("cluster_state:fail"))
        },
    );
    println!(
        "survivors fail on cluster_state {:?} after the kill",
        killed.elapsed()
    );
    assert!(survivors_fail < Duration::from_secs(10));
    let output = support::output(daemon.addr);
    assert!(
        output.contains(&format!(
            "redis:responseTime {dead}: unreachable: Connection refused"
        )),
        "{output}"
    );
    assert_eq!(
        support::metric(daemon.addr, "redis_healthd_up{target=\"redis\"} "),
        0.0
    );
    let node_up = |node: &RedisServer| {
        let series = format!(
            "redis_healthd_cluster_node_up{{target=\"redis\",node=\"127.0.0.1:{}\"}} ",
            node.port
        );
        support::metric(daemon.addr, &series)
    };
    // Every node's entry fails now: the survivors on cluster_state.
    assert_eq!(
        cluster.nodes.iter().map(node_up).collect::<Vec<_>>(),
        [0.0, 0.0, 0.0]
    );

    cluster.nodes[2].restart();
    let restarted = Instant::now();
    // A restarted primary reports cluster_state:fail until it has rejoined (its rejoin delay).
    let mut rejoined_at = None;
    wait_until(
        Duration::from_secs(15),
        "ready after the primary came back",
        || {
            if rejoined_at.is_none()
                && cluster
                    .nodes
                    .iter()
                    .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                rejoined_at = Some(restarted.elapsed());
            }
            daemon.status("/readyz") == 200
        },
    );
    let back = restarted.elapsed();
    let rejoined_at = rejoined_at.unwrap_or(back);
    println!("every node ok {rejoined_at:?} after the restart; daemon ready after {back:?}");
    assert!(
        back <= rejoined_at + INTERVAL + SLACK,
        "{back:?} vs {rejoined_at:?}"
    );
    let recovered = entries(&daemon);
    assert!(
        recovered.values().all(|(status, _)| status == "pass"),
        "{recovered:?}"
    );
    assert_eq!(
        support::metric(daemon.addr, "redis_healthd_up{target=\"redis\"} "),
        1.0
    );
    assert_eq!(
        cluster.nodes.iter().map(node_up).collect::<Vec<_>>(),
        [1.0, 1.0, 1.0]
    );
}

/// `--cluster-ready majority` on a cluster that serves without full coverage: one primary of
/// three down keeps it ready, the dead one's entries `warn` with their reasons; a second down
/// (no majority, and the survivor's `cluster_state:fail`) fails it. `all` fails at the first.
#[test]
fn a_majority_of_primaries_keeps_a_cluster_ready_with_cluster_ready_majority() {
    let mut cluster = Cluster::create(3, 0, None);
    for node in &cluster.nodes {
        assert_eq!(
            node.cli(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]),
            "OK"
        );
    }
    let majority = start_fast(&cluster.url(), &["--cluster-ready", "majority"]);
    let all = start_fast(&cluster.url(), &[]);
    for daemon in [&majority, &all] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    let dead = format!("redis://127.0.0.1:{}", cluster.nodes[2].port);
    cluster.nodes[2].kill();
    all.wait_for("/readyz", 503, DETECT);
    let (status, reason) = wait_until_entry(&majority, &dead, "warn");
    println!("one primary of three down, majority: {status}: {reason}");
    assert!(
        reason.ends_with("(tolerated: 2 of 3 primaries pass, --cluster-ready majority)"),
        "{reason}"
    );
    assert_eq!(majority.status("/readyz"), 200);
    assert_eq!(majority.get("/health").json()["status"], "warn");
    // Still ready after the node timeout: the survivors keep cluster_state:ok.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        majority.status("/readyz"),
        200,
        "{}",
        majority.get("/health").body
    );

    cluster.nodes[1].kill();
    let lost = majority.wait_for("/readyz", 503, Duration::from_secs(10));
    println!("two of three down: 503 after {lost:?}");
}

/// Polls the component `id`'s entries until one has `status`; returns it with its reason.
fn wait_until_entry(daemon: &Daemon, id: &str, status: &str) -> (String, String) {
    let mut found = None;
    let mut seen = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(Duration::from_secs(5), &format!("{id} {status}"), || {
            seen = entries(daemon);
            found = seen.get(id).filter(|(s, _)| s == status).cloned();
            found.is_some()
        })
    }));
    assert!(waited.is_ok(), "{id} never {status}: {seen:?}");
    found.unwrap()
}

#[test]
fn a_hung_primary_times_out_in_its_own_entry() {
    let cluster = Cluster::create(3, 0, None);
    let daemon = start_fast(&cluster.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let hung = format!("redis://127.0.0.1:{}", cluster.nodes[2].port);
    cluster.nodes[2].signal("-STOP");
    // The node asked for the topology may be the hung one: one more budget at worst.
    let detected = daemon.wait_for("/readyz", 503, DETECT + support::TIMEOUT);
    println!("503 {detected:?} after a primary was stopped");
    let now = entries(&daemon);
    assert_eq!(
        now[&hung],
        ("fail".to_string(), "timed out after 200ms".to_string()),
        "{now:?}"
    );
    cluster.nodes[2].signal("-CONT");
    let recovered = daemon.wait_for("/readyz", 200, Duration::from_secs(10));
    println!("200 {recovered:?} after it was continued");
}

#[test]
fn a_failover_moves_the_check_to_the_promoted_replica() {
    let mut cluster = Cluster::create(3, 1, None);
    let daemon = start_fast(&cluster.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let before = cluster.primary_ids();
    assert_eq!(entries(&daemon).keys().cloned().collect::<Vec<_>>(), before);

    // Kill a primary that is not a seed, so the seeds keep answering.
    let victim = cluster
        .nodes
        .iter()
        .skip(2)
        .position(|n| n.cli(&["ROLE"]).starts_with("master"))
        .map(|i| i + 2)
        .expect("a primary beyond the two seeds");
    let victim_id = format!("redis://127.0.0.1:{}", cluster.nodes[victim].port);
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    daemon.wait_for("/readyz", 503, DETECT);

    let mut promoted_at = None;
    wait_until(Duration::from_secs(20), "ready on the promoted replica", || {
        // The killed node answers no ROLE: three live primaries means the replica took over.
        if promoted_at.is_none() && cluster.primary_ids().len() == 3 {
            promoted_at = Some(killed.elapsed());
        }
        let now = entries(&daemon);
        daemon.status("/readyz") == 200 && now.len() == 3 && !now.contains_key(&victim_id)
    });
    let back = killed.elapsed();
    let promoted_at = promoted_at.unwrap_or(back);
    println!("replica promoted {promoted_at:?} after the kill; daemon ready on it after {back:?}");
    assert_eq!(
        entries(&daemon).keys().cloned().collect::<Vec<_>>(),
        cluster.primary_ids()
    );
    let metrics = daemon.get("/metrics").body;
    let victim_node = victim_id.trim_start_matches("redis://");
    assert!(!metrics.contains(victim_node), "{metrics}");
    assert_eq!(
        metrics.matches("redis_healthd_cluster_node_up{").count(),
        3,
        "{metrics}"
    );
    // Servers changed, none restarted: a topology change (or more, as the slots move), never a
    // restart.
    let count = |name: &str| {
        support::metric(
            daemon.addr,
            &format!("redis_healthd_{name}_total{{target=\"redis\"}} "),
        )
    };
    assert!(count("topology_changes") >= 1.0, "{metrics}");
    assert_eq!(count("redis_restarts"), 0.0, "{metrics}");
    assert!(
        back <= promoted_at + INTERVAL * 2 + SLACK,
        "{back:?} vs {promoted_at:?}"
    );
}

#[test]
fn rediss_cluster_checks_every_primary_over_tls() {
    let certs = Certs::make();
    let cluster = Cluster::create(3, 0, Some(&certs));
    let url = format!(
        "rediss-cluster://127.0.0.1:{}?node=127.0.0.1:{}",
        cluster.tls_ports[0], cluster.tls_ports[1]
    );
    let daemon = start_fast(&url, &["--tls-ca-file", &certs.arg("ca.pem")]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // CLUSTER SLOTS over TLS names the nodes' TLS ports.
    let mut expected: Vec<String> = cluster
        .tls_ports
        .iter()
        .map(|port| format!("rediss://127.0.0.1:{port}"))
        .collect();
    expected.sort();
    let found = entries(&daemon);
    assert_eq!(found.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(found.values().all(|(status, _)| status == "pass"), "{found:?}");

    // Without the private CA every seed fails the handshake, with the reason.
    let untrusted = start_fast(&url, &[]);
    let output = support::wait_for_output(
        untrusted.addr,
        "TLS: the server's certificate is not signed by a CA this daemon trusts",
        Duration::from_secs(5),
    );
    assert_eq!(untrusted.status("/readyz"), 503);
    assert_eq!(entries(&untrusted).len(), 2, "{output}");
}

#[test]
fn a_plain_redis_or_a_wrong_password_fails_a_cluster_url_with_the_server_reason() {
    let redis = RedisServer::start_with(&["--requirepass", "hunter2"]);
    let url = format!("redis-cluster://:hunter2@127.0.0.1:{}", redis.port);
    let daemon = start_fast(&url, &[]);
    daemon.wait_for("/readyz", 503, Duration::from_secs(5));
    let output = support::wait_for_output(
        daemon.addr,
        "This instance has cluster support disabled",
        Duration::from_secs(5),
    );
    assert!(
        output.starts_with("redis:responseTime: CLUSTER INFO failed: ERR"),
        "{output}"
    );
    for path in ["/health", "/readyz", "/metrics"] {
        assert!(
            !daemon.get(path).body.contains("hunter2"),
            "{path} shows the password"
        );
    }
    // A wrong password reads as the server's reply, on the seed's entry.
    let wrong = start_fast(&format!("redis-cluster://:hunter3@127.0.0.1:{}", redis.port), &[]);
    let output = support::wait_for_output(wrong.addr, "WRONGPASS", Duration::from_secs(5));
    assert!(!output.contains("hunter3"), "{output}");
}

#[test]
fn a_tls_cluster_seeded_by_name_verifies_every_primary_by_that_name() {
    let certs = Certs::make();
    // A server certificate for the DNS name only: no IP in it.
    certs.sh("printf 'subjectAltName=DNS:localhost\\n' > dns.ext
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile dns.ext 2>/dev/null");
    let cluster = Cluster::create(3, 0, Some(&certs));
    let url = format!(
        "rediss-cluster://localhost:{}?node=localhost:{}",
        cluster.tls_ports[0], cluster.tls_ports[1]
    );
    let daemon = start_fast(&url, &["--tls-ca-file", &certs.arg("ca.pem")]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let found = entries(&daemon);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.values().all(|(status, _)| status == "pass"), "{found:?}");
    // By IP, the same certificate does not verify: the name is what made it pass.
    let by_ip = format!("rediss-cluster://127.0.0.1:{}", cluster.tls_ports[0]);
    let daemon = start_fast(&by_ip, &["--tls-ca-file", &certs.arg("ca.pem")]);
    support::wait_for_output(
        daemon.addr,
        "TLS: the server's certificate is for localhost, not 127.0.0.1: set --tls-server-name",
        Duration::from_secs(5),
    );
}
