//! Soak: the daemon (the release-like binary) for a while with probes at a high rate and Redis
//! flapping; at the end, file descriptors and resident memory are where they were after warm-up
//! and no probe request failed. CI runs the short form (20 s); set REDIS_HEALTHD_SOAK_SECS for
//! a longer one, e.g. `REDIS_HEALTHD_SOAK_SECS=600 cargo test --test soak -- --nocapture`.

mod support;

use std::time::{Duration, Instant};

use support::{fds_and_rss, DaemonProcess, Hammer, RedisServer};

#[test]
fn soak_with_probes_and_a_flapping_redis_stays_flat() {
    let seconds: u64 = std::env::var("REDIS_HEALTHD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let total = Duration::from_secs(seconds);
    let mut redis = RedisServer::start();
    let daemon = DaemonProcess::spawn(
        &[
            "--redis-url",
            &redis.url(),
            "--interval",
            "250ms",
            "--timeout",
            "100ms",
        ],
        &[],
    );
    let addr = daemon.addr;
    support::wait_for(addr, "/readyz", 200, Duration::from_secs(5));
    let hammers = [
        Hammer::start(addr, "/readyz", 2),
        Hammer::start(addr, "/health", 1),
        Hammer::start(addr, "/metrics", 1),
    ];
    let started = Instant::now();
    let mut warm = None;
    let mut outages = 0;
    // Up 0.5–2 s, down 0.1–1 s, in a fixed pseudo-random pattern.
    let mut step = 0u64;
    while started.elapsed() < total {
        step += 1;
        std::thread::sleep(Duration::from_millis(500 + (step * 389) % 1500));
        if warm.is_none() && started.elapsed() >= total / 4 {
            // Sampled connected, as at the end: a reconnection may take up to the reconnect
            // window, and an up phase can be shorter than that.
            support::wait_for(addr, "/readyz", 200, Duration::from_secs(3));
            warm = Some(fds_and_rss(daemon.child.id()));
        }
        redis.kill();
        outages += 1;
        std::thread::sleep(Duration::from_millis(100 + (step * 257) % 900));
        redis.restart();
    }
    support::wait_for(addr, "/readyz", 200, Duration::from_secs(3));
    let mut sent = 0;
    let mut failures = Vec::new();
    for hammer in hammers {
        let (s, f) = hammer.finish();
        sent += s;
        failures.extend(f);
    }
    std::thread::sleep(Duration::from_secs(1));
    let (fds0, rss0) = warm.expect("a warm-up sample");
    let (fds1, rss1) = fds_and_rss(daemon.child.id());
    println!(
        "soak {seconds}s: {outages} outages, {sent} probe requests, fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} probe requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(fds1 <= fds0, "file descriptors grew: {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 512, "resident memory grew: {rss0} -> {rss1} KiB");
    assert!(
        daemon.log().matches("redis check failing").count() <= outages,
        "{}",
        daemon.log()
    );
}
