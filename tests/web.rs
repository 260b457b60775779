//! `--web.config.file` with real clients: curl over HTTPS with and without the CA, with and
//! without a client certificate, with a wrong and a right password; a kubelet-style probe
//! without credentials; a real Prometheus scraping `/metrics` over HTTPS with basic auth; the
//! certificate rotated on disk and served without a restart; a bad file at start (exit 2
//! naming the key) and at a reload (the last good set kept).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{run_binary, wait_until, Certs, DaemonProcess, Prometheus, RedisServer};

const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret-pw";

/// A web configuration: HTTPS with the test certificates, one basic-auth user, and `extra`.
fn web_config(certs: &Certs, extra: &str) -> std::path::PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    support::write_file(
        &certs.path(""),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra}\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  {USER}: {hash}\n"
        ),
    )
}

fn daemon_with(web: &Path, redis: &RedisServer) -> DaemonProcess {
    let mut flags = vec![
        "--redis-url".to_owned(),
        redis.url(),
        "--web.config.file".into(),
        web.display().to_string(),
    ];
    flags.extend(support::FAST.iter().map(|s| s.to_string()));
    DaemonProcess::spawn(&flags.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// curl's exit code, HTTP status (0 when none) and body.
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

#[test]
fn https_and_basic_auth_with_real_clients() {
    let certs = Certs::make();
    let redis = RedisServer::start();
    let web = web_config(&certs, "");
    let daemon = daemon_with(&web, &redis);
    let base = format!("https://127.0.0.1:{}", daemon.addr.port());
    let ca = certs.arg("ca.pem");
    let auth = format!("{USER}:{PASSWORD}");
    wait_until(Duration::from_secs(5), "ready over HTTPS", || {
        curl(&["--cacert", &ca, &format!("{base}/readyz")]).1 == 200
    });

    // The kubelet: no credentials (and no CA: it does not verify). The status, no details.
    let (_, status, body) = curl(&["-k", &format!("{base}/readyz")]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"pass"}"#));
    for path in ["/livez", "/healthz", "/startupz"] {
        assert_eq!(curl(&["-k", &format!("{base}{path}")]).1, 200, "{path}");
    }
    // Everything else needs the password.
    for path in [
        "/health",
        "/metrics",
        "/readyz?verbose",
        "/readyz/redis:role",
        "/",
    ] {
        let (_, status, body) = curl(&["--cacert", &ca, &format!("{base}{path}")]);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!body.contains("redis://"), "{path}: {body}");
        let wrong = curl(&[
            "--cacert",
            &ca,
            "-u",
            &format!("{USER}:nope"),
            &format!("{base}{path}"),
        ]);
        assert_eq!(wrong.1, 401, "{path} with a wrong password");
        let (_, status, body) = curl(&["--cacert", &ca, "-u", &auth, &format!("{base}{path}")]);
        assert!(matches!(status, 200 | 404), "{path}: {status} {body}");
    }
    let (_, status, body) = curl(&["--cacert", &ca, "-u", &auth, &format!("{base}/health")]);
    assert_eq!(status, 200);
    assert!(body.contains("redis:responseTime"), "{body}");
    // The web configuration's headers, on top of the daemon's own.
    let head = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &ca,
            &format!("{base}/readyz"),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(
        head.contains("x-frame-options: deny") && head.contains("x-content-type-options: nosniff"),
        "{head}"
    );
    // Without the CA the client refuses the server (curl: 60, certificate problem).
    assert_eq!(curl(&[&format!("{base}/readyz")]).0, 60);
    // Plain HTTP to the HTTPS port gets nothing useful.
    assert_eq!(
        support::try_request(daemon.addr, "GET", "/readyz")
            .map(|r| r.status)
            .unwrap_or(0),
        0
    );

    // The image's HEALTHCHECK: `check` follows the web configuration to https://.
    let listen = format!("127.0.0.1:{}", daemon.addr.port());
    let env = [
        ("REDIS_HEALTHD_LISTEN", listen.as_str()),
        ("REDIS_HEALTHD_WEB_CONFIG_FILE", web.to_str().unwrap()),
    ];
    let (code, stdout, _) = run_binary(&["check", "/readyz"], &env);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with(&format!("ok: 200 OK from https://{listen}/readyz")),
        "{stdout}"
    );

    // bcrypt is checked once per credentials: 200 authenticated requests take little time.
    let started = Instant::now();
    let hits: Vec<u16> = (0..20)
        .map(|_| curl(&["--cacert", &ca, "-u", &auth, &format!("{base}/metrics")]).1)
        .collect();
    assert!(hits.iter().all(|s| *s == 200), "{hits:?}");
    println!(
        "20 authenticated scrapes over HTTPS (curl each) in {:?}",
        started.elapsed()
    );
    assert!(!daemon.log().contains(PASSWORD));
}

#[test]
fn client_certificates_are_required_when_the_file_says_so() {
    let certs = Certs::make();
    let redis = RedisServer::start();
    let web = web_config(
        &certs,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let daemon = daemon_with(&web, &redis);
    let base = format!("https://127.0.0.1:{}", daemon.addr.port());
    let (ca, cert, key) = (
        certs.arg("ca.pem"),
        certs.arg("client.pem"),
        certs.arg("client.key"),
    );
    let with_cert = || {
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &format!("{base}/readyz"),
        ])
    };
    wait_until(Duration::from_secs(5), "ready with a client certificate", || {
        with_cert().1 == 200
    });
    let (code, status, _) = curl(&["--cacert", &ca, &format!("{base}/readyz")]);
    assert_eq!(
        status, 0,
        "no HTTP answer without a client certificate (curl exit {code})"
    );
    // A certificate from another CA is refused too.
    certs.sh("openssl req -newkey rsa:2048 -nodes -keyout other.key -out other.csr -subj /CN=other 2>/dev/null
        openssl x509 -req -in other.csr -CA rogue.pem -CAkey rogue.key -CAcreateserial -out other.pem -days 2 2>/dev/null");
    let other = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &certs.arg("other.pem"),
        "--key",
        &certs.arg("other.key"),
        &format!("{base}/readyz"),
    ]);
    assert_eq!(other.1, 0);
}

#[test]
fn prometheus_scrapes_over_https_with_basic_auth() {
    let certs = Certs::make();
    let redis = RedisServer::start();
    let web = web_config(&certs, "");
    let daemon = daemon_with(&web, &redis);
    let target = format!("127.0.0.1:{}", daemon.addr.port());
    let job = |name: &str, password: &str| {
        format!(
            "- job_name: {name}\n  scheme: https\n  tls_config:\n    ca_file: {}\n  basic_auth:\n    \
             username: {USER}\n    password: {password}\n  static_configs:\n  - targets: ['{target}']\n",
            certs.arg("ca.pem")
        )
    };
    let prometheus = Prometheus::start(&(job("healthd", PASSWORD) + &job("wrong", "nope")));
    wait_until(Duration::from_secs(20), "both scraped", || {
        prometheus.value("up{job=\"healthd\"}") == Some(1.0)
            && prometheus.value("up{job=\"wrong\"}") == Some(0.0)
    });
    wait_until(Duration::from_secs(10), "the daemon's series", || {
        prometheus.value("redis_healthd_up{job=\"healthd\"}") == Some(1.0)
    });
}

#[test]
fn a_rotated_certificate_is_served_and_a_bad_change_keeps_the_last_good_one() {
    let certs = Certs::make();
    let redis = RedisServer::start();
    let web = web_config(&certs, "");
    let daemon = daemon_with(&web, &redis);
    let port = daemon.addr.port();
    let subject = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -subject"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_until(Duration::from_secs(5), "the first certificate", || {
        subject().contains("redis.test")
    });
    let reload_errors = || {
        let auth = format!("{USER}:{PASSWORD}");
        let (_, _, body) = curl(&["-k", "-u", &auth, &format!("https://127.0.0.1:{port}/metrics")]);
        body.lines()
            .find_map(|l| {
                l.strip_prefix("redis_healthd_config_reload_errors_total{target=\"web.config.file\"} ")
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(reload_errors(), 0.0);

    // cert-manager renews in place: a new key and certificate, the files swapped.
    certs.sh("printf 'subjectAltName=IP:127.0.0.1\\n' > rotated.ext
        openssl req -newkey rsa:2048 -nodes -keyout rotated.key -out rotated.csr -subj /CN=rotated 2>/dev/null
        openssl x509 -req -in rotated.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out rotated.pem -days 2 -extfile rotated.ext 2>/dev/null
        cp rotated.key server.key.new && cp rotated.pem server.pem.new && mv server.key.new server.key && mv server.pem.new server.pem");
    let rotated = Instant::now();
    wait_until(Duration::from_secs(5), "the rotated certificate served", || {
        subject().contains("rotated")
    });
    println!(
        "rotated certificate served {:?} after the swap",
        rotated.elapsed()
    );

    // A bad change: the last good configuration stays, said once, counted once.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_fil: server.key\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(5), "the bad change counted", || {
        reload_errors() == 1.0
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(reload_errors(), 1.0, "one bad change counts once");
    assert!(
        subject().contains("rotated"),
        "still served with the last good set"
    );
    let log = daemon.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("web configuration not reloaded"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("tls_server_config.key_fil"), "{}", said[0]);
}

#[test]
fn a_bad_web_config_exits_2_naming_the_file_and_key() {
    let certs = Certs::make();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let cases = [
        ("tls_server_config:\n  cert_fil: server.pem\n", "tls_server_config.cert_fil: unknown field `cert_fil`"),
        ("tls_server_config:\n  cert_file: server.pem\n", "tls_server_config.key_file: is required"),
        ("tls_server_config:\n  cert_file: nope.pem\n  key_file: server.key\n", "tls_server_config.cert_file: cannot read"),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: is required",
        ),
        ("basic_auth_users:\n  prometheus: hunter2\n", "basic_auth_users.prometheus: is not a bcrypt hash"),
        ("http_server_config:\n  headers:\n    Server: me\n", "http_server_config.headers.Server: not a header"),
        (&format!("basic_auth_users:\n  {USER}: {hash}\nrate_limit:\n  interval: soon\n"), "rate_limit.interval"),
    ];
    for (yaml, expected) in cases {
        let file = support::write_file(&certs.path(""), "bad.yml", yaml);
        let (code, _, stderr) = run_binary(
            &["--check-config", "--web.config.file", file.to_str().unwrap()],
            &[],
        );
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: --web.config.file: {}: {expected}",
                file.display()
            )),
            "{yaml}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let (code, _, stderr) = run_binary(
        &["--web.config.file", "/nonexistent/web.yml"],
        &[("REDIS_HEALTHD_LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("/nonexistent/web.yml: cannot read it"),
        "{stderr}"
    );
}

/// The Kubernetes example's web.yml, as shipped (certificate paths pointed at test files): the
/// probes answer without credentials, and the PodMonitor's Secret's password opens /metrics.
#[test]
fn the_kubernetes_example_web_config_works_as_shipped() {
    let certs = Certs::make();
    let shipped = include_str!("../deploy/kubernetes/web-tls/web.yml")
        .replace("/etc/redis-healthd/tls/tls.crt", &certs.arg("server.pem"))
        .replace("/etc/redis-healthd/tls/tls.key", &certs.arg("server.key"));
    let web = support::write_file(&certs.path(""), "shipped.yml", &shipped);
    let secret = include_str!("../deploy/kubernetes/web-tls/scrape-secret.yaml");
    let field = |name: &str| {
        secret
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in scrape-secret.yaml"))
            .to_owned()
    };
    let (user, password) = (field("username"), field("password"));
    let redis = RedisServer::start();
    let daemon = daemon_with(&web, &redis);
    let base = format!("https://127.0.0.1:{}", daemon.addr.port());
    wait_until(Duration::from_secs(5), "ready as the kubelet probes", || {
        curl(&["-k", &format!("{base}/readyz")]).1 == 200
    });
    assert_eq!(curl(&["-k", &format!("{base}/metrics")]).1, 401);
    let (_, status, body) = curl(&[
        "-k",
        "-u",
        &format!("{user}:{password}"),
        &format!("{base}/metrics"),
    ]);
    assert_eq!(status, 200);
    assert!(body.contains("redis_healthd_up{target=\"redis\"} 1"), "{body}");
    let kustomization = include_str!("../deploy/kubernetes/web-tls/kustomization.yaml");
    assert_eq!(
        kustomization.matches("value: HTTPS").count(),
        3,
        "every probe over HTTPS"
    );
}

/// The web configuration turned into a file that hangs (a FIFO with no writer: a stuck mount):
/// HTTPS goes on with the last good set, every answer stays quick, the reason is said once, and
/// one thread at most waits on the file however many reload rounds pass.
#[test]
fn a_web_config_that_hangs_freezes_nothing() {
    let certs = Certs::make();
    let redis = RedisServer::start();
    let web = web_config(&certs, "");
    let daemon = daemon_with(&web, &redis);
    let base = format!("https://127.0.0.1:{}", daemon.addr.port());
    wait_until(Duration::from_secs(5), "ready over HTTPS", || {
        curl(&["-k", &format!("{base}/readyz")]).1 == 200
    });
    let threads = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap()
    };
    let before = threads();
    support::replace_with_fifo(&web);
    let until = Instant::now() + Duration::from_secs(5);
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let asked = Instant::now();
        assert_eq!(curl(&["-k", &format!("{base}/readyz")]).1, 200);
        slowest = slowest.max(asked.elapsed());
    }
    println!("slowest /readyz over HTTPS while the web configuration hangs: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    let log = daemon.log();
    let said = log
        .lines()
        .filter(|l| l.contains("web configuration not reloaded") && l.contains("took longer than 1s"))
        .count();
    assert_eq!(said, 1, "{log}");
    assert!(threads() <= before + 1, "{} threads, {before} before", threads());
}
