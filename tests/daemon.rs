//! The daemon end to end against real redis-server processes: verdicts, detection and recovery
//! bounds, reasons, and that probes never reach Redis.

mod support;

use std::time::{Duration, Instant};

use support::{
    output, start_fast as start, wait_until, RedisServer, INTERVAL, RECONNECT, RECOVER, SLACK, TIMEOUT,
};

#[test]
fn healthy_redis_is_ready_on_every_endpoint() {
    let redis = RedisServer::start();
    let daemon = start(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    for path in [
        "/livez",
        "/readyz",
        "/startupz",
        "/health",
        "/healthz",
        "/readyz?unknown=1",
    ] {
        let reply = daemon.get(path);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/health+json"),
            "{path}"
        );
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
        assert_eq!(reply.json()["status"], "pass", "{path}");
    }
    let doc = daemon.get("/health").json();
    assert_eq!(doc["serviceId"], "redis-healthd");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc.get("output").is_none(), "{doc}");
    let entry = &doc["checks"]["redis:responseTime"][0];
    assert_eq!(entry["componentId"], redis.url());
    assert_eq!(entry["componentType"], "datastore");
    // Which server answered, from its INFO (Debian's 7.0 here).
    assert!(
        entry["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("redis 7.")),
        "{entry}"
    );
    assert_eq!(entry["observedUnit"], "ms");
    assert_eq!(entry["status"], "pass");
    assert_eq!(entry["consecutiveFailures"], 0);
    let rtt = entry["observedValue"]
        .as_f64()
        .expect("observedValue is a number");
    assert!(rtt > 0.0 && rtt < 100.0, "{rtt}");
    let time = entry["time"].as_str().unwrap();
    humantime::parse_rfc3339(time).expect("time is RFC 3339");
    assert_eq!(entry["lastSuccess"], entry["time"]);

    let head = support::request(daemon.addr, "HEAD", "/readyz");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let post = support::request(daemon.addr, "POST", "/readyz");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"));
    let missing = daemon.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not found");
}

#[test]
fn probes_never_reach_redis() {
    let redis = RedisServer::start();
    let daemon = start(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // Each redis-cli call below is itself one connection.
    let connections = redis.info_number(&["stats"], "total_connections_received");
    let pings = redis.ping_calls();
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < INTERVAL * 3 {
        let path = ["/readyz", "/health", "/livez", "/metrics"][requests % 4];
        assert_eq!(daemon.status(path), 200);
        requests += 1;
    }
    let elapsed = started.elapsed();
    let pings = redis.ping_calls() - pings;
    let connections = redis.info_number(&["stats"], "total_connections_received") - connections;
    let intervals = (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()).ceil() as u64;
    println!("{requests} probe requests in {elapsed:?}: {pings} PINGs, {intervals} intervals");
    assert!(pings <= intervals + 1, "{pings} PINGs in {intervals} intervals");
    assert_eq!(connections, 3, "only the three redis-cli calls connected");
    assert_eq!(
        redis.info_number(&["clients"], "connected_clients"),
        2,
        "the daemon's one connection and redis-cli"
    );
}

#[test]
fn redis_down_at_start_then_up() {
    let port = support::free_port();
    let daemon = start(&format!("redis://127.0.0.1:{port}"), &[]);
    support::wait_for_output(daemon.addr, "Connection refused", Duration::from_secs(3));
    assert_eq!(daemon.status("/readyz"), 503);
    assert_eq!(daemon.status("/health"), 503);
    assert_eq!(daemon.status("/startupz"), 503);
    assert_eq!(daemon.status("/livez"), 200, "liveness never depends on Redis");
    assert_eq!(daemon.status("/healthz"), 200, "/healthz is liveness too");

    let _redis = RedisServer::start_on(port, &[]);
    let recovered = daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    println!("ready {recovered:?} after Redis came up");
    assert!(recovered <= INTERVAL + RECONNECT + SLACK, "{recovered:?}");
    assert_eq!(daemon.status("/startupz"), 200);
}

#[test]
fn kill_is_detected_at_once_and_restart_recovers() {
    let mut redis = RedisServer::start();
    let daemon = start(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    redis.kill();
    let detected = daemon.wait_for("/readyz", 503, Duration::from_secs(5));
    println!("kill -9 detected in {detected:?}");
    assert!(detected <= INTERVAL + TIMEOUT + SLACK, "{detected:?}");
    let reason = output(daemon.addr);
    assert!(reason.contains("Connection"), "{reason}");
    assert_eq!(daemon.status("/livez"), 200);
    assert_eq!(daemon.status("/startupz"), 200, "startup stays done");

    // An outage of several intervals: PINGs must not pile up inside the client.
    std::thread::sleep(INTERVAL * 4);
    redis.restart();
    let recovered = daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    println!("restart recovered in {recovered:?}");
    assert!(recovered <= RECOVER, "{recovered:?}");
    let settled = Instant::now();
    std::thread::sleep(INTERVAL);
    let pings = redis.ping_calls();
    let intervals = ((recovered + settled.elapsed()).as_secs_f64() / INTERVAL.as_secs_f64()).ceil() as u64;
    assert!(
        pings <= intervals + 1,
        "{pings} PINGs after restart in {intervals} intervals: a burst"
    );
}

#[test]
fn hung_redis_is_detected_while_probes_stay_fast() {
    let redis = RedisServer::start();
    let daemon = start(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    redis.signal("-STOP");
    let stopped = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut detected = None;
    while stopped.elapsed() < INTERVAL + TIMEOUT + SLACK + Duration::from_millis(500) {
        let sent = Instant::now();
        let status = daemon.status("/readyz");
        slowest = slowest.max(sent.elapsed());
        if status == 503 && detected.is_none() {
            detected = Some(stopped.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let detected = detected.expect("a hung Redis turns /readyz 503");
    println!("SIGSTOP detected in {detected:?}; slowest /readyz while hung {slowest:?}");
    assert!(detected <= INTERVAL + TIMEOUT + SLACK, "{detected:?}");
    assert!(slowest < Duration::from_millis(50), "{slowest:?}");
    assert_eq!(output(daemon.addr), "redis:responseTime: timed out after 200ms");
    assert_eq!(daemon.status("/livez"), 200);

    redis.signal("-CONT");
    let recovered = daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    println!("SIGCONT recovered in {recovered:?}");
    assert!(recovered <= INTERVAL + TIMEOUT + SLACK, "{recovered:?}");
}

#[test]
fn wrong_password_fails_with_wrongpass_and_never_shows_the_secret() {
    let redis = RedisServer::start_with(&["--requirepass", "right-horse-battery"]);
    let url = format!("redis://:wrong-staple-1234@127.0.0.1:{}", redis.port);
    let daemon = start(&url, &[]);
    support::wait_for_output(daemon.addr, "WRONGPASS", Duration::from_secs(5));
    assert_eq!(daemon.status("/readyz"), 503);
    for path in ["/livez", "/readyz", "/startupz", "/health", "/healthz", "/nope"] {
        let reply = daemon.get(path);
        assert!(
            !reply.body.contains("wrong-staple-1234"),
            "{path}: {}",
            reply.body
        );
        assert!(!reply.head.contains("wrong-staple-1234"), "{path}");
    }
    let doc = daemon.get("/health").json();
    assert_eq!(
        doc["checks"]["redis:responseTime"][0]["componentId"],
        format!("redis://:***@127.0.0.1:{}", redis.port)
    );
}

#[test]
fn password_file_overrides_the_url() {
    let redis = RedisServer::start_with(&["--requirepass", "right-horse-battery"]);
    let file = support::write_file(redis.dir(), "password", "right-horse-battery\n");
    let url = format!("redis://:stale-url-secret@127.0.0.1:{}", redis.port);
    let daemon = start(&url, &["--redis-password-file", file.to_str().unwrap()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
}

#[test]
fn no_password_against_requirepass_fails_with_noauth() {
    let redis = RedisServer::start_with(&["--requirepass", "right-horse-battery"]);
    let daemon = start(&redis.url(), &[]);
    support::wait_for_output(daemon.addr, "NOAUTH", Duration::from_secs(5));
    assert_eq!(daemon.status("/readyz"), 503);
}

#[test]
fn loading_redis_is_not_ready_until_loaded() {
    let mut loading = RedisServer::loading();
    let daemon = start(&loading.url(), &[]);
    support::wait_for_output(daemon.addr, "LOADING", Duration::from_secs(5));
    assert_eq!(daemon.status("/readyz"), 503);
    let verbose = daemon.get("/readyz?verbose");
    // Redis's own reason, matched by its first word (Valkey words the rest differently).
    assert!(
        verbose.body.contains("[-]redis:responseTime failed: LOADING "),
        "{}",
        verbose.body
    );
    assert_eq!(daemon.status("/livez"), 200);
    // How far, and how long yet, from the INFO sent alongside the PING.
    let progress = support::wait_for_output(daemon.addr, "% loaded, about ", Duration::from_secs(5));
    println!("while loading: {progress}");
    assert!(progress.ends_with(" s left by its estimate)"), "{progress}");
    assert_eq!(daemon.status("/startupz"), 503);
    let loaded = daemon.wait_for("/readyz", 200, Duration::from_secs(30));
    println!("ready {loaded:?} after LOADING was seen");
    assert_eq!(loading.cli(&["DBSIZE"]), "50000");
    loading.kill();
}

#[test]
fn failure_threshold_counts_intervals_not_reconnect_attempts() {
    let mut redis = RedisServer::start();
    let daemon = start(
        &redis.url(),
        &["--failure-threshold", "3", "--success-threshold", "2"],
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    redis.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(3), "a tolerated failure", || {
        daemon.get("/health").json()["status"] == "warn"
    });
    assert_eq!(
        daemon.status("/readyz"),
        200,
        "a tolerated failure is still ready"
    );
    assert!(
        output(daemon.addr).contains("failures tolerated"),
        "{}",
        output(daemon.addr)
    );
    daemon.wait_for("/readyz", 503, Duration::from_secs(5));
    let failed = killed.elapsed();
    println!("failure threshold 3 reached {failed:?} after kill");
    // The failures at kill, kill + interval and kill + 2 intervals.
    assert!(failed >= INTERVAL * 2 - Duration::from_millis(100), "{failed:?}");
    assert!(failed <= INTERVAL * 2 + TIMEOUT + SLACK, "{failed:?}");

    redis.restart();
    let restarted = Instant::now();
    support::wait_for_output(daemon.addr, "recovering", Duration::from_secs(3));
    assert_eq!(daemon.status("/readyz"), 503, "one pass of two is not ready yet");
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    println!(
        "success threshold 2 reached {:?} after restart",
        restarted.elapsed()
    );
}

#[test]
fn slow_pong_is_warn_and_still_ready() {
    let redis = RedisServer::start();
    // Any real round trip is slower than a microsecond.
    let daemon = start(&redis.url(), &["--warn-latency", "1us"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let doc = daemon.get("/health").json();
    assert_eq!(doc["status"], "warn");
    assert!(doc["output"].as_str().unwrap().contains("slow PONG"), "{doc}");
    assert_eq!(doc["checks"]["redis:responseTime"][0]["status"], "warn");
    assert_eq!(daemon.status("/startupz"), 200);
}

/// Every answer says `X-Content-Type-Options: nosniff`; the status page also carries a strict
/// `Content-Security-Policy` (no script, nothing from elsewhere, only its own style by hash).
#[test]
fn every_answer_is_nosniff_and_the_page_has_a_strict_policy() {
    let redis = RedisServer::start();
    let daemon = start(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    for path in [
        "/livez",
        "/readyz",
        "/startupz",
        "/health",
        "/metrics",
        "/readyz/redis:role",
        "/nope",
        "/",
    ] {
        let reply = daemon.get(path);
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
    let page = support::get_with(daemon.addr, "/", &[("Accept", "text/html")]);
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.starts_with("default-src 'none'; style-src 'sha256-"),
        "{policy}"
    );
    assert!(
        !policy.contains("unsafe") && !policy.contains("script-src"),
        "{policy}"
    );
    assert!(daemon.get("/health").header("content-security-policy").is_none());
}

/// At the default flags (a 2 s interval) a crash shows from the socket event, not at the next
/// check, and not a reconnect delay (100 ms) after the check before it either: each kill lands
/// just after an interval's check.
#[test]
fn a_crash_just_after_a_check_shows_within_100_ms_at_the_default_interval() {
    let mut redis = RedisServer::start();
    let daemon = support::Daemon::start(&["--redis-url", &redis.url()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let last_check = || support::entry(daemon.addr, "redis:responseTime")["time"].clone();
    let mut fastest = Duration::MAX;
    for round in 1..=3 {
        let before = last_check();
        wait_until(Duration::from_secs(5), "the next check", || {
            last_check() != before
        });
        redis.kill();
        let killed = Instant::now();
        daemon.wait_for("/readyz", 503, Duration::from_secs(3));
        let seen = killed.elapsed();
        println!("crash {round}, just after a check: not ready after {seen:?}");
        assert!(seen <= Duration::from_millis(100) + SLACK, "{seen:?}");
        fastest = fastest.min(seen);
        redis.restart();
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    // Waiting a reconnect delay after the check before would put every kill at 85 ms or more.
    assert!(fastest < Duration::from_millis(70), "{fastest:?}");
}
