//! Logging in: ACL users, the password file read again at every reconnection and on SIGHUP
//! (secret rotation without a restart), and Unix sockets; each against a real redis-server.

mod support;

use std::time::Duration;

use support::{start_fast, wait_until, write_file, DaemonProcess, RedisServer, RECOVER};

fn acl_user(redis: &RedisServer, user: &str, password: &str) {
    let reply = redis.cli(&[
        "ACL",
        "SETUSER",
        user,
        "on",
        &format!(">{password}"),
        "~*",
        "+@all",
    ]);
    assert_eq!(reply, "OK");
}

#[test]
fn an_acl_user_from_the_url_or_the_flags_logs_in() {
    let redis = RedisServer::start();
    acl_user(&redis, "app", "app-pass-1");
    let from_url = start_fast(&format!("redis://app:app-pass-1@127.0.0.1:{}", redis.port), &[]);
    from_url.wait_for("/readyz", 200, Duration::from_secs(5));

    let file = write_file(redis.dir(), "password", "app-pass-1\n");
    let from_flags = start_fast(
        &redis.url(),
        &[
            "--redis-username",
            "app",
            "--redis-password-file",
            file.to_str().unwrap(),
        ],
    );
    from_flags.wait_for("/readyz", 200, Duration::from_secs(5));
    let doc = from_flags.get("/health").json();
    assert_eq!(doc["checks"]["redis:responseTime"][0]["componentId"], redis.url());
}

#[test]
fn a_wrong_acl_password_or_user_fails_with_the_servers_reason() {
    let redis = RedisServer::start();
    acl_user(&redis, "app", "app-pass-1");
    for url in [
        format!("redis://app:not-it-93@127.0.0.1:{}", redis.port),
        format!("redis://nobody:app-pass-1@127.0.0.1:{}", redis.port),
    ] {
        let daemon = start_fast(&url, &[]);
        support::wait_for_output(daemon.addr, "WRONGPASS", Duration::from_secs(5));
        assert_eq!(daemon.status("/readyz"), 503);
        assert!(!daemon.get("/health").body.contains("not-it-93"));
    }
}

#[test]
fn a_rotated_password_file_is_used_at_the_next_reconnection() {
    let redis = RedisServer::start_with(&["--requirepass", "first-secret"]);
    let file = write_file(redis.dir(), "password", "first-secret\n");
    let daemon = start_fast(&redis.url(), &["--redis-password-file", file.to_str().unwrap()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    // Rotate: Redis and the file (as a Kubernetes Secret volume would), then drop the
    // daemon's connection; it must log in again with the new secret.
    let errors_before = support::metric(
        daemon.addr,
        "redis_healthd_connection_errors_total{target=\"redis\"} ",
    );
    write_file(redis.dir(), "password", "second-secret\n");
    let set = redis.cli_as(
        Some("first-secret"),
        &["CONFIG", "SET", "requirepass", "second-secret"],
    );
    assert_eq!(set, "OK");
    let killed = redis.cli_as(Some("second-secret"), &["CLIENT", "KILL", "TYPE", "normal"]);
    assert_eq!(killed, "1");
    wait_until(Duration::from_secs(3), "the dropped connection seen", || {
        support::metric(
            daemon.addr,
            "redis_healthd_connection_errors_total{target=\"redis\"} ",
        ) > errors_before
    });
    let recovered = daemon.wait_for("/readyz", 200, RECOVER);
    println!("rotated secret in use {recovered:?} after the connection was dropped");
    let checks = support::metric(
        daemon.addr,
        "redis_healthd_checks_total{target=\"redis\",result=\"pass\"} ",
    );
    wait_until(Duration::from_secs(3), "more passing checks", || {
        support::metric(
            daemon.addr,
            "redis_healthd_checks_total{target=\"redis\",result=\"pass\"} ",
        ) > checks
    });
}

#[test]
fn sighup_reads_the_password_file_again_and_reconnects() {
    let redis = RedisServer::start_with(&["--requirepass", "first-secret"]);
    let file = write_file(redis.dir(), "password", "first-secret\n");
    let mut daemon = DaemonProcess::spawn(
        &[
            "--redis-url",
            &redis.url(),
            "--redis-password-file",
            file.to_str().unwrap(),
            "--interval",
            "500ms",
            "--timeout",
            "200ms",
        ],
        &[],
    );
    let addr = daemon.addr;
    support::wait_for(addr, "/readyz", 200, Duration::from_secs(5));

    // A wrong secret in the file: SIGHUP makes it count at once.
    write_file(redis.dir(), "password", "not-the-secret\n");
    daemon.signal("-HUP");
    support::wait_for_output(addr, "WRONGPASS", Duration::from_secs(3));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "SIGHUP must not end the daemon"
    );

    // The right one again: back to ready after the next SIGHUP.
    write_file(redis.dir(), "password", "first-secret\n");
    daemon.signal("-HUP");
    support::wait_for(addr, "/readyz", 200, RECOVER);
    let log = daemon.log();
    assert!(log.contains("reconnecting to redis on request"), "{log}");
    assert!(
        !log.contains("not-the-secret") && !log.contains("first-secret"),
        "{log}"
    );
}

#[test]
fn a_unix_socket_is_checked_like_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let socket_arg = socket.to_str().unwrap().to_owned();
    let mut redis = RedisServer::start_with(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{socket_arg}");
    let daemon = start_fast(&url, &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        daemon.get("/health").json()["checks"]["redis:responseTime"][0]["componentId"],
        url
    );
    redis.kill();
    daemon.wait_for("/readyz", 503, support::DETECT);
    redis.restart();
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
}

/// A Redis that requires `the-secret`, the file holding it, and the daemon (FAST timing)
/// logging in with that file, ready.
fn ready_with_a_password_file() -> (RedisServer, std::path::PathBuf, DaemonProcess) {
    let redis = RedisServer::start_with(&["--requirepass", "the-secret"]);
    let file = write_file(redis.dir(), "password", "the-secret\n");
    let mut flags = vec![
        "--redis-url".to_owned(),
        redis.url(),
        "--redis-password-file".to_owned(),
    ];
    flags.push(file.to_str().unwrap().to_owned());
    flags.extend(support::FAST.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = DaemonProcess::spawn(&flags, &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    (redis, file, daemon)
}

/// SIGHUP on a healthy connection makes the new connection before dropping the old one: no
/// check fails or slows down for it.
#[test]
fn twenty_sighups_on_a_healthy_connection_never_fail_or_slow_a_check() {
    let (redis, _file, daemon) = ready_with_a_password_file();
    let connections = || {
        let info = redis.cli_as(Some("the-secret"), &["INFO", "stats"]);
        info.lines()
            .find_map(|l| {
                l.strip_prefix("total_connections_received:")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let before = connections();
    let (mut samples, mut bad, mut slowest) = (0, Vec::new(), 0.0f64);
    for _ in 0..20 {
        daemon.signal("-HUP");
        let until = std::time::Instant::now() + Duration::from_millis(150);
        while std::time::Instant::now() < until {
            let reply = support::get(daemon.addr, "/health");
            samples += 1;
            let doc = reply.json();
            let entry = &doc["checks"]["redis:responseTime"][0];
            slowest = slowest.max(entry["observedValue"].as_f64().unwrap_or(0.0));
            if reply.status != 200 || doc["status"] != "pass" {
                bad.push(format!("{} {}", reply.status, doc["output"]));
            }
        }
    }
    let made = connections() - before;
    println!(
        "20 SIGHUPs: {samples} samples, {} not pass, slowest PONG {slowest} ms, {made} new connections",
        bad.len()
    );
    assert!(bad.is_empty(), "{bad:?}");
    assert!(made >= 20, "{made} new connections for 20 SIGHUPs");
    // The old connections were closed: one connection (and redis-cli's) remain.
    wait_until(Duration::from_secs(3), "the old connections closed", || {
        redis
            .cli_as(Some("the-secret"), &["INFO", "clients"])
            .contains("connected_clients:2")
    });
}

/// A password file that hangs (a FIFO with no writer: what a stuck NFS or CSI mount looks
/// like to a reader) at a reconnection: every endpoint still answers at once, and the
/// reconnection uses the last good password (as the TLS files keep their last good set),
/// counted as a failed reload. Then the file gone (a Secret being rewritten): the same.
#[test]
fn a_password_file_that_hangs_or_goes_keeps_the_last_good_password() {
    let (redis, file, daemon) = ready_with_a_password_file();
    let reload_errors = || {
        support::metric(
            daemon.addr,
            "redis_healthd_config_reload_errors_total{target=\"redis\"} ",
        )
    };
    assert_eq!(reload_errors(), 0.0);
    support::replace_with_fifo(&file);
    assert_eq!(
        redis.cli_as(Some("the-secret"), &["CLIENT", "KILL", "TYPE", "normal"]),
        "1"
    );
    let slowest = support::sample_endpoints(daemon.addr, Duration::from_secs(2), |path, reply| {
        assert!(matches!(reply.status, 200 | 503), "{path}: {}", reply.status);
    });
    println!("endpoints while the password file hangs: slowest answer {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    wait_until(Duration::from_secs(3), "the last good password used", || {
        reload_errors() >= 1.0 && support::get(daemon.addr, "/readyz").status == 200
    });
    std::fs::remove_file(&file).unwrap();
    let before = reload_errors();
    assert_eq!(
        redis.cli_as(Some("the-secret"), &["CLIENT", "KILL", "TYPE", "normal"]),
        "1"
    );
    wait_until(Duration::from_secs(3), "reconnected without the file", || {
        reload_errors() > before && support::get(daemon.addr, "/readyz").status == 200
    });
    assert_eq!(support::get(daemon.addr, "/livez").status, 200);
}
