//! The binary as users run it: exit codes, flag errors, signals, the `check` subcommand, and
//! secrets kept out of every output.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{run_binary, wait_until, DaemonProcess, RedisServer};

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let password_file = "/nonexistent/redis-password";
    let cases: &[(&[&str], &str)] = &[
        (&["--interval", "0s"], "--interval"),
        (&["--interval", "soon"], "--interval"),
        (&["--timeout", "5"], "--timeout"),
        (&["--timeout", "3s"], "--timeout"),
        (&["--max-age", "0ms"], "--max-age"),
        (&["--max-replication-lag", "soon"], "--max-replication-lag"),
        (
            &["--sentinel-password-file", password_file],
            "--sentinel-password-file",
        ),
        (
            &[
                "--redis-url",
                "redis-cluster://127.0.0.1:6380",
                "--check-writes",
                "--write-key",
                "app{x}",
            ],
            "--write-key",
        ),
        (&["--warn-latency", "fast"], "--warn-latency"),
        (&["--listen", "localhost"], "--listen"),
        (&["--listen", "redis.internal:8558"], "--listen"),
        (&["--listen", "8558"], "--listen"),
        (&["--listen", "127.0.0.1:99999"], "--listen"),
        (&["--failure-threshold", "0"], "--failure-threshold"),
        (&["--log-format", "xml"], "--log-format"),
        (&["--redis-password-file", password_file], "--redis-password-file"),
        (&["--redis-url", "http://127.0.0.1:6379"], "--redis-url"),
        (
            &["--redis-url", "redis-cluster://127.0.0.1:6380?node=10.0.0.2"],
            "--redis-url",
        ),
        (&["--tls-ca-file", "/etc/hostname"], "--tls"),
        (&["--redis-url", "not a url"], "--redis-url"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, flag) in cases {
        let (code, stdout, stderr) = run_binary(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(flag),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn env_twins_are_validated_like_flags() {
    let (code, _, stderr) = run_binary(&[], &[("REDIS_HEALTHD_INTERVAL", "0s")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--interval"), "{stderr}");
    // A value from the environment is named by its variable, where the user set it.
    let (code, _, stderr) = run_binary(&[], &[("REDIS_HEALTHD_TIMEOUT", "3s")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("REDIS_HEALTHD_TIMEOUT (3s) must not be greater than --interval (2s)"),
        "{stderr}"
    );
    let (code, _, stderr) = run_binary(&[], &[("REDIS_PASSWORD_FILE", "/nonexistent/password")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: REDIS_PASSWORD_FILE: cannot read /nonexistent/password"),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_exits_1_with_a_clear_line() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, _, stderr) = run_binary(&["--listen", &addr, "--redis-url", "redis://127.0.0.1:1"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("address already in use"),
        "{stderr}"
    );
}

#[test]
fn sigterm_and_sigint_exit_0_after_draining() {
    let redis = RedisServer::start();
    for signal in ["-TERM", "-INT"] {
        let mut daemon = DaemonProcess::spawn(&["--redis-url", &redis.url()], &[]);
        wait_until(Duration::from_secs(5), "ready", || {
            support::get(daemon.addr, "/readyz").status == 200
        });
        let sent = Instant::now();
        daemon.signal(signal);
        assert_eq!(
            daemon.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{signal}: {}",
            daemon.log()
        );
        println!("{signal}: exited in {:?}", sent.elapsed());
        assert!(daemon.log().contains("stopped"), "{}", daemon.log());
    }
}

#[test]
fn redis_down_is_never_a_reason_to_exit() {
    let port = support::free_port();
    let mut daemon = DaemonProcess::spawn(
        &[
            "--redis-url",
            &format!("redis://127.0.0.1:{port}"),
            "--interval",
            "200ms",
            "--timeout",
            "100ms",
        ],
        &[],
    );
    wait_until(Duration::from_secs(3), "a failing verdict", || {
        support::get(daemon.addr, "/health")
            .body
            .contains("Connection refused")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(support::get(daemon.addr, "/livez").status, 200);
    // The failure is logged once, not once per attempt.
    let log = daemon.log();
    assert_eq!(log.matches("redis check failing").count(), 1, "{log}");
}

#[test]
fn check_exits_0_on_2xx_and_1_otherwise() {
    let redis = RedisServer::start();
    let daemon = DaemonProcess::spawn(&["--redis-url", &redis.url()], &[]);
    wait_until(Duration::from_secs(5), "ready", || {
        support::get(daemon.addr, "/readyz").status == 200
    });
    let url = format!("http://{}/readyz", daemon.addr);

    let (code, stdout, _) = run_binary(&["check", "--url", &url], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(stdout, format!("ok: 200 OK from {url}\n"));

    // The default URL comes from REDIS_HEALTHD_LISTEN's port, via loopback, and asks
    // liveness unless a path is given.
    let listen = format!(":{}", daemon.addr.port());
    let (code, stdout, _) = run_binary(&["check"], &[("REDIS_HEALTHD_LISTEN", &listen)]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{}/livez", daemon.addr.port())),
        "{stdout}"
    );
    let (code, stdout, _) = run_binary(&["check", "/readyz"], &[("REDIS_HEALTHD_LISTEN", &listen)]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{}/readyz", daemon.addr.port())),
        "{stdout}"
    );
    for bad in [&["check", "readyz"][..], &["check", "/readyz", "--url", &url]] {
        let (code, _, stderr) = run_binary(bad, &[]);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
    }

    let missing = format!("http://{}/nope", daemon.addr);
    let (code, stdout, _) = run_binary(&["check", "--url", &missing], &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("fail: 404 Not Found"), "{stdout}");
}

#[test]
fn check_reports_an_unready_daemon_with_its_reason() {
    let port = support::free_port();
    let daemon = DaemonProcess::spawn(&["--redis-url", &format!("redis://127.0.0.1:{port}")], &[]);
    wait_until(Duration::from_secs(3), "a failing verdict", || {
        support::get(daemon.addr, "/readyz")
            .body
            .contains("Connection refused")
    });
    let url = format!("http://{}/readyz", daemon.addr);
    let (code, stdout, _) = run_binary(&["check", "--url", &url], &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("fail: 503 Service Unavailable"), "{stdout}");
    assert!(stdout.contains("Connection refused"), "{stdout}");
    // Liveness is fine all the same, and it is what `check` asks by default (an image's
    // HEALTHCHECK): a Redis outage never makes the container unhealthy.
    let livez = format!("http://{}/livez", daemon.addr);
    assert_eq!(run_binary(&["check", "--url", &livez], &[]).0, Some(0));
    let listen = format!("127.0.0.1:{}", daemon.addr.port());
    let (code, stdout, _) = run_binary(&["check"], &[("REDIS_HEALTHD_LISTEN", &listen)]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = run_binary(&["check", "/readyz"], &[("REDIS_HEALTHD_LISTEN", &listen)]);
    assert_eq!(code, Some(1), "{stdout}");
}

#[test]
fn check_fails_when_nothing_answers() {
    let port = support::free_port();
    let (code, stdout, _) = run_binary(
        &["check", "--url", &format!("http://127.0.0.1:{port}/readyz")],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        stdout.starts_with("fail:") && stdout.contains("cannot connect"),
        "{stdout}"
    );

    // A server that accepts and never answers: the check gives up at its timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, stdout, _) = run_binary(&["check", "--url", &url, "--timeout", "300ms"], &[]);
    let took = started.elapsed();
    assert_eq!(code, Some(1));
    assert_eq!(stdout, format!("fail: no answer from {url} within 300ms\n"));
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(silent);

    for bad in ["https://127.0.0.1:1/readyz", "not a url"] {
        let (code, stdout, _) = run_binary(&["check", "--url", bad], &[]);
        assert_eq!(code, Some(1), "{bad}");
        assert!(stdout.starts_with("fail:"), "{stdout}");
    }
}

#[test]
fn secrets_never_reach_any_output() {
    const URL_SECRET: &str = "url-secret-7Qx";
    const FILE_SECRET: &str = "file-secret-9Kp";
    let redis = RedisServer::start_with(&["--requirepass", "the-real-one"]);
    let file = support::write_file(redis.dir(), "password", &format!("{FILE_SECRET}\n"));
    let url = format!("redis://user:{URL_SECRET}@127.0.0.1:{}/0", redis.port);
    for format in ["text", "json"] {
        let daemon = DaemonProcess::spawn(
            &[
                "--redis-password-file",
                file.to_str().unwrap(),
                "--log-format",
                format,
            ],
            &[("REDIS_URL", &url), ("RUST_LOG", "debug")],
        );
        wait_until(Duration::from_secs(5), "an auth failure", || {
            let body = support::get(daemon.addr, "/health").body;
            body.contains("WRONGPASS") || body.contains("NOAUTH")
        });
        let mut seen = daemon.log();
        for path in ["/livez", "/readyz", "/startupz", "/health", "/healthz", "/nope"] {
            let reply = support::get(daemon.addr, path);
            seen.push_str(&reply.head);
            seen.push_str(&reply.body);
        }
        assert!(seen.contains("user:***@"), "the redacted URL is shown: {seen}");
        assert!(
            !seen.contains(URL_SECRET) && !seen.contains(FILE_SECRET),
            "{seen}"
        );
    }
    let (_, help, _) = run_binary(&["--help"], &[("REDIS_URL", &url)]);
    assert!(
        help.contains("--redis-url") && !help.contains(URL_SECRET),
        "{help}"
    );
}

#[test]
fn slow_clients_are_cut_at_the_header_timeout() {
    let redis = RedisServer::start();
    let daemon = DaemonProcess::spawn(&["--redis-url", &redis.url()], &[]);
    let mut slow = std::net::TcpStream::connect(daemon.addr).unwrap();
    std::io::Write::write_all(&mut slow, b"GET /readyz HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let cut = started.elapsed();
    assert!(cut < Duration::from_secs(8), "connection held for {cut:?}");
    // Meanwhile and afterwards, probes are answered.
    assert_eq!(support::get(daemon.addr, "/livez").status, 200);
}

/// SIGTERM while the daemon is still starting (here: reading its `--config` file, a FIFO that
/// the test holds open) is acted on once it runs: the same drain and exit 0, never death by
/// the signal's default action.
#[test]
fn sigterm_during_start_up_still_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("targets.toml");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let port = support::free_port();
    let mut child = support::command(
        &["--config", fifo.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    )
    .spawn()
    .unwrap();
    // Opening the FIFO for writing returns once the daemon has opened it: it is inside main.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died of the SIGTERM"
    );
    use std::io::Write;
    write!(
        writer,
        "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{port}\"\n"
    )
    .unwrap();
    drop(writer);
    let mut code = None;
    wait_until(Duration::from_secs(10), "the daemon to exit", || {
        code = child.try_wait().unwrap();
        code.is_some()
    });
    let code = code.unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(code.code(), Some(0), "{code:?}: {stderr}");
    assert!(
        stderr.contains("shutting down") && stderr.contains("stopped"),
        "{stderr}"
    );
}

/// JSON logs as log shippers flatten them (Loki, Vector, ECS): no field name clashes with the
/// formatter's own keys, and the Redis target is `redis_target`, never `target` (the
/// formatter's name for the Rust module that logged).
#[test]
fn json_log_keys_never_clash_when_flattened() {
    let port = support::free_port();
    let daemon = DaemonProcess::spawn(
        &["--log-format", "json"],
        &[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))],
    );
    wait_until(Duration::from_secs(5), "a failing check logged", || {
        daemon.log().contains("redis check failing")
    });
    let log = daemon.log();
    let mut saw_redis_target = false;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let top = entry.as_object().unwrap();
        let fields = top
            .get("fields")
            .and_then(|f| f.as_object())
            .cloned()
            .unwrap_or_default();
        for key in fields.keys() {
            assert!(
                !top.contains_key(key),
                "`{key}` is both a field and a top-level key: {line}"
            );
        }
        assert!(!fields.contains_key("target"), "{line}");
        saw_redis_target |= fields.get("redis_target").and_then(|t| t.as_str()) == Some("redis");
    }
    assert!(saw_redis_target, "the failing check names its target: {log}");
}

/// `--listen` as people write it: `:PORT` is every address, IPv4 and IPv6 on one socket (what
/// the kubelet reaches on a single- or dual-stack pod); `localhost:PORT` is the loopback; a
/// host name or a missing port is refused with examples.
#[test]
fn listen_takes_port_only_and_localhost_forms() {
    let redis = RedisServer::start();
    let port = support::free_port();
    let daemon = DaemonProcess::spawn_listening(&format!(":{port}"), &["--redis-url", &redis.url()], &[]);
    assert_eq!(daemon.addr, format!("[::]:{port}").parse().unwrap());
    for ip in ["127.0.0.1", "[::1]"] {
        let addr = format!("{ip}:{port}").parse().unwrap();
        support::wait_for(addr, "/readyz", 200, Duration::from_secs(5));
    }
    let (code, stdout, _) = run_binary(&["check"], &[("REDIS_HEALTHD_LISTEN", &format!(":{port}"))]);
    assert_eq!(code, Some(0), "{stdout}");
    drop(daemon);

    let port = support::free_port();
    let daemon =
        DaemonProcess::spawn_listening(&format!("localhost:{port}"), &["--redis-url", &redis.url()], &[]);
    assert_eq!(daemon.addr, format!("127.0.0.1:{port}").parse().unwrap());
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));

    let (code, _, stderr) = run_binary(&["--listen", "redis.internal:8558"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("e.g. :8558, 127.0.0.1:8558"), "{stderr}");
    assert!(!stderr.contains("invalid socket address syntax"), "{stderr}");
}

/// `--check-config` validates flags, environment and a targets file with the daemon's own
/// code: 0 and a summary when valid (with the listen port taken and no Redis anywhere: it binds
/// and connects to nothing), 2 and the daemon's own message when not.
#[test]
fn check_config_validates_without_connecting_or_binding() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let good = support::write_file(
        dir.path(),
        "targets.toml",
        &format!(
            "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{}\"\n\
             [[target]]\nname = \"queue\"\nurl = \"redis://app:hunter2@127.0.0.1:{}\"\nreadiness = false\n",
            support::free_port(),
            support::free_port()
        ),
    );
    let args = [
        "--check-config",
        "--listen",
        &listen,
        "--config",
        good.to_str().unwrap(),
    ];
    let started = Instant::now();
    let (code, stdout, stderr) = run_binary(&args, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stdout.starts_with("configuration ok"), "{stdout}");
    assert!(stdout.contains(&format!("listen {listen}")), "{stdout}");
    assert!(stdout.contains("target cache: redis://127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("target queue: redis://app:***@127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("informational"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stdout}{stderr}"
    );

    let bad = support::write_file(
        dir.path(),
        "bad.toml",
        "[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:6379\"\nfailure_treshold = 3\n",
    );
    let checked = run_binary(&["--check-config", "--config", bad.to_str().unwrap()], &[]);
    let served = run_binary(&["--config", bad.to_str().unwrap()], &[]);
    assert_eq!(checked.0, Some(2));
    assert_eq!(
        (checked.0, &checked.2),
        (served.0, &served.2),
        "the daemon's own message"
    );
    assert!(
        checked.2.contains("bad.toml") && checked.2.contains("target \"cache\": failure_treshold"),
        "{}",
        checked.2
    );
    let env = run_binary(&["--check-config"], &[("REDIS_HEALTHD_INTERVAL", "0s")]);
    assert_eq!(env.0, Some(2));
    assert!(
        env.2.contains("REDIS_HEALTHD_INTERVAL") || env.2.contains("--interval"),
        "{}",
        env.2
    );
    let quorum = run_binary(
        &["--check-config"],
        &[
            ("REDIS_URL", "redis-cluster://127.0.0.1:7000"),
            ("REDIS_HEALTHD_CLUSTER_READY", "majority"),
        ],
    );
    assert_eq!(quorum.0, Some(0), "{}", quorum.2);
    assert!(
        quorum
            .1
            .contains("(every cluster primary, ready while more than half pass)"),
        "{}",
        quorum.1
    );
}

/// A password in a URL on the command line (where `ps` shows it) logs one warning pointing to
/// --redis-password-file; the same URL from the environment does not.
#[test]
fn a_password_on_the_command_line_is_warned_about_once() {
    let redis = RedisServer::start();
    let url = format!("redis://app:visible-pw@127.0.0.1:{}", redis.port);
    for (flags, env, warned) in [
        (vec!["--redis-url", url.as_str()], vec![], true),
        (vec![], vec![("REDIS_URL", url.as_str())], false),
    ] {
        let daemon = DaemonProcess::spawn(&flags, &env);
        wait_until(Duration::from_secs(5), "a verdict", || {
            support::get(daemon.addr, "/health").status != 0 && daemon.log().contains("redis check")
        });
        let log = daemon.log();
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("readable by every local user"))
            .count();
        assert_eq!(warnings, usize::from(warned), "{log}");
        if warned {
            assert!(log.contains("--redis-password-file"), "{log}");
        }
        assert!(!log.contains("visible-pw"), "{log}");
    }
}
