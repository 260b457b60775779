//! `rediss://` against a real TLS redis-server, with throwaway certificates made by the
//! `openssl` command: a private CA, server-name checks, mutual TLS, and the failures (unknown
//! CA, wrong name, plain-text port) as failing checks with a clear reason, never a crash and
//! never plain text.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{free_port, output, run_binary, start_fast, wait_until, Certs, RedisServer};

/// redis-server with TLS only, on its `port`.
fn tls_redis(certs: &Certs, client_certs: bool) -> RedisServer {
    let port = free_port().to_string();
    let (cert, key, ca) = (
        certs.arg("server.pem"),
        certs.arg("server.key"),
        certs.arg("ca.pem"),
    );
    let auth = if client_certs { "yes" } else { "no" };
    RedisServer::start_on(
        port.parse().unwrap(),
        &[
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            auth,
        ],
    )
}

fn rediss(redis: &RedisServer) -> String {
    format!("rediss://127.0.0.1:{}", redis.port)
}

fn assert_fails_with(daemon: &support::Daemon, needles: &[&str]) -> String {
    let mut reason = String::new();
    wait_until(
        Duration::from_secs(5),
        &format!("a TLS failure ({needles:?})"),
        || {
            reason = output(daemon.addr);
            needles.iter().any(|n| reason.contains(n))
        },
    );
    assert_eq!(daemon.status("/readyz"), 503);
    assert_eq!(daemon.status("/livez"), 200);
    reason
}

#[test]
fn a_private_ca_verifies_the_server_by_ip_or_by_name() {
    let certs = Certs::make();
    let redis = tls_redis(&certs, false);
    let by_ip = start_fast(&rediss(&redis), &["--tls-ca-file", &certs.arg("ca.pem")]);
    by_ip.wait_for("/readyz", 200, Duration::from_secs(5));
    let by_name = start_fast(
        &rediss(&redis),
        &[
            "--tls-ca-file",
            &certs.arg("ca.pem"),
            "--tls-server-name",
            "redis.test",
        ],
    );
    by_name.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        by_name.get("/health").json()["checks"]["redis:responseTime"][0]["componentId"],
        rediss(&redis)
    );
}

#[test]
fn an_unknown_ca_or_a_wrong_name_fails_with_the_reason() {
    let certs = Certs::make();
    let redis = tls_redis(&certs, false);
    let rogue = start_fast(&rediss(&redis), &["--tls-ca-file", &certs.arg("rogue.pem")]);
    let reason = assert_fails_with(&rogue, &["TLS: invalid server certificate: UnknownIssuer"]);
    println!("unknown CA: {reason}");
    let wrong_name = start_fast(
        &rediss(&redis),
        &[
            "--tls-ca-file",
            &certs.arg("ca.pem"),
            "--tls-server-name",
            "other.test",
        ],
    );
    let reason = assert_fails_with(&wrong_name, &["TLS: invalid server certificate: NotValidForName"]);
    println!("wrong name: {reason}");
}

#[test]
fn rediss_against_a_plain_text_port_fails_within_the_timeout() {
    let certs = Certs::make();
    let plain = RedisServer::start();
    let started = Instant::now();
    let daemon = start_fast(
        &format!("rediss://127.0.0.1:{}", plain.port),
        &["--tls-ca-file", &certs.arg("ca.pem")],
    );
    support::wait_for_output(
        daemon.addr,
        "connecting timed out after 200ms",
        Duration::from_secs(3),
    );
    let took = started.elapsed();
    println!(
        "rediss:// to a plain port failed after {took:?}: {}",
        output(daemon.addr)
    );
    assert!(took <= support::DETECT, "{took:?}");
    // Nothing was spoken in plain text: Redis saw no command from the daemon.
    assert_eq!(plain.ping_calls(), 0);
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = Certs::make();
    let redis = tls_redis(&certs, true);
    let without = start_fast(&rediss(&redis), &["--tls-ca-file", &certs.arg("ca.pem")]);
    let reason = assert_fails_with(
        &without,
        &["TLS: the server refused the handshake: CertificateRequired"],
    );
    println!("mTLS without a client certificate: {reason}");
    let with = start_fast(
        &rediss(&redis),
        &[
            "--tls-ca-file",
            &certs.arg("ca.pem"),
            "--tls-cert-file",
            &certs.arg("client.pem"),
            "--tls-key-file",
            &certs.arg("client.key"),
        ],
    );
    with.wait_for("/readyz", 200, Duration::from_secs(5));
}

#[test]
fn bad_tls_files_exit_2_naming_the_flag() {
    let certs = Certs::make();
    let not_pem = certs.path("server.ext");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--tls-ca-file".into(), "/nonexistent/ca.pem".into()],
            "--tls-ca-file",
        ),
        (vec!["--tls-ca-file".into(), arg(&not_pem)], "--tls-ca-file"),
        (
            vec!["--tls-cert-file".into(), certs.arg("client.pem")],
            "--tls-cert-file",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                certs.arg("client.pem"),
                "--tls-key-file".into(),
                certs.arg("server.key"),
            ],
            "--tls-key-file",
        ),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["--redis-url", "rediss://127.0.0.1:6380"];
        args.extend(flags.iter().map(String::as_str));
        let (code, _, stderr) = run_binary(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.lines().next().unwrap().contains(flag),
            "{args:?}: {stderr}"
        );
    }
}

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}
