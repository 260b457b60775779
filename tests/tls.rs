//! `rediss://` against a real TLS redis-server, with throwaway certificates made by the
//! `openssl` command: a private CA, server-name checks, mutual TLS, and the failures (unknown
//! CA, wrong name, plain-text port) as failing checks with a clear reason, never a crash and
//! never plain text.

mod support;

use std::path::{Path, PathBuf};
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
            // IPv6 loopback too: a client connecting by an address the certificate lacks.
            "--bind",
            "127.0.0.1",
            "::1",
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

/// The daemon's flags for mutual TLS with the test CA and client certificate.
fn client_flags(certs: &Certs) -> [String; 6] {
    [
        "--tls-ca-file".into(),
        certs.arg("ca.pem"),
        "--tls-cert-file".into(),
        certs.arg("client.pem"),
        "--tls-key-file".into(),
        certs.arg("client.key"),
    ]
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
    let reason = assert_fails_with(
        &rogue,
        &["TLS: the server's certificate is not signed by a CA this daemon trusts: give the CA that signed it with --tls-ca-file"],
    );
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
    let reason = assert_fails_with(
        &wrong_name,
        &["TLS: the server's certificate is for redis.test, 127.0.0.1, not other.test: set --tls-server-name"],
    );
    println!("wrong name: {reason}");
    // Connected by IP to a certificate without that IP: the address is the name expected.
    let by_ip = start_fast(
        &format!("rediss://[::1]:{}", redis.port),
        &["--tls-ca-file", &certs.arg("ca.pem")],
    );
    let reason = assert_fails_with(
        &by_ip,
        &["TLS: the server's certificate is for redis.test, 127.0.0.1, not ::1: set --tls-server-name"],
    );
    println!("connected by an IP it lacks: {reason}");
    for reason in [reason, output(rogue.addr), output(wrong_name.addr)] {
        for debug in [
            "Context",
            "DnsName",
            "IpAddress",
            "Ipv4Addr",
            "UnknownIssuer",
            "{",
        ] {
            assert!(!reason.contains(debug), "a library's Debug text in {reason}");
        }
    }
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
        &["TLS: the server asks for a client certificate: give one with --tls-cert-file and --tls-key-file"],
    );
    println!("mTLS without a client certificate: {reason}");
    let flags = client_flags(&certs);
    let with = start_fast(
        &rediss(&redis),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
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

/// A directory laid out as the kubelet mounts a Secret (and cert-manager renews one): each
/// file is a link through `..data`, which is swapped atomically to a new version directory.
struct SecretVolume {
    dir: tempfile::TempDir,
    version: u32,
}

impl SecretVolume {
    /// `files`: (name in the volume, path of its contents).
    fn new(files: &[(&str, PathBuf)]) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.path().join(name)).unwrap();
        }
        volume
    }

    /// Writes a new version and swaps `..data` to it in one rename.
    fn update(&mut self, files: &[(&str, PathBuf)]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.path().join(&version)).unwrap();
        for (name, from) in files {
            std::fs::copy(from, self.dir.path().join(&version).join(name)).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    fn arg(&self, name: &str) -> String {
        arg(&self.dir.path().join(name))
    }

    /// The daemon's TLS flags, read from this volume.
    fn flags(&self) -> Vec<String> {
        [
            ("--tls-ca-file", "ca.crt"),
            ("--tls-cert-file", "tls.crt"),
            ("--tls-key-file", "tls.key"),
        ]
        .iter()
        .flat_map(|(flag, name)| [flag.to_string(), self.arg(name)])
        .collect()
    }
}

/// A second CA with its own server and client certificates: what a rotation moves to.
fn make_rotated(certs: &Certs) {
    certs.sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca2.key -out ca2.pem -days 30 -subj /CN=test-ca-2 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server2.key -out server2.csr -subj /CN=redis.test 2>/dev/null
        openssl x509 -req -in server2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -out server2.pem -days 20 -extfile server.ext 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client2.key -out client2.csr -subj /CN=redis-healthd 2>/dev/null
        openssl x509 -req -in client2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -out client2.pem -days 10 -extfile client.ext 2>/dev/null");
}

/// redis-server with mutual TLS on a TLS port, and its plain port for redis-cli.
fn mutual_tls_redis(certs: &Certs, tls_port: u16, server: &str) -> RedisServer {
    RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &certs.arg(&format!("{server}.pem")),
        "--tls-key-file",
        &certs.arg(&format!("{server}.key")),
        "--tls-ca-cert-file",
        &certs.arg("ca.pem"),
        "--tls-auth-clients",
        "yes",
    ])
}

const CLIENT_EXPIRY: &str = "redis_healthd_tls_cert_not_after_seconds{target=\"redis\",cert=\"client\"}";
const SERVER_EXPIRY: &str = "redis_healthd_tls_cert_not_after_seconds{target=\"redis\",cert=\"server\"}";

#[test]
fn rotated_certificates_are_used_at_the_next_reconnection_without_a_restart() {
    let certs = Certs::make();
    make_rotated(&certs);
    let tls_port = free_port();
    let redis = mutual_tls_redis(&certs, tls_port, "server");
    let first = |name: &str| certs.path(name);
    let mut volume = SecretVolume::new(&[
        ("ca.crt", first("ca.pem")),
        ("tls.crt", first("client.pem")),
        ("tls.key", first("client.key")),
    ]);
    let flags = volume.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = start_fast(&format!("rediss://127.0.0.1:{tls_port}"), &flags);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    assert_eq!(
        support::metric(daemon.addr, CLIENT_EXPIRY),
        certs.not_after("client.pem")
    );
    assert_eq!(
        support::metric(daemon.addr, SERVER_EXPIRY),
        certs.not_after("server.pem")
    );

    // Redis moves to the new CA (its own certificate and the clients it trusts), and the
    // Secret is renewed in place: the connection already made carries on.
    let (server2, key2, ca2) = (
        certs.arg("server2.pem"),
        certs.arg("server2.key"),
        certs.arg("ca2.pem"),
    );
    assert_eq!(
        redis.cli(&[
            "CONFIG",
            "SET",
            "tls-cert-file",
            &server2,
            "tls-key-file",
            &key2,
            "tls-ca-cert-file",
            &ca2
        ]),
        "OK"
    );
    volume.update(&[
        ("ca.crt", first("ca2.pem")),
        ("tls.crt", first("client2.pem")),
        ("tls.key", first("client2.key")),
    ]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(daemon.status("/readyz"), 200);

    // The next connection reads the new files: the old ones would fail both ways now.
    let connections = redis.info_number(&["stats"], "total_connections_received");
    let killed = Instant::now();
    assert_ne!(redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]), "0");
    let took = wait_until(
        Duration::from_secs(5),
        "a new TLS connection with the new files",
        || support::metric(daemon.addr, SERVER_EXPIRY) == certs.not_after("server2.pem"),
    );
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    println!(
        "ready with the rotated files {:?} after CLIENT KILL (server cert seen after {took:?})",
        killed.elapsed()
    );
    assert!(redis.info_number(&["stats"], "total_connections_received") > connections);
    assert_eq!(
        support::metric(daemon.addr, CLIENT_EXPIRY),
        certs.not_after("client2.pem")
    );
    assert_eq!(
        support::metric(
            daemon.addr,
            "redis_healthd_config_reload_errors_total{target=\"redis\"}"
        ),
        0.0
    );
    let health = daemon.get("/health").json();
    assert_eq!(health["status"], "pass", "{health}");
}

#[test]
fn a_malformed_file_at_reload_keeps_the_last_good_set_and_says_so_once() {
    let certs = Certs::make();
    let tls_port = free_port();
    let redis = mutual_tls_redis(&certs, tls_port, "server");
    let good = [
        ("ca.crt", certs.path("ca.pem")),
        ("tls.crt", certs.path("client.pem")),
        ("tls.key", certs.path("client.key")),
    ];
    let mut volume = SecretVolume::new(&good);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let mut flags = vec!["--redis-url".to_owned(), url];
    flags.extend(volume.flags());
    flags.extend(support::FAST.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = support::DaemonProcess::spawn(&flags, &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));

    // A renewal that wrote a broken certificate (the key stays good).
    let broken = support::write_file(
        volume.dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    volume.update(&[
        ("ca.crt", certs.path("ca.pem")),
        ("tls.crt", broken),
        ("tls.key", certs.path("client.key")),
    ]);
    daemon.signal("-HUP");
    wait_until(Duration::from_secs(5), "a counted reload error", || {
        support::metric(
            daemon.addr,
            "redis_healthd_config_reload_errors_total{target=\"redis\"}",
        ) >= 1.0
    });
    // More reconnections, each reading the files again: still the last good set, still ready.
    for _ in 0..3 {
        // The verdict holds while the daemon reconnects: wait for its connection itself.
        wait_until(
            support::RECONNECT_WINDOW + Duration::from_secs(2),
            "the daemon reconnected",
            || !redis.established_clients().is_empty(),
        );
        assert!(redis.kill_established_clients() >= 1);
        support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(3));
    }
    let errors = support::metric(
        daemon.addr,
        "redis_healthd_config_reload_errors_total{target=\"redis\"}",
    );
    assert!(errors >= 4.0, "{errors}");
    let log = daemon.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS files not reloaded"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("file=\"cert\"")
            && warnings[0].contains("tls.crt is not a valid X.509 certificate"),
        "{}",
        warnings[0]
    );
    println!("{errors} failed reloads, logged once: {}", warnings[0]);

    // Fixed: no more errors.
    volume.update(&good);
    daemon.signal("-HUP");
    std::thread::sleep(Duration::from_millis(700));
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(3));
    let after = support::metric(
        daemon.addr,
        "redis_healthd_config_reload_errors_total{target=\"redis\"}",
    );
    wait_until(
        support::RECONNECT_WINDOW + Duration::from_secs(2),
        "the daemon reconnected",
        || !redis.established_clients().is_empty(),
    );
    assert!(redis.kill_established_clients() >= 1);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(3));
    assert_eq!(
        support::metric(
            daemon.addr,
            "redis_healthd_config_reload_errors_total{target=\"redis\"}"
        ),
        after
    );
}

#[test]
fn an_expired_server_certificate_fails_with_the_reason() {
    let certs = Certs::make();
    // `openssl ca` is the one openssl 3.0 command that takes explicit dates.
    certs.sh("touch index.txt && echo 01 > serial
        printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\npolicy=p\\ndefault_md=sha256\\n[p]\\ncommonName=supplied\\n' > ca.cnf
        openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key -in server.csr -out expired.pem \
            -startdate 20250101000000Z -enddate 20250102000000Z -extfile server.ext 2>/dev/null
        cp server.key expired.key");
    let tls_port = free_port();
    let _redis = mutual_tls_redis(&certs, tls_port, "expired");
    let flags = client_flags(&certs);
    let daemon = start_fast(
        &format!("rediss://127.0.0.1:{tls_port}"),
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let reason = assert_fails_with(
        &daemon,
        &["TLS: the server's certificate expired: not valid after 2025-01-02T00:00:00Z; renew it on the server"],
    );
    println!("expired server certificate: {reason}");
    assert_eq!(support::metric(daemon.addr, SERVER_EXPIRY), 1_735_776_000.0);
    assert_eq!(certs.not_after("expired.pem"), 1_735_776_000.0);
}

/// A TLS file that hangs (a FIFO with no writer: a stuck mount) freezes nothing: the files
/// are read off the runtime thread, the handshake uses the last good set, and every endpoint
/// keeps answering through a Redis restart and a SIGHUP.
#[test]
fn a_tls_file_that_hangs_freezes_nothing_and_the_last_good_set_is_used() {
    let certs = Certs::make();
    let mut redis = tls_redis(&certs, false);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(certs.path("ca.pem"), &ca).unwrap();
    let url = rediss(&redis);
    let ca_arg = arg(&ca);
    let mut flags = vec!["--redis-url", &url, "--tls-ca-file", &ca_arg];
    flags.extend_from_slice(&support::FAST);
    let daemon = support::DaemonProcess::spawn(&flags, &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    support::replace_with_fifo(&ca);
    redis.restart();
    daemon.signal("-HUP");
    let mut ready = false;
    let slowest = support::sample_endpoints(daemon.addr, Duration::from_secs(3), |path, reply| {
        ready |= path == "/readyz" && reply.status == 200;
    });
    println!("a hung CA file: slowest answer {slowest:?}, ready again: {ready}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(ready, "the reconnection uses the last good set");
    // SIGHUP says the files could not be read, and why the old ones are used.
    let log = daemon.log();
    assert!(
        log.contains("TLS files not read within 200ms") || log.contains("TLS files still being read"),
        "{log}"
    );
}
