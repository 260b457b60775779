//! Every pod's sidecar watches the same Redis: a dropped connection to a healthy Redis must
//! never take them out of rotation, while a dead Redis still shows at once. And load balancers
//! get the verdict in their own terms: HAProxy's agent-check (a real `haproxy`), Envoy's
//! degraded header.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    get, metric, start_fast, wait_until, Daemon, DaemonProcess, FreezableProxy, RedisServer, DETECT, FAST,
    INTERVAL,
};

/// Samples `/readyz` of every daemon until `until` passes, running `fault` once at `after`;
/// returns the samples that were not 200, as `(daemon, status, ms after the fault)`.
fn sample_readiness(
    daemons: &[Daemon],
    after: Duration,
    until: Duration,
    fault: impl FnOnce(),
) -> (usize, Vec<(usize, u16, u128)>) {
    let start = Instant::now();
    let mut fault = Some(fault);
    let mut faulted_at = None;
    let (mut samples, mut unready) = (0, Vec::new());
    while start.elapsed() < until {
        if start.elapsed() >= after {
            if let Some(fault) = fault.take() {
                fault();
                faulted_at = Some(Instant::now());
            }
        }
        for (i, daemon) in daemons.iter().enumerate() {
            let status = daemon.status("/readyz");
            samples += 1;
            if status != 200 {
                let since = faulted_at.map_or(0, |t| t.elapsed().as_millis());
                unready.push((i, status, since));
            }
        }
    }
    (samples, unready)
}

fn reconnecting_checks(daemon: &Daemon) -> f64 {
    metric(
        daemon.addr,
        "redis_healthd_checks_total{target=\"redis\",result=\"reconnecting\"} ",
    )
}

#[test]
fn a_client_kill_on_a_healthy_redis_never_takes_a_daemon_out_of_rotation() {
    let redis = RedisServer::start();
    let daemons: Vec<Daemon> = (0..5).map(|_| start_fast(&redis.url(), &[])).collect();
    for daemon in &daemons {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    let connections = redis.info_number(&["stats"], "total_connections_received");
    let (samples, unready) = sample_readiness(&daemons, INTERVAL / 2, INTERVAL * 4, || {
        // What Sentinel does to clients on a failover, and Redis's own `timeout` to one.
        let killed: usize = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]).parse().unwrap();
        assert!(killed >= daemons.len(), "{killed} clients killed");
    });
    println!(
        "{samples} readiness samples after CLIENT KILL, {} not 200",
        unready.len()
    );
    assert!(
        unready.is_empty(),
        "{} samples not ready while Redis was fine, the first: {:?}",
        unready.len(),
        &unready[..unready.len().min(5)]
    );
    // Every daemon did lose its connection, held its verdict, and reconnected within the
    // reconnect window.
    for daemon in &daemons {
        assert!(reconnecting_checks(daemon) >= 1.0);
        support::wait_until(support::RECOVER, "reconnected and passing", || {
            support::check_state(daemon.addr, "redis:responseTime").0 == "pass"
        });
    }
    let reconnected = redis.info_number(&["stats"], "total_connections_received") - connections;
    assert!(
        reconnected >= daemons.len() as u64,
        "{reconnected} new connections"
    );
}

#[test]
fn a_proxy_that_resets_the_connection_while_redis_is_fine_never_fails_readiness() {
    let redis = RedisServer::start();
    let proxy = FreezableProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let daemons = vec![start_fast(&format!("redis://{}", proxy.addr), &[])];
    daemons[0].wait_for("/readyz", 200, Duration::from_secs(5));
    let (samples, unready) = sample_readiness(&daemons, INTERVAL / 2, INTERVAL * 4, || {
        assert!(proxy.cut() >= 1);
    });
    println!(
        "{samples} samples after the proxy reset the connection, {} not 200",
        unready.len()
    );
    assert!(
        unready.is_empty(),
        "{} samples not ready, the first: {:?}",
        unready.len(),
        &unready[..unready.len().min(5)]
    );
    assert!(reconnecting_checks(&daemons[0]) >= 1.0);
}

#[test]
fn a_killed_redis_still_fails_every_daemon_at_once() {
    let mut redis = RedisServer::start();
    let daemons: Vec<Daemon> = (0..5).map(|_| start_fast(&redis.url(), &[])).collect();
    for daemon in &daemons {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    redis.kill();
    let killed = Instant::now();
    wait_until(DETECT, "every daemon unready", || {
        daemons.iter().all(|d| d.status("/readyz") == 503)
    });
    println!("5 daemons unready {:?} after the kill", killed.elapsed());
    for daemon in &daemons {
        let (status, output) = support::check_state(daemon.addr, "redis:responseTime");
        assert_eq!(status, "fail");
        assert!(output.starts_with("unreachable: "), "{output}");
    }
    assert!(
        metric(
            daemons[0].addr,
            "redis_healthd_checks_total{target=\"redis\",result=\"unreachable\"} "
        ) >= 1.0
    );
}

#[test]
fn a_warn_verdict_marks_the_host_degraded_for_envoy() {
    let redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--warn-latency", "1ns"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let reply = daemon.get("/readyz");
    assert_eq!(reply.json()["status"], "warn");
    assert_eq!(reply.header("x-envoy-degraded").as_deref(), Some("warn"));
    let healthy = start_fast(&redis.url(), &[]);
    healthy.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(healthy.get("/readyz").header("x-envoy-degraded"), None);
}

#[test]
fn readiness_false_reports_a_dead_redis_without_gating() {
    let port = support::free_port();
    let daemon = start_fast(&format!("redis://127.0.0.1:{port}"), &["--readiness", "false"]);
    support::wait_for_check(
        daemon.addr,
        "redis:responseTime",
        "fail",
        "Connection refused",
        DETECT,
    );
    assert_eq!(daemon.status("/readyz"), 200);
    assert_eq!(daemon.status("/startupz"), 200);
    let health = daemon.get("/health");
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("warn"))
    );
}

/// A real haproxy in front of `redis_port`, checking `agent_port` with agent-check.
struct Haproxy {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(redis_port: u16, agent_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("stats.sock");
        let config = format!(
            "global\n  stats socket {} level admin\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             listen redis\n  bind 127.0.0.1:{}\n  \
             server r1 127.0.0.1:{redis_port} check inter 200ms agent-check agent-port {agent_port} \
             agent-addr 127.0.0.1 agent-inter 200ms\n",
            socket.display(),
            support::free_port(),
        );
        let path = support::write_file(dir.path(), "haproxy.cfg", &config);
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start haproxy ({e}); install it with `apt-get install haproxy` or run scripts/test"));
        wait_until(Duration::from_secs(5), "haproxy's stats socket", || {
            socket.exists()
        });
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// The server's status as `show stat` gives it (`UP`, `DRAIN (agent)`, `DOWN (agent)`, ...).
    fn status(&self) -> String {
        status_of(&self.socket).unwrap_or_default()
    }

    /// Waits until the status is `want`; returns how long that took.
    fn wait_for(&self, want: &str) -> Duration {
        let mut last = String::new();
        let took = wait_until(Duration::from_secs(5), &format!("haproxy to say {want}"), || {
            last = self.status();
            last == want
        });
        println!("haproxy: {want} after {took:?}");
        took
    }
}

fn status_of(socket: &Path) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.write_all(b"show stat\n").ok()?;
    let mut csv = String::new();
    stream.read_to_string(&mut csv).ok()?;
    let header: Vec<&str> = csv.lines().next()?.trim_start_matches("# ").split(',').collect();
    let column = header.iter().position(|h| *h == "status")?;
    let row = csv.lines().find(|l| l.starts_with("redis,r1,"))?;
    row.split(',').nth(column).map(str::to_owned)
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn haproxy_takes_the_server_down_drains_it_and_brings_it_back_by_the_agent() {
    let redis = RedisServer::start();
    let mut flags = vec![
        "--redis-url",
        &redis.url(),
        "--agent-listen",
        "127.0.0.1:0",
        "--drain-key",
        "drain",
        "--expect-role",
        "master",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    flags.extend(FAST.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = DaemonProcess::spawn(&flags, &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    let agent_port: u16 = daemon
        .log()
        .split("agent_listen=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .map(|addr| addr.port())
        .expect("the serving line names the agent's address");
    let haproxy = Haproxy::start(redis.port, agent_port);
    haproxy.wait_for("UP");

    // The drain key: DRAIN, then back UP (only the agent's `ready` reverts its `drain`).
    assert_eq!(redis.cli(&["SET", "drain", "1"]), "OK");
    haproxy.wait_for("DRAIN (agent)");
    assert_eq!(redis.cli(&["DEL", "drain"]), "1");
    haproxy.wait_for("UP");

    // Redis demoted to a replica (its port still answers HAProxy's own TCP check): the agent
    // takes it DOWN with the reason, and brings it back UP once it is a master again.
    let nowhere = support::free_port().to_string();
    assert_eq!(redis.cli(&["REPLICAOF", "127.0.0.1", &nowhere]), "OK");
    haproxy.wait_for("DOWN (agent)");
    let mut agent = std::net::TcpStream::connect(("127.0.0.1", agent_port)).unwrap();
    let mut line = String::new();
    agent.read_to_string(&mut line).unwrap();
    assert!(
        line.starts_with("down #redis:role: role is replica of 127.0.0.1:"),
        "{line:?}"
    );
    assert!(line.ends_with('\n') && line.lines().count() == 1, "{line:?}");
    assert_eq!(redis.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    haproxy.wait_for("UP");
    let mut agent = std::net::TcpStream::connect(("127.0.0.1", agent_port)).unwrap();
    let mut line = String::new();
    agent.read_to_string(&mut line).unwrap();
    assert_eq!(line, "up ready\n");
    assert_eq!(get(daemon.addr, "/readyz").status, 200);
}
