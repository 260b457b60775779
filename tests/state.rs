//! What PING misses, each state made for real on a real redis-server: memory full under
//! noeviction, min-replicas-to-write without replicas, a master demoted under the URL, a
//! replica whose master died, a failed RDB save, a drain key; with default flags and with
//! `--check-writes` / `--expect-role`; and recovery when the state clears. Also the ACL user
//! without INFO, the least-privilege user of the README, restarts, and what Redis sees per
//! interval.

mod support;

use std::time::{Duration, Instant};

use support::{
    check_state, metric, start_fast, wait_for_check, wait_until, DaemonProcess, RedisServer, DETECT,
    DETECT_IN_FULL_INFO, INTERVAL,
};

/// A change of role or replication link is seen at the next check: within an interval plus
/// the timeout (and slack); so is the recovery of a state that is not passing (its sections are
/// read every round until it passes).
const SEEN: Duration = DETECT;
/// Memory, persistence and the keyspace are read every fifth round: within five intervals
/// plus the timeout (and slack).
const SEEN_IN_FULL_INFO: Duration = DETECT_IN_FULL_INFO;

#[test]
fn memory_full_with_noeviction_warns_by_default_and_fails_writes_with_check_writes() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let plain = start_fast(&redis.url(), &[]);
    let writes = start_fast(&redis.url(), &["--check-writes", "--write-key", "healthd:memory"]);
    for daemon in [&plain, &writes] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    assert_eq!(check_state(plain.addr, "redis:memory").0, "pass");
    assert!(plain.get("/health").json()["checks"]
        .get("redis:writable")
        .is_none());
    assert_eq!(check_state(writes.addr, "redis:writable").0, "pass");
    // The write key expires after max-age (3 × 500 ms) unless written again.
    let ttl: i64 = redis.cli(&["PTTL", "healthd:memory"]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 1500, "PTTL {ttl}");

    redis.cli(&["DEBUG", "POPULATE", "100000"]);
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let full = Instant::now();
    assert!(redis.cli(&["SET", "k", "v"]).starts_with("OOM"), "writes fail");
    assert_eq!(redis.cli(&["PING"]), "PONG", "PING does not see it");
    let (_, output) = wait_for_check(
        plain.addr,
        "redis:memory",
        "warn",
        "over maxmemory 1 MiB",
        SEEN_IN_FULL_INFO,
    );
    println!(
        "memory full: redis:memory warn after {:?}: {output}",
        full.elapsed()
    );
    assert!(
        output.ends_with("with noeviction: writes fail with OOM"),
        "{output}"
    );
    let memory = support::entry(plain.addr, "redis:memory");
    assert_eq!(memory["observedUnit"], "%");
    assert!(memory["observedValue"].as_f64().unwrap() > 100.0, "{memory}");
    assert_eq!(plain.status("/readyz"), 200, "warn is still ready");
    assert_eq!(plain.get("/health").json()["status"], "warn");

    let (_, output) = wait_for_check(writes.addr, "redis:writable", "fail", "OOM", SEEN);
    println!(
        "memory full: --check-writes 503 after {:?}: {output}",
        full.elapsed()
    );
    assert!(
        output.starts_with("OOM command not allowed when used memory > 'maxmemory'"),
        "{output}"
    );
    assert_eq!(writes.status("/readyz"), 503);

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (took, _) = wait_for_check(writes.addr, "redis:writable", "pass", "", SEEN);
    writes.wait_for("/readyz", 200, SEEN);
    wait_for_check(plain.addr, "redis:memory", "pass", "", SEEN);
    println!("memory full: recovered {took:?} after maxmemory 0");
}

/// `volatile-lru` with no key that has an expiry: nothing can be evicted, so a full Redis
/// refuses every write exactly as under `noeviction`.
#[test]
fn memory_full_with_a_volatile_policy_and_nothing_to_evict_warns() {
    let redis = logging_every_command(&["--enable-debug-command", "local"]);
    let daemon = start_fast(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    redis.cli(&["DEBUG", "POPULATE", "100000"]);
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let full = Instant::now();
    assert!(redis.cli(&["SET", "k", "v"]).starts_with("OOM"), "writes fail");
    let (_, output) = wait_for_check(
        daemon.addr,
        "redis:memory",
        "warn",
        "no key with an expiry",
        SEEN_IN_FULL_INFO,
    );
    println!(
        "volatile-lru, no TTLs, full: redis:memory warn after {:?}: {output}",
        full.elapsed()
    );
    assert!(
        output.ends_with(
            "over maxmemory 1 MiB with volatile-lru and no key with an expiry to evict: writes fail with OOM"
        ),
        "{output}"
    );
    // While it warns, each round asks what can change, with the keyspace: its expiries judge.
    let asked = sections_asked_in(&redis, 4);
    let count = |section: &str| asked.iter().filter(|s| *s == section).count();
    println!("4 rounds while memory warns asked {asked:?}");
    assert!(
        count("memory") >= 4 && count("keyspace") == count("memory"),
        "{asked:?}"
    );
    // The same Redis under allkeys-lru evicts what it must: writes work, and so does the check.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    wait_for_check(daemon.addr, "redis:memory", "pass", "", SEEN);
}

#[test]
fn noreplicas_fails_only_the_write_check() {
    let redis = RedisServer::start();
    let plain = start_fast(&redis.url(), &[]);
    let writes = start_fast(&redis.url(), &["--check-writes"]);
    writes.wait_for("/readyz", 200, Duration::from_secs(5));
    redis.cli(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let (took, output) = wait_for_check(writes.addr, "redis:writable", "fail", "NOREPLICAS", SEEN);
    println!("min-replicas-to-write 1: --check-writes 503 after {took:?}: {output}");
    assert_eq!(output, "NOREPLICAS Not enough good replicas to write.");
    assert_eq!(writes.status("/readyz"), 503);
    // INFO does not show min-replicas-to-write: by default this state is invisible.
    assert_eq!(plain.status("/readyz"), 200);
    redis.cli(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    writes.wait_for("/readyz", 200, SEEN);
}

#[test]
fn a_master_demoted_under_the_url_fails_expect_role_master_and_writes() {
    let other = RedisServer::start();
    let redis = RedisServer::start();
    let plain = start_fast(&redis.url(), &[]);
    let master = start_fast(&redis.url(), &["--expect-role", "master"]);
    let writes = start_fast(&redis.url(), &["--check-writes"]);
    for daemon in [&plain, &master, &writes] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    assert_eq!(
        support::entry(plain.addr, "redis:role")["observedValue"],
        "master"
    );

    redis.cli(&["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    let demoted = Instant::now();
    let expected = format!("role is replica of 127.0.0.1:{}, expected master", other.port);
    let (_, output) = wait_for_check(master.addr, "redis:role", "fail", &expected, SEEN);
    println!(
        "demoted: --expect-role master 503 after {:?}: {output}",
        demoted.elapsed()
    );
    assert_eq!(master.status("/readyz"), 503);
    let (_, output) = wait_for_check(writes.addr, "redis:writable", "fail", "READONLY", SEEN);
    println!(
        "demoted: --check-writes 503 after {:?}: {output}",
        demoted.elapsed()
    );
    assert_eq!(output, "READONLY You can't write against a read only replica.");
    // With any role allowed, the role alters no verdict: it is read at the next round of what can change.
    wait_until(
        SEEN_IN_FULL_INFO,
        "the role read at a round of what can change",
        || support::entry(plain.addr, "redis:role")["observedValue"] == "replica",
    );
    println!(
        "demoted: the default flags read the role after {:?} (bound {SEEN_IN_FULL_INFO:?})",
        demoted.elapsed()
    );
    assert!(demoted.elapsed() <= SEEN_IN_FULL_INFO);
    // The master waits repl-diskless-sync-delay (5 s) before the first sync.
    // Up, and heard from: the observed value is the lag in seconds.
    wait_until(Duration::from_secs(10), "the replica's link up", || {
        let entry = support::entry(plain.addr, "redis:replication");
        entry["status"] == "pass" && entry["observedUnit"] == "s" && entry["observedValue"].as_u64().is_some()
    });
    assert_eq!(
        check_state(plain.addr, "redis:role"),
        ("pass".into(), String::new())
    );
    assert_eq!(
        support::entry(plain.addr, "redis:role")["observedValue"],
        "replica"
    );
    assert_eq!(
        plain.status("/readyz"),
        200,
        "by default a replica is a fine answer"
    );

    redis.cli(&["REPLICAOF", "NO", "ONE"]);
    master.wait_for("/readyz", 200, SEEN);
    writes.wait_for("/readyz", 200, SEEN);
    wait_until(SEEN, "redis:replication gone", || {
        plain.get("/health").json()["checks"]
            .get("redis:replication")
            .is_none()
    });
}

#[test]
fn a_replica_whose_master_died_warns_by_default_and_fails_expect_role_replica() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_until(Duration::from_secs(10), "the replica in sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let plain = start_fast(&replica.url(), &[]);
    let strict = start_fast(&replica.url(), &["--expect-role", "replica"]);
    for daemon in [&plain, &strict] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    assert_eq!(check_state(strict.addr, "redis:replication").0, "pass");

    master.kill();
    let killed = Instant::now();
    let (_, output) = wait_for_check(
        plain.addr,
        "redis:replication",
        "warn",
        "master_link_status:down",
        SEEN,
    );
    println!(
        "master died: redis:replication warn after {:?}: {output}",
        killed.elapsed()
    );
    assert!(output.contains("master_link_down_since_seconds:"), "{output}");
    assert_eq!(
        plain.status("/readyz"),
        200,
        "stale reads are a warning by default"
    );
    wait_for_check(
        strict.addr,
        "redis:replication",
        "fail",
        "master_link_status:down",
        SEEN,
    );
    println!(
        "master died: --expect-role replica 503 after {:?}",
        killed.elapsed()
    );
    assert_eq!(strict.status("/readyz"), 503);

    master.restart();
    let back = Instant::now();
    strict.wait_for("/readyz", 200, Duration::from_secs(10));
    println!("master back: ready again after {:?}", back.elapsed());
    // The other daemon checks on its own interval: its next check sees the link up too.
    wait_for_check(plain.addr, "redis:replication", "pass", "", SEEN);
}

/// A frozen master (SIGSTOP) keeps its replica's link `up` for `repl-timeout` (60 s) while the
/// replica's reads go staler: `master_last_io_seconds_ago` over `--max-replication-lag` is
/// stale all the same. The master pings its replicas every second here
/// (`repl-ping-replica-period 1`), so that a healthy lag stays under the 3 s limit.
#[test]
fn a_replica_of_a_frozen_master_is_stale_though_its_link_says_up() {
    let master = RedisServer::start_with(&["--repl-ping-replica-period", "1"]);
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_until(Duration::from_secs(10), "the replica in sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let plain = start_fast(&replica.url(), &["--max-replication-lag", "3s"]);
    let strict = start_fast(
        &replica.url(),
        &["--max-replication-lag", "3s", "--expect-role", "replica"],
    );
    for daemon in [&plain, &strict] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    wait_for_check(strict.addr, "redis:replication", "pass", "", SEEN);

    master.signal("-STOP");
    let frozen = Instant::now();
    let (_, output) = wait_for_check(
        plain.addr,
        "redis:replication",
        "warn",
        "over the max replication lag 3s",
        Duration::from_secs(3) + Duration::from_secs(1) + SEEN,
    );
    println!(
        "master frozen: redis:replication warn after {:?}: {output}",
        frozen.elapsed()
    );
    assert!(
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up"),
        "the link still says up"
    );
    assert_eq!(
        plain.status("/readyz"),
        200,
        "stale reads are a warning by default"
    );
    wait_for_check(
        strict.addr,
        "redis:replication",
        "fail",
        "over the max replication lag",
        SEEN,
    );
    assert_eq!(strict.status("/readyz"), 503);
    let lag = support::entry(plain.addr, "redis:replication")["observedValue"]
        .as_u64()
        .unwrap();
    assert!(lag > 3, "{lag}");

    master.signal("-CONT");
    let thawed = Instant::now();
    strict.wait_for("/readyz", 200, Duration::from_secs(5));
    println!("master thawed: ready again after {:?}", thawed.elapsed());
}

#[test]
fn a_failed_rdb_save_warns_naming_the_field() {
    let redis = RedisServer::start_with(&["--enable-protected-configs", "yes"]);
    let daemon = start_fast(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        support::entry(daemon.addr, "redis:persistence")["observedValue"],
        "ok"
    );
    // Writes would stop with MISCONF, which PING already reports: keep them on to see the
    // warning PING misses.
    redis.cli(&["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"]);
    redis.cli(&["CONFIG", "SET", "save", "3600 1"]);
    let gone = redis.dir().join("gone");
    std::fs::create_dir(&gone).unwrap();
    redis.cli(&["CONFIG", "SET", "dir", gone.to_str().unwrap()]);
    std::fs::remove_dir(&gone).unwrap();
    redis.cli(&["BGSAVE"]);
    let (took, output) = wait_for_check(
        daemon.addr,
        "redis:persistence",
        "warn",
        "rdb_last_bgsave_status:err",
        SEEN_IN_FULL_INFO,
    );
    println!("failed BGSAVE: redis:persistence warn after {took:?}: {output}");
    assert_eq!(daemon.status("/readyz"), 200);

    redis.cli(&["CONFIG", "SET", "dir", redis.dir().to_str().unwrap()]);
    redis.cli(&["BGSAVE"]);
    wait_for_check(
        daemon.addr,
        "redis:persistence",
        "pass",
        "",
        Duration::from_secs(5),
    );
}

#[test]
fn a_drain_key_takes_redis_out_of_rotation_until_deleted() {
    let redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--drain-key", "maintenance"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(check_state(daemon.addr, "redis:drain").0, "pass");
    redis.cli(&["SET", "maintenance", "1"]);
    let (took, output) = wait_for_check(daemon.addr, "redis:drain", "fail", "drained", SEEN);
    println!("drain key set: 503 after {took:?}");
    assert_eq!(output, "drained: key maintenance exists");
    assert_eq!(daemon.status("/readyz"), 503);
    assert_eq!(daemon.status("/livez"), 200);
    redis.cli(&["DEL", "maintenance"]);
    let took = daemon.wait_for("/readyz", 200, SEEN);
    println!("drain key deleted: 200 after {took:?}");
}

#[test]
fn state_checks_off_restore_ping_only() {
    let redis = RedisServer::start();
    let daemon = start_fast(&redis.url(), &["--state-checks", "false"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let doc = daemon.get("/health").json();
    let names: Vec<&String> = doc["checks"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["redis:responseTime"]);
    let before = command_calls(&redis);
    std::thread::sleep(INTERVAL * 3);
    let after = command_calls(&redis);
    // Only our own INFO commandstats.
    assert_eq!(
        after.get("info").copied().unwrap_or(0.0) - before.get("info").copied().unwrap_or(0.0),
        1.0
    );
    assert!(after["ping"] - before["ping"] >= 2.0);
}

/// `ACL SETUSER` arguments of the README's least-privilege user for the write key and drain
/// key used here: what fred sends when it connects (AUTH, CLIENT ID, INFO server), PING, INFO,
/// SET on the write key and EXISTS on the drain key, nothing else.
const LEAST_PRIVILEGE: [&str; 10] = [
    "on",
    ">s3cret",
    "resetkeys",
    "-@all",
    "+ping",
    "+info",
    "+client|id",
    "+set",
    "+exists",
    "~redis-healthd:*",
];

#[test]
fn the_least_privilege_user_passes_every_check_and_redis_logs_no_denial() {
    let redis = RedisServer::start();
    let mut setuser = vec!["ACL", "SETUSER", "healthd"];
    setuser.extend(LEAST_PRIVILEGE);
    setuser.push("%R~redis-healthd-drain");
    assert_eq!(redis.cli(&setuser), "OK");
    let url = format!("redis://healthd:s3cret@127.0.0.1:{}", redis.port);
    let daemon = start_fast(
        &url,
        &[
            "--check-writes",
            "--write-key",
            "redis-healthd:pod-1",
            "--drain-key",
            "redis-healthd-drain",
        ],
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    std::thread::sleep(INTERVAL * 2);
    let doc = daemon.get("/health").json();
    assert_eq!(doc["status"], "pass", "{doc}");
    for check in [
        "redis:role",
        "redis:memory",
        "redis:persistence",
        "redis:writable",
        "redis:drain",
    ] {
        assert_eq!(
            check_state(daemon.addr, check),
            ("pass".into(), String::new()),
            "{check}"
        );
    }
    assert_eq!(redis.cli(&["ACL", "LOG"]), "", "Redis denied something");
    // The same user may not write anywhere else.
    let denied = redis.cli(&[
        "--user",
        "healthd",
        "--pass",
        "s3cret",
        "--no-auth-warning",
        "SET",
        "other",
        "1",
    ]);
    assert!(denied.starts_with("NOPERM"), "{denied}");
}

/// With a role asked for, a user that may not run INFO fails closed: nobody knows the role,
/// and a load balancer routing writes by this answer would send them to replicas too.
#[test]
fn a_required_role_fails_closed_for_a_user_without_info() {
    let redis = RedisServer::start();
    let mut setuser = vec!["ACL", "SETUSER", "noinfo"];
    setuser.extend(LEAST_PRIVILEGE.iter().filter(|a| **a != "+info"));
    assert_eq!(redis.cli(&setuser), "OK");
    let url = format!("redis://noinfo:s3cret@127.0.0.1:{}", redis.port);
    let daemon = start_fast(&url, &["--expect-role", "master"]);
    let (took, output) = wait_for_check(daemon.addr, "redis:role", "fail", "NOPERM", SEEN);
    println!("redis:role fail after {took:?}: {output}");
    assert!(
        output
            .ends_with("the role must be master (--expect-role master), and only INFO tells it (ACL: +info)"),
        "{output}"
    );
    assert_eq!(daemon.status("/readyz"), 503);
    assert_eq!(check_state(daemon.addr, "redis:responseTime").0, "pass");
}

#[test]
fn a_user_without_info_warns_instead_of_failing_and_info_is_not_asked_again() {
    let redis = RedisServer::start();
    let mut setuser = vec!["ACL", "SETUSER", "noinfo"];
    setuser.extend(LEAST_PRIVILEGE.iter().filter(|a| **a != "+info"));
    assert_eq!(redis.cli(&setuser), "OK");
    let url = format!("redis://noinfo:s3cret@127.0.0.1:{}", redis.port);
    let daemon = start_fast(&url, &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let (_, output) = wait_for_check(daemon.addr, "redis:role", "warn", "NOPERM", SEEN);
    assert!(output.starts_with("not checked: INFO failed: NOPERM"), "{output}");
    for check in ["redis:memory", "redis:persistence"] {
        assert_eq!(check_state(daemon.addr, check).0, "warn", "{check}");
    }
    assert_eq!(check_state(daemon.addr, "redis:responseTime").0, "pass");
    assert_eq!(daemon.get("/health").json()["status"], "warn");
    // fred's INFO server at connect, and the first check's INFO (one per section): then no more.
    // ACL LOG folds repeated denials into one entry with a count.
    let denied = || -> u64 {
        let log = redis.cli(&["ACL", "LOG"]);
        let lines: Vec<&str> = log.lines().collect();
        lines
            .windows(2)
            .filter(|pair| pair[0] == "count")
            .filter_map(|pair| pair[1].parse::<u64>().ok())
            .sum()
    };
    let after_first = denied();
    std::thread::sleep(INTERVAL * 4);
    println!(
        "INFO denials logged by Redis: {after_first}, then {} after 4 more intervals",
        denied()
    );
    assert_eq!(denied(), after_first, "INFO asked again on the same connection");
    assert!(after_first <= 6, "{after_first} denials logged");
    assert_eq!(daemon.status("/readyz"), 200);
}

#[test]
fn a_restart_is_counted_and_logged_with_the_new_uptime() {
    let mut redis = RedisServer::start();
    let daemon = DaemonProcess::spawn_fast(&redis.url());
    assert_eq!(
        metric(
            daemon.addr,
            "redis_healthd_redis_restarts_total{target=\"redis\"} "
        ),
        0.0
    );
    redis.restart();
    wait_until(SEEN * 2, "the restart counted", || {
        metric(
            daemon.addr,
            "redis_healthd_redis_restarts_total{target=\"redis\"} ",
        ) == 1.0
    });
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("redis restarted"))
        .unwrap_or_else(|| panic!("{log}"));
    // Seen at the reconnection, within the reconnect window (2 s here) of the restart.
    let uptime: u64 = line
        .split("uptime=")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(uptime <= 3, "{line}");
    std::thread::sleep(INTERVAL * 2);
    assert_eq!(
        metric(
            daemon.addr,
            "redis_healthd_redis_restarts_total{target=\"redis\"} "
        ),
        1.0
    );
    assert_eq!(log.matches("redis restarted").count(), 1);
}

/// `calls` of every command in one `INFO commandstats` (that INFO itself included).
fn command_calls(redis: &RedisServer) -> std::collections::BTreeMap<String, f64> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').next()?.strip_prefix("calls=")?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// `INFO` calls per interval against a master with no role required and no `maxmemory`: every
/// fifth round the three sections that can change (replication, persistence, memory), one
/// `INFO` each, and PING alone between.
const INFO_CALLS: f64 = CHANGING_SECTIONS / CHANGING_ROUNDS;
/// `INFO` calls of a round of what can change: one per section.
const CHANGING_SECTIONS: f64 = 3.0;
/// Such a round once in this many.
const CHANGING_ROUNDS: f64 = 5.0;

#[test]
fn each_interval_costs_ping_and_info_plus_one_command_per_opt_in() {
    for (extra, expected) in [
        (
            &[][..],
            [("ping", 1.0), ("info", INFO_CALLS), ("set", 0.0), ("exists", 0.0)],
        ),
        (
            &["--check-writes", "--drain-key", "drain"][..],
            [("ping", 1.0), ("info", INFO_CALLS), ("set", 1.0), ("exists", 1.0)],
        ),
    ] {
        let redis = RedisServer::start();
        let daemon = start_fast(&redis.url(), extra);
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
        std::thread::sleep(INTERVAL);
        let before = command_calls(&redis);
        let started = Instant::now();
        // Probes in between cost Redis nothing.
        let mut probes = 0;
        while started.elapsed() < INTERVAL * 12 {
            assert_eq!(daemon.status("/readyz"), 200);
            probes += 1;
        }
        let after = command_calls(&redis);
        let intervals = started.elapsed().as_secs_f64() / INTERVAL.as_secs_f64();
        let count =
            |calls: &std::collections::BTreeMap<String, f64>, c: &str| calls.get(c).copied().unwrap_or(0.0);
        for (command, per_interval) in expected {
            // Our own INFO commandstats is one of the INFO calls.
            let ours = if command == "info" { 1.0 } else { 0.0 };
            let rate = (count(&after, command) - count(&before, command) - ours) / intervals;
            println!("{extra:?}: {command} {rate:.2} per interval ({probes} probes)");
            assert!(
                (rate - per_interval).abs() <= 0.2,
                "{command}: {rate:.2} per interval, expected {per_interval}"
            );
        }
        let total: f64 = after.values().sum::<f64>() - before.values().sum::<f64>() - 1.0;
        let budget = expected.iter().map(|(_, n)| n).sum::<f64>();
        assert!(
            total / intervals <= budget + 0.4,
            "{total} commands in {intervals:.1} intervals"
        );
    }
}

#[test]
fn a_server_without_info_warns_and_stays_ready() {
    // INFO renamed away: refused with ERR; the state checks say so and never fail the verdict.
    let redis = RedisServer::start_with(&["--rename-command", "INFO", ""]);
    let daemon = start_fast(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let (_, output) = wait_for_check(daemon.addr, "redis:role", "warn", "ERR unknown command", SEEN);
    assert!(
        output.starts_with("not checked: INFO failed: ERR unknown command 'INFO'"),
        "{output}"
    );
    assert_eq!(daemon.get("/health").json()["status"], "warn");
}

/// The sections each check asked, in the order asked, from Redis's slowlog (every command
/// logged): `replication`, `memory`... (the test's own `INFO commandstats` left out).
fn info_sections_asked(redis: &RedisServer) -> Vec<String> {
    let log = redis.cli(&["SLOWLOG", "GET", "100000"]);
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[0] == "INFO" && pair[1] != "commandstats")
        .map(|pair| pair[1].to_owned())
        .collect()
}

/// The `INFO` sections the next `rounds` rounds asked `redis` (its slowlog logs every command).
fn sections_asked_in(redis: &RedisServer, rounds: u64) -> Vec<String> {
    redis.cli(&["SLOWLOG", "RESET"]);
    let before = redis.ping_calls();
    let limit = INTERVAL * (3 * rounds as u32 + 3);
    wait_until(limit, &format!("{rounds} rounds"), || {
        redis.ping_calls() - before >= rounds
    });
    info_sections_asked(redis)
}

/// A Redis that logs every command in its slowlog.
fn logging_every_command(extra: &[&str]) -> RedisServer {
    let logging = ["--slowlog-log-slower-than", "0", "--slowlog-max-len", "100000"];
    RedisServer::start_with(&[&logging[..], extra].concat())
}

/// The sections ten healthy rounds of `daemon` asked `redis`, counted: replication and memory
/// (memory comes with persistence in a round of what can change).
fn ten_rounds(redis: &RedisServer, daemon: &support::Daemon) -> (usize, usize) {
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let asked = sections_asked_in(redis, 10);
    let count = |section: &str| asked.iter().filter(|s| *s == section).count();
    println!("10 healthy rounds asked {asked:?}");
    assert_eq!(count("memory"), count("persistence"), "{asked:?}");
    // The server section is the process's own: asked on the connection's first round, before
    // these ten. The keyspace judges nothing here (no maxmemory).
    assert_eq!(count("server") + count("keyspace"), 0, "{asked:?}");
    (count("replication"), count("memory"))
}

/// The role and the replication link are asked every round where they judge: a required
/// role (`--expect-role`) and a replica (its link and lag). A master that may have any role is
/// PINGed alone between rounds of what can change.
#[test]
fn the_replication_section_is_asked_every_round_where_it_can_change_a_verdict() {
    let master = logging_every_command(&[]);
    let required = start_fast(&master.url(), &["--expect-role", "master"]);
    let (replication, full) = ten_rounds(&master, &required);
    assert!((10..=12).contains(&replication), "{replication}");
    assert!((2..=3).contains(&full), "{full}");
    drop(required);

    let replica = logging_every_command(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_until(Duration::from_secs(10), "the replica in sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let plain = start_fast(&replica.url(), &[]);
    let (replication, full) = ten_rounds(&replica, &plain);
    assert!((10..=12).contains(&replication), "{replication}");
    assert!((2..=3).contains(&full), "{full}");
}

/// The detection bounds the README states: role and replication link within one interval
/// where they can change a verdict (above), memory and persistence (and the role of a master
/// that may have any) within five (every fifth round asks what can change), and a state that
/// is not passing asked every round until it passes, so its recovery shows at the next round.
#[test]
fn memory_and_persistence_are_read_every_fifth_round_and_every_round_while_not_passing() {
    let redis = logging_every_command(&[]);
    let daemon = start_fast(&redis.url(), &[]);
    let (replication, full) = ten_rounds(&redis, &daemon);
    assert!((2..=3).contains(&full), "{full}");
    assert_eq!(
        replication, full,
        "a master that may have any role: PING alone between"
    );

    // Memory full: seen within five intervals, then asked every round until it passes.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let full = Instant::now();
    let (took, _) = wait_for_check(
        daemon.addr,
        "redis:memory",
        "warn",
        "over maxmemory",
        SEEN_IN_FULL_INFO,
    );
    println!("memory full: warn after {took:?} (bound {SEEN_IN_FULL_INFO:?})");
    assert!(full.elapsed() <= SEEN_IN_FULL_INFO);
    let asked = sections_asked_in(&redis, 4);
    let memory = asked.iter().filter(|s| *s == "memory").count();
    println!("4 rounds while memory warns asked {asked:?}");
    assert!(memory >= 4, "{asked:?}");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (took, _) = wait_for_check(daemon.addr, "redis:memory", "pass", "", SEEN);
    println!("memory cleared: pass after {took:?} (bound {SEEN:?})");
}
