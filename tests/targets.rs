//! Several named targets in one daemon, against real redis-server processes: by flag and by
//! config file, one killed or hung while the others carry on, an informational target, bad
//! config files, and fifty targets at once.

mod support;

use std::time::{Duration, Instant};

use support::{
    check_state, get, metric, run_binary, wait_for, wait_until, Daemon, DaemonProcess, RedisServer, DETECT,
    FAST, INTERVAL, RECOVER,
};

/// The daemon with the FAST timing and these flags.
fn start(flags: &[&str]) -> Daemon {
    let mut all: Vec<&str> = FAST.to_vec();
    all.extend_from_slice(flags);
    Daemon::start(&all)
}

#[test]
fn two_targets_by_flag_one_killed_the_other_carries_on() {
    let cache = RedisServer::start();
    let mut queue = RedisServer::start();
    let (cache_target, queue_target) = (format!("cache={}", cache.url()), format!("queue={}", queue.url()));
    let daemon = start(&["--target", &cache_target, "--target", &queue_target]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let health = daemon.get("/health").json();
    for check in [
        "cache:responseTime",
        "cache:role",
        "queue:responseTime",
        "queue:memory",
    ] {
        assert_eq!(health["checks"][check][0]["status"], "pass", "{check}: {health}");
    }
    assert!(health["checks"]["redis:responseTime"].is_null(), "{health}");
    assert_eq!(
        health["description"],
        format!(
            "Redis targets cache ({}), queue ({}) as seen by redis-healthd",
            cache.url(),
            queue.url()
        )
    );

    queue.kill();
    let took = daemon.wait_for("/readyz", 503, DETECT);
    let readyz = daemon.get("/readyz").json();
    let output = readyz["output"].as_str().unwrap_or_default().to_owned();
    println!("queue killed: /readyz 503 after {took:?}: {output}");
    assert!(output.starts_with("queue:responseTime: "), "{output}");
    assert!(!output.contains("cache:"), "{output}");
    assert_eq!(check_state(daemon.addr, "cache:responseTime").0, "pass");
    assert_eq!(check_state(daemon.addr, "cache:role").0, "pass");
    // The conventions take the names as they are.
    assert_eq!(daemon.status("/readyz/cache:responseTime"), 200);
    assert_eq!(daemon.status("/readyz/queue:responseTime"), 503);
    assert_eq!(daemon.status("/readyz?exclude=queue:responseTime"), 200);
    let verbose = daemon.get("/readyz?verbose").body;
    assert!(verbose.contains("[+]cache:responseTime ok"), "{verbose}");
    assert!(verbose.contains("[-]queue:responseTime failed: "), "{verbose}");
    assert_eq!(metric(daemon.addr, "redis_healthd_up{target=\"cache\"} "), 1.0);
    assert_eq!(metric(daemon.addr, "redis_healthd_up{target=\"queue\"} "), 0.0);

    queue.restart();
    let took = daemon.wait_for("/readyz", 200, RECOVER);
    println!("queue back: /readyz 200 after {took:?}");
}

#[test]
fn a_config_file_gives_each_target_its_own_password_file_and_options() {
    let cache = RedisServer::start_with(&["--requirepass", "cache-secret"]);
    let queue = RedisServer::start_with(&["--requirepass", "queue-secret"]);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "cache-password", "cache-secret\n");
    support::write_file(dir.path(), "queue-password", "queue-secret\n");
    let config = support::write_file(
        dir.path(),
        "targets.toml",
        &format!(
            r#"
# Paths are read relative to this file.
[[target]]
name = "cache"
url = "redis://127.0.0.1:{}"
password_file = "cache-password"
warn_latency = "1us"

[[target]]
name = "queue"
url = "redis://127.0.0.1:{}"
password_file = "queue-password"
check_writes = true
write_key = "healthd:queue"
expect_role = "master"
"#,
            cache.port, queue.port
        ),
    );
    let daemon = start(&["--config", config.to_str().unwrap()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let health = daemon.get("/health").json();
    // cache: every PONG is slower than 1 µs.
    assert_eq!(
        health["checks"]["cache:responseTime"][0]["status"], "warn",
        "{health}"
    );
    assert!(health["checks"]["cache:writable"].is_null(), "{health}");
    assert_eq!(
        health["checks"]["queue:responseTime"][0]["status"], "pass",
        "{health}"
    );
    assert_eq!(
        health["checks"]["queue:writable"][0]["status"], "pass",
        "{health}"
    );
    assert_eq!(
        health["checks"]["queue:role"][0]["observedValue"], "master",
        "{health}"
    );
    assert_eq!(health["status"], "warn");
    assert_eq!(
        queue.cli_as(Some("queue-secret"), &["EXISTS", "healthd:queue"]),
        "1"
    );
    assert_eq!(cache.cli_as(Some("cache-secret"), &["DBSIZE"]), "0");
    let body = daemon.get("/health").body + &daemon.get("/metrics").body;
    assert!(!body.contains("cache-secret") && !body.contains("queue-secret"));
}

#[test]
fn an_informational_target_failing_never_fails_readiness() {
    let app = RedisServer::start();
    let mut reports = RedisServer::start();
    reports.kill();
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_file(
        dir.path(),
        "targets.toml",
        &format!(
            "[[target]]\nname = \"app\"\nurl = \"{}\"\n\n[[target]]\nname = \"reports\"\nurl = \"{}\"\nreadiness = false\n",
            app.url(),
            reports.url()
        ),
    );
    let daemon = start(&["--config", config.to_str().unwrap()]);
    // Down from the start: ready and started all the same.
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(daemon.status("/startupz"), 200);
    let health = daemon.get("/health");
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["status"], "warn", "{health}");
    assert_eq!(
        health["checks"]["reports:responseTime"][0]["status"], "fail",
        "{health}"
    );
    assert!(
        health["output"]
            .as_str()
            .unwrap_or_default()
            .starts_with("reports:responseTime: "),
        "{health}"
    );
    assert_eq!(metric(daemon.addr, "redis_healthd_up{target=\"reports\"} "), 0.0);
    assert_eq!(
        metric(
            daemon.addr,
            "redis_healthd_check_status{target=\"reports\",check=\"reports:responseTime\",status=\"fail\"} "
        ),
        1.0
    );
    let verbose = daemon.get("/readyz?verbose").body;
    assert!(
        verbose.contains("[+]reports:responseTime ok (warn: "),
        "{verbose}"
    );
    // The target that gates readiness still does.
    let mut app = app;
    app.kill();
    daemon.wait_for("/readyz", 503, DETECT);
}

#[test]
fn a_hung_target_does_not_delay_the_others_verdict() {
    let mut cache = RedisServer::start();
    let queue = RedisServer::start();
    let (cache_target, queue_target) = (format!("cache={}", cache.url()), format!("queue={}", queue.url()));
    let daemon = start(&["--target", &cache_target, "--target", &queue_target]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    queue.signal("-STOP");
    support::wait_for_check(daemon.addr, "queue:responseTime", "fail", "timed out", DETECT);
    // cache goes on being checked every interval while every queue check waits out its timeout.
    let passes = |d: &Daemon| {
        metric(
            d.addr,
            "redis_healthd_checks_total{target=\"cache\",result=\"pass\"} ",
        )
    };
    let before = passes(&daemon);
    std::thread::sleep(INTERVAL * 6);
    let during = passes(&daemon) - before;
    println!("cache passed {during} checks in 6 intervals while queue was hung");
    assert!(during >= 5.0, "{during}");
    // And a crash of cache shows at once, not after queue's timeout.
    cache.kill();
    let killed = Instant::now();
    support::wait_for_check(daemon.addr, "cache:responseTime", "fail", "", DETECT);
    println!("cache's crash seen after {:?} with queue hung", killed.elapsed());
    queue.signal("-CONT");
}

#[test]
fn bad_targets_exit_2_naming_the_file_the_target_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        support::write_file(dir.path(), name, body)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let one = "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:1\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            file("unknown.toml", &format!("{one}timeout = \"1s\"\n")),
            "target \"cache\": timeout: unknown field `timeout`",
        ),
        (
            file("type.toml", &format!("{one}failure_threshold = \"3\"\n")),
            "target \"cache\": failure_threshold: invalid type",
        ),
        (
            file("zero.toml", &format!("{one}failure_threshold = 0\n")),
            "target \"cache\": failure_threshold: must be at least 1",
        ),
        (
            file("duplicate.toml", &format!("{one}{one}")),
            "target \"cache\": name: another [[target]] has this name",
        ),
        (
            file("name.toml", "[[target]]\nname = \"Cache\"\nurl = \"redis://h\"\n"),
            "target #1: name: \"Cache\" is not a target name",
        ),
        (
            file("url.toml", "[[target]]\nname = \"cache\"\nurl = \"http://h\"\n"),
            "target \"cache\": url: unsupported scheme \"http\"",
        ),
        (
            file("latency.toml", &format!("{one}warn_latency = \"fast\"\n")),
            "target \"cache\": warn_latency: ",
        ),
        (
            file("memory.toml", &format!("{one}warn_memory = 120\n")),
            "target \"cache\": warn_memory: ",
        ),
        (
            file("role.toml", &format!("{one}expect_role = \"primary\"\n")),
            "target \"cache\": expect_role: unknown variant `primary`",
        ),
        (
            file("password.toml", &format!("{one}password_file = \"missing\"\n")),
            "target \"cache\": password_file: cannot read",
        ),
        (
            file("tls.toml", &format!("{one}tls_ca_file = \"ca.pem\"\n")),
            "target \"cache\": tls_ca_file: needs a rediss:// URL",
        ),
        (file("syntax.toml", "[[target]\n"), ": line 1: "),
        (file("empty.toml", ""), ": no [[target]] table"),
    ];
    for (path, expected) in &cases {
        let (code, _, stderr) = run_binary(&["--config", path], &[]);
        let line = stderr.lines().next().unwrap_or_default();
        assert_eq!(code, Some(2), "{path}: {stderr}");
        assert!(
            line.starts_with(&format!("error: --config {path}")) && line.contains(expected),
            "{path}: expected {expected:?} in {line:?}"
        );
        println!("{line}");
    }
    let missing = dir.path().join("nope.toml");
    let (code, _, stderr) = run_binary(&["--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("error: --config: cannot read"), "{stderr}");

    // Flags: a bad --target, and --redis-url on the command line beside targets.
    for (args, expected) in [
        (vec!["--target", "cache"], "--target: expected NAME=URL"),
        (
            vec!["--target", "Cache=redis://h"],
            "--target: expected NAME=URL with NAME of 1 to 64 of a-z, 0-9, _ and -",
        ),
        (
            vec!["--target", "cache=redis://h", "--target", "cache=redis://g"],
            "--target cache: another target is named \"cache\"",
        ),
        (
            vec!["--target", "cache=http://h"],
            "--target cache: unsupported scheme",
        ),
        (
            vec!["--redis-url", "redis://h", "--target", "cache=redis://h"],
            "--redis-url and --target cannot be used together",
        ),
        (
            vec!["--redis-url", "redis://h", "--config", &cases[0].0],
            "--redis-url and --config cannot be used together",
        ),
    ] {
        let (code, _, stderr) = run_binary(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap_or_default().contains(expected),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_redis_url_from_the_environment_is_ignored_beside_targets() {
    let redis = RedisServer::start();
    let target = format!("only={}", redis.url());
    let mut flags = vec!["--target", target.as_str()];
    flags.extend_from_slice(&FAST);
    let daemon = DaemonProcess::spawn(&flags, &[("REDIS_URL", "redis://127.0.0.1:1")]);
    wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    let log = daemon.log();
    assert_eq!(
        log.matches("REDIS_URL from the environment is ignored").count(),
        1,
        "{log}"
    );
    let health = get(daemon.addr, "/health").json();
    assert_eq!(health["checks"]["only:responseTime"][0]["status"], "pass");
    // The environment's twin of --target works too.
    let env = format!("a={},b={}", redis.url(), redis.url());
    let daemon = DaemonProcess::spawn(&FAST, &[("REDIS_HEALTHD_TARGETS", env.as_str())]);
    wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    let health = get(daemon.addr, "/health").json();
    assert_eq!(health["checks"]["b:role"][0]["status"], "pass", "{health}");
}

#[test]
fn fifty_targets_are_all_ready_within_two_intervals_and_cost_one_round_each() {
    let servers: Vec<RedisServer> = (0..50).map(|_| RedisServer::start()).collect();
    let dir = tempfile::tempdir().unwrap();
    let tables: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("[[target]]\nname = \"r{i}\"\nurl = \"{}\"\n\n", s.url()))
        .collect();
    let config = support::write_file(dir.path(), "fifty.toml", &tables);
    let mut flags = vec!["--config", config.to_str().unwrap()];
    flags.extend_from_slice(&FAST);
    let started = Instant::now();
    let daemon = DaemonProcess::spawn(&flags, &[]);
    wait_until(INTERVAL * 2 + support::SLACK, "all 50 targets ready", || {
        get(daemon.addr, "/readyz").status == 200
    });
    println!(
        "50 targets ready {:?} after spawning the daemon",
        started.elapsed()
    );
    let health = get(daemon.addr, "/health").json();
    for i in 0..50 {
        assert_eq!(
            health["checks"][format!("r{i}:responseTime")][0]["status"],
            "pass",
            "r{i}"
        );
    }
    // Each server gets what one target's server gets: a PING per interval, three INFOs every fifth. The
    // counters of 50 servers take a while to read (two redis-cli runs each), so each server's
    // window is timed on its own: from its first reading to its last.
    let before: Vec<(Instant, u64, u64)> = servers
        .iter()
        .map(|s| {
            let at = Instant::now();
            (
                at,
                s.ping_calls(),
                s.info_number(&["commandstats"], "cmdstat_info"),
            )
        })
        .collect();
    std::thread::sleep(INTERVAL * 8);
    for (server, (at, pings, infos)) in servers.iter().zip(before) {
        let pings = server.ping_calls() - pings;
        // Two of ours count: the first reading's own INFO, and ping_calls' just before.
        let infos = server.info_number(&["commandstats"], "cmdstat_info") - infos - 2;
        let intervals = at.elapsed().as_secs_f64() / INTERVAL.as_secs_f64();
        let expected = (intervals.floor() as u64).saturating_sub(1)..=(intervals.ceil() as u64 + 1);
        assert!(
            expected.contains(&pings),
            "{pings} PINGs in {intervals:.1} intervals"
        );
        // Masters with no role required and no maxmemory: every fifth round three INFOs (one per
        // section that can change: replication, persistence, memory), PING alone between. The
        // readings of PINGs and INFOs are two commands: a round may fall between them.
        let changing = (pings / 5).saturating_sub(1)..=pings.div_ceil(5) + 1;
        let expected_infos = 3 * changing.start()..=3 * changing.end() + 3;
        assert!(
            expected_infos.contains(&infos),
            "{infos} INFOs in {intervals:.1} intervals ({pings} PINGs)"
        );
    }
    let (fds, rss) = support::fds_and_rss(daemon.child.id());
    println!("50 targets: {fds} descriptors, RSS {rss} KiB (debug build)");
}

#[test]
fn the_kubernetes_example_targets_file_parses() {
    let text = include_str!("../deploy/kubernetes/multi-target/targets.toml");
    let targets = redis_healthd::config_file::parse(text).expect("the example parses");
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["cache", "queue", "reports"]);
    assert_eq!(targets[1].check_writes, Some(true));
    assert_eq!(targets[2].readiness, Some(false));
}

#[test]
fn a_credential_goes_only_to_the_target_it_was_given_for() {
    let cache = RedisServer::start_with(&["--requirepass", "cache-secret"]);
    let plain = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let password = support::write_file(dir.path(), "cache-password", "cache-secret\n");
    let certs = support::Certs::make();
    let config = support::write_file(
        dir.path(),
        "targets.toml",
        &format!(
            "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{}\"\npassword_file = \"cache-password\"\n\n\
             [[target]]\nname = \"plain\"\nurl = \"redis://127.0.0.1:{}\"\n",
            cache.port, plain.port
        ),
    );
    // The single-target examples set REDIS_PASSWORD_FILE; a global CA is for rediss:// only.
    let ca = certs.arg("ca.pem");
    let mut flags = vec!["--config", config.to_str().unwrap(), "--tls-ca-file", &ca];
    flags.extend_from_slice(&FAST);
    let daemon = DaemonProcess::spawn(&flags, &[("REDIS_PASSWORD_FILE", password.to_str().unwrap())]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    std::thread::sleep(INTERVAL * 2);
    let stats = cache.cli_as(Some("cache-secret"), &["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_auth:calls="), "{stats}");
    assert_eq!(
        plain.info_number(&["commandstats"], "cmdstat_auth"),
        0,
        "the plain target was sent AUTH"
    );
    let log = daemon.log();
    assert!(
        log.contains("REDIS_PASSWORD_FILE is not used for the --config file's targets"),
        "{log}"
    );
}

#[test]
fn a_username_without_a_password_is_refused_naming_it() {
    let (code, _, stderr) = run_binary(&["--redis-username", "app"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --redis-username: a username needs a password"),
        "{stderr}"
    );
    let (code, _, stderr) = run_binary(&["--redis-url", "redis://app@127.0.0.1:6379"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --redis-url: a username needs a password"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_file(
        dir.path(),
        "t.toml",
        "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:6379\"\nusername = \"app\"\n",
    );
    let (code, _, stderr) = run_binary(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("target \"cache\": username: a username needs a password"),
        "{stderr}"
    );
}
