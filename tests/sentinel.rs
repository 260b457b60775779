//! Redis behind Sentinel: one master, one replica, one sentinel (quorum 1), all real. The check
//! reports the master it resolved, and after the master is killed the verdict comes back on the
//! promoted replica within the failover time plus one interval.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, start_fast, wait_until, RedisServer, INTERVAL};

/// How long Sentinel waits before it calls the master down.
const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// A sentinel process (`redis-server --sentinel`), killed on drop.
struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Self {
        let port = free_port();
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster {}\nsentinel failover-timeout mymaster 5000\n",
            DOWN_AFTER.as_millis()
        );
        let sentinel = Self::spawn(&conf, port);
        wait_until(
            Duration::from_secs(10),
            "sentinel knows the master and its replica",
            || {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "SENTINEL", "REPLICAS", "mymaster"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("slave")
            },
        );
        sentinel
    }

    /// `redis-server --sentinel` with this configuration, listening on `port`.
    fn spawn(conf: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = support::write_file(dir.path(), "sentinel.conf", conf);
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        Self {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master, its replica in sync, a sentinel watching them, and the URL through the sentinel.
fn master_replica_sentinel() -> (RedisServer, RedisServer, Sentinel, String) {
    let master = RedisServer::start();
    let master_port = master.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
    wait_until(Duration::from_secs(10), "the replica in sync", || {
        master.info_number(&["replication"], "connected_slaves") == 1
    });
    let sentinel = Sentinel::start(master.port);
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
        sentinel.port
    );
    (master, replica, sentinel, url)
}

#[test]
fn a_sentinel_failover_is_followed_to_the_promoted_replica() {
    let (mut master, replica, sentinel, url) = master_replica_sentinel();
    let daemon = start_fast(&url, &["--check-writes"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    for check in ["redis:role", "redis:writable"] {
        assert_eq!(support::check_state(daemon.addr, check).0, "pass", "{check}");
    }
    let component = |d: &support::Daemon| {
        d.get("/health").json()["checks"]["redis:responseTime"][0]["componentId"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(component(&daemon), format!("redis://127.0.0.1:{}", master.port));

    master.kill();
    let killed = Instant::now();
    daemon.wait_for("/readyz", 503, support::DETECT);
    let promoted = format!("redis://127.0.0.1:{}", replica.port);
    // Sentinel's failover is over when it names the new master: what clients (fred included)
    // ask it for. The replica's ROLE turns master earlier, before Sentinel switches.
    let named = || {
        let out = Command::new("redis-cli")
            .args(["-p", &sentinel.port.to_string()])
            .args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&replica.port.to_string())
    };
    let is_master = || replica.cli(&["ROLE"]).starts_with("master");
    let (mut promoted_at, mut switched_at) = (None, None);
    wait_until(Duration::from_secs(20), "ready on the promoted replica", || {
        if promoted_at.is_none() && is_master() {
            promoted_at = Some(killed.elapsed());
        }
        if switched_at.is_none() && named() {
            switched_at = Some(killed.elapsed());
        }
        daemon.status("/readyz") == 200 && component(&daemon) == promoted
    });
    let back = killed.elapsed();
    // The promoted replica is a writable master by the same checks.
    wait_until(
        INTERVAL * 2,
        "role and writes pass on the promoted replica",
        || {
            let doc = daemon.get("/health").json();
            ["redis:role", "redis:writable"].iter().all(|check| {
                let entry = &doc["checks"][check][0];
                entry["status"] == "pass" && entry["componentId"] == promoted.as_str()
            })
        },
    );
    let switched_at = switched_at.unwrap_or(back);
    let promoted_at = promoted_at.unwrap_or(switched_at);
    println!(
        "replica promoted {promoted_at:?} after the kill, named by Sentinel after {switched_at:?}; \
         daemon ready on it after {back:?}"
    );
    assert!(
        back <= switched_at + support::RECONNECT_WINDOW + support::SLACK,
        "{back:?} vs {switched_at:?}"
    );
}

#[test]
fn a_dead_sentinel_in_the_list_is_skipped_for_a_live_one() {
    let master = RedisServer::start();
    let master_port = master.port.to_string();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
    let sentinel = Sentinel::start(master.port);
    // One sentinel listed has nothing listening, the other is real: both orders, as fred may
    // try the URL's host or its `node=` entries first.
    let dead = free_port();
    for (first, second) in [(dead, sentinel.port), (sentinel.port, dead)] {
        let url = format!(
            "redis-sentinel://127.0.0.1:{first}/0?sentinelServiceName=mymaster&node=127.0.0.1:{second}"
        );
        let daemon = start_fast(&url, &[]);
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
        let doc = daemon.get("/health").json();
        assert_eq!(
            doc["checks"]["redis:responseTime"][0]["componentId"],
            format!("redis://127.0.0.1:{}", master.port)
        );
    }
}

#[test]
fn a_master_sentinel_names_that_says_it_is_a_replica_fails_the_role_check() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let elsewhere = RedisServer::start();
    let sentinel = Sentinel::start(master.port);
    let url = format!(
        "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
        sentinel.port
    );
    // --expect-role any: through Sentinel the server must be a master all the same.
    let daemon = start_fast(&url, &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        support::entry(daemon.addr, "redis:role")["observedValue"],
        "master"
    );
    master.cli(&["REPLICAOF", "127.0.0.1", &elsewhere.port.to_string()]);
    let (took, output) = support::wait_for_check(
        daemon.addr,
        "redis:role",
        "fail",
        "but Sentinel names it the master: a failover is in progress",
        support::DETECT,
    );
    println!("demoted behind Sentinel: redis:role fail after {took:?}: {output}");
    assert_eq!(daemon.status("/readyz"), 503);
}

/// A Sentinel's address given as a data URL (`redis://sentinel:26379`): it answers PING, but
/// no data command, so the role check fails whatever the flags, saying what was given.
#[test]
fn a_sentinels_address_as_a_data_url_fails_saying_so() {
    let master = RedisServer::start();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = Sentinel::start(master.port);
    let url = format!("redis://127.0.0.1:{}", sentinel.port);
    for flags in [&[][..], &["--expect-role", "master"]] {
        let daemon = start_fast(&url, flags);
        let (took, output) = support::wait_for_check(
            daemon.addr,
            "redis:role",
            "fail",
            "this is a Sentinel (mode sentinel), not a data server",
            support::DETECT,
        );
        println!("{flags:?}: redis:role fail after {took:?}: {output}");
        assert!(output.contains("redis-sentinel://"), "{output}");
        assert_eq!(daemon.status("/readyz"), 503);
        assert_eq!(
            support::entry(daemon.addr, "redis:responseTime")["status"],
            "pass"
        );
    }
}

/// A restart and a failover side by side, behind the same Sentinel: the master restarted in
/// place (same address, new `run_id`, too quick for Sentinel to fail over) is a restart; then
/// the master killed and the replica promoted is a topology change, logged once in words and
/// counted apart, never a restart.
#[test]
fn a_failover_is_a_topology_change_and_a_restart_is_a_restart() {
    let (mut master, replica, _sentinel, url) = master_replica_sentinel();
    let mut flags = vec!["--redis-url", url.as_str()];
    flags.extend_from_slice(&support::FAST);
    let daemon = support::DaemonProcess::spawn(&flags, &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    let counts = || {
        (
            support::metric(
                daemon.addr,
                "redis_healthd_redis_restarts_total{target=\"redis\"} ",
            ),
            support::metric(
                daemon.addr,
                "redis_healthd_topology_changes_total{target=\"redis\"} ",
            ),
        )
    };
    assert_eq!(counts(), (0.0, 0.0));

    master.restart();
    wait_until(Duration::from_secs(5), "the restart counted", || {
        counts().0 == 1.0
    });
    assert_eq!(counts(), (1.0, 0.0), "a restart in place is no topology change");

    master.kill();
    let promoted = format!("redis://127.0.0.1:{}", replica.port);
    wait_until(Duration::from_secs(20), "ready on the promoted replica", || {
        support::get(daemon.addr, "/readyz").status == 200
            && support::get(daemon.addr, "/health").json()["checks"]["redis:responseTime"][0]["componentId"]
                == promoted.as_str()
    });
    wait_until(INTERVAL * 4, "the failover counted", || counts().1 == 1.0);
    std::thread::sleep(INTERVAL * 2);
    assert_eq!(counts(), (1.0, 1.0), "the failover is no restart");
    let log = daemon.log();
    assert_eq!(log.matches("redis restarted").count(), 1, "{log}");
    let moved: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("now checking another server"))
        .collect();
    assert_eq!(moved.len(), 1, "{log}");
    assert!(
        moved[0].contains(&promoted)
            && moved[0].contains(&format!("previous=redis://127.0.0.1:{}", master.port)),
        "{}",
        moved[0]
    );
}

/// A Sentinel from a configuration of the test's own (its password, TLS), watching the master
/// named `mymaster`; waits until it names that master through `cli` (redis-cli's login and TLS
/// arguments for it).
fn sentinel_with(conf: &str, port: u16, cli: &[&str]) -> Sentinel {
    let sentinel = Sentinel::spawn(conf, port);
    wait_until(Duration::from_secs(10), "sentinel names the master", || {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(cli)
            .args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("127.0.0.1")
    });
    sentinel
}

/// Sentinels with a password of their own (`requirepass` in sentinel.conf), the data nodes
/// with another: `sentinelPassword=` in the URL goes to the Sentinels, the URL's password or
/// the password file to the master.
#[test]
fn sentinels_with_their_own_password() {
    let master = RedisServer::start_with(&["--requirepass", "data-pass-1"]);
    let port = free_port();
    let conf = format!(
        "port {port}\nbind 127.0.0.1\nrequirepass sentinel-pass-2\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
         sentinel auth-pass mymaster data-pass-1\n",
        master.port
    );
    let _sentinel = sentinel_with(&conf, port, &["-a", "sentinel-pass-2", "--no-auth-warning"]);
    let in_url = format!(
        "redis-sentinel://:data-pass-1@127.0.0.1:{port}/0?sentinelServiceName=mymaster&sentinelPassword=sentinel-pass-2"
    );
    let daemon = start_fast(&in_url, &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        support::entry(daemon.addr, "redis:role")["observedValue"],
        "master"
    );
    let doc = daemon.get("/health").body;
    assert!(
        !doc.contains("sentinel-pass-2") && !doc.contains("data-pass-1"),
        "{doc}"
    );

    // The data password from a file, the Sentinels' from the URL.
    let file = support::write_file(master.dir(), "password", "data-pass-1\n");
    let from_file = format!(
        "redis-sentinel://127.0.0.1:{port}/0?sentinelServiceName=mymaster&sentinelPassword=sentinel-pass-2"
    );
    let daemon = start_fast(&from_file, &["--redis-password-file", file.to_str().unwrap()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    // Both passwords from files (--sentinel-password-file), none in the URL.
    let sentinel_file = support::write_file(master.dir(), "sentinel-password", "sentinel-pass-2\n");
    let bare = format!("redis-sentinel://127.0.0.1:{port}/0?sentinelServiceName=mymaster");
    let daemon = start_fast(
        &bare,
        &[
            "--redis-password-file",
            file.to_str().unwrap(),
            "--sentinel-password-file",
            sentinel_file.to_str().unwrap(),
        ],
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // Only the Sentinels' from a file, the data password in the URL.
    let data_in_url =
        format!("redis-sentinel://:data-pass-1@127.0.0.1:{port}/0?sentinelServiceName=mymaster");
    let daemon = start_fast(
        &data_in_url,
        &["--sentinel-password-file", sentinel_file.to_str().unwrap()],
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    // Without the Sentinels' password: their refusal (before the `sentinel-auth` feature, the
    // data password went to the Sentinels, and this was every case's answer).
    let without = format!("redis-sentinel://:data-pass-1@127.0.0.1:{port}/0?sentinelServiceName=mymaster");
    let daemon = start_fast(&without, &[]);
    let output = support::wait_for_output(daemon.addr, "NOAUTH", Duration::from_secs(5));
    println!("without the Sentinels' password: {output}");
    assert_eq!(daemon.status("/readyz"), 503);
}

/// TLS to the Sentinels and to the master they name, both with certificates for a DNS name
/// only (no IP address in them): `--tls-server-name` verifies both by that name, though the
/// master is reached by the address Sentinel gives.
#[test]
fn tls_to_sentinels_and_master_verified_by_the_server_name() {
    let certs = support::Certs::make();
    certs.sh("printf 'subjectAltName=DNS:redis.internal\\n' > dns.ext
        openssl req -newkey rsa:2048 -nodes -keyout dns.key -out dns.csr -subj /CN=redis.internal 2>/dev/null
        openssl x509 -req -in dns.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out dns.pem -days 2 -extfile dns.ext 2>/dev/null");
    let tls = [
        "--tls-cert-file",
        &certs.arg("dns.pem"),
        "--tls-key-file",
        &certs.arg("dns.key"),
        "--tls-ca-cert-file",
        &certs.arg("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]
    .map(String::from);
    let master_port = free_port();
    let mut args = vec![
        "--port".to_owned(),
        "0".into(),
        "--tls-port".into(),
        master_port.to_string(),
    ];
    args.extend(tls.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The support kit's --port comes first; the later `--port 0` wins: TLS only.
    let _master = RedisServer::start_on(master_port, &args);
    let port = free_port();
    let conf = format!(
        "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
         tls-auth-clients no\ntls-replication yes\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n",
        certs.arg("dns.pem"),
        certs.arg("dns.key"),
        certs.arg("ca.pem")
    );
    let cli = [
        "--tls",
        "--cacert",
        &certs.arg("ca.pem"),
        "--sni",
        "redis.internal",
    ];
    let _sentinel = sentinel_with(&conf, port, &cli);
    let url = format!("rediss-sentinel://127.0.0.1:{port}/0?sentinelServiceName=mymaster");
    let ca = certs.arg("ca.pem");
    let named = start_fast(
        &url,
        &["--tls-ca-file", &ca, "--tls-server-name", "redis.internal"],
    );
    named.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        support::entry(named.addr, "redis:role")["observedValue"],
        "master"
    );
    // Without the name, verified by address: the certificate names no address (fred then
    // says only that no Sentinel could be reached).
    let by_address = start_fast(&url, &["--tls-ca-file", &ca]);
    support::wait_for_output(by_address.addr, "unreachable", Duration::from_secs(5));
    assert_eq!(by_address.status("/readyz"), 503);
}
