//! `/metrics` as Prometheus sees it: a real Prometheus server scrapes the daemon (OpenMetrics
//! directly, the classic text format through an in-test proxy that rewrites `Accept`), and
//! `promtool check metrics` lints the live classic output.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{require, wait_until, Daemon, Prometheus, RedisServer};

/// An HTTP proxy for Prometheus's `proxy_url` that forwards each scrape to `target` with
/// `Accept: text/plain;version=0.0.4`, so Prometheus 2.42 (which always prefers OpenMetrics)
/// parses the classic format. Records the content types the daemon answered with.
fn classic_format_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut head = String::new();
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // "GET http://host:port/metrics HTTP/1.1" -> "GET /metrics HTTP/1.1"
            let mut parts = request_line.split_whitespace();
            let (method, uri) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or("/"));
            let path = uri
                .splitn(4, '/')
                .nth(3)
                .map_or("/".to_string(), |p| format!("/{p}"));
            head.push_str(&format!("{method} {path} HTTP/1.1\r\n"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let name = line.split(':').next().unwrap_or_default().to_ascii_lowercase();
                if !["accept", "connection", "proxy-connection"].contains(&name.as_str()) {
                    head.push_str(&line);
                }
            }
            head.push_str("Accept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n");
            let Ok(mut upstream) = TcpStream::connect(target) else {
                continue;
            };
            let _ = upstream.write_all(head.as_bytes());
            let mut response = Vec::new();
            let _ = upstream.read_to_end(&mut response);
            let text = String::from_utf8_lossy(&response);
            if let Some(content_type) = text.lines().find_map(|l| l.strip_prefix("content-type: ")) {
                log.lock().unwrap().push(content_type.to_string());
            }
            let mut client = client;
            let _ = client.write_all(&response);
        }
    });
    (addr, seen)
}

#[test]
fn prometheus_scrapes_both_formats_and_sees_redis_go_down() {
    let mut redis = RedisServer::start();
    let daemon = support::start_fast(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let (proxy, content_types) = classic_format_proxy(daemon.addr);
    let prometheus = Prometheus::start(&format!(
        "  - job_name: openmetrics\n    static_configs: [{{targets: ['{daemon}']}}]\n\
         \x20 - job_name: classic\n    proxy_url: http://{proxy}\n    static_configs: [{{targets: ['{daemon}']}}]\n",
        daemon = daemon.addr,
    ));

    for job in ["openmetrics", "classic"] {
        wait_until(
            Duration::from_secs(30),
            &format!("{job}: redis_healthd_up == 1"),
            || prometheus.value(&format!("redis_healthd_up{{job=\"{job}\"}}")) == Some(1.0),
        );
        assert_eq!(
            prometheus.value(&format!("up{{job=\"{job}\"}}")),
            Some(1.0),
            "{job} scrapes cleanly"
        );
        assert_eq!(
            prometheus.value(&format!("redis_healthd_ready{{job=\"{job}\"}}")),
            Some(1.0)
        );
        let samples = prometheus
            .value(&format!("scrape_samples_scraped{{job=\"{job}\"}}"))
            .unwrap();
        assert!(samples >= 30.0, "{job}: {samples} samples");
        let checks = prometheus
            .value(&format!(
                "redis_healthd_checks_total{{job=\"{job}\",result=\"pass\"}}"
            ))
            .unwrap();
        assert!(checks >= 1.0, "{job}: {checks}");
        assert!(
            prometheus
                .value(&format!("process_resident_memory_bytes{{job=\"{job}\"}}"))
                .unwrap()
                > 0.0
        );
    }
    assert!(
        content_types
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        content_types.lock().unwrap()
    );
    // A histogram quantile works on the scraped buckets.
    wait_until(Duration::from_secs(10), "a PING latency quantile", || {
        let query = "histogram_quantile(0.99, rate(redis_healthd_ping_duration_seconds_bucket{job=\"openmetrics\"}[5s]))";
        prometheus.value(query).is_some_and(|q| q > 0.0 && q < 0.2)
    });

    // Every dashboard query parses and finds data.
    for expr in dashboard_queries() {
        let query = expr.replace("$instance", ".*").replace("$__rate_interval", "5s");
        wait_until(Duration::from_secs(10), &format!("data for {query}"), || {
            prometheus.series(&query) > 0
        });
    }

    redis.kill();
    for job in ["openmetrics", "classic"] {
        wait_until(
            Duration::from_secs(15),
            &format!("{job}: redis_healthd_up == 0"),
            || prometheus.value(&format!("redis_healthd_up{{job=\"{job}\"}}")) == Some(0.0),
        );
        assert_eq!(
            prometheus.value(&format!("redis_healthd_ready{{job=\"{job}\"}}")),
            Some(0.0)
        );
        assert_eq!(
            prometheus.value(&format!("up{{job=\"{job}\"}}")),
            Some(1.0),
            "the daemon itself stays up"
        );
    }
}

#[test]
fn promtool_passes_the_live_classic_output() {
    require("promtool");
    let mut redis = RedisServer::start();
    let daemon = support::start_fast(&redis.url(), &[]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    // Some failures too, so every series has a value.
    redis.kill();
    daemon.wait_for("/readyz", 503, Duration::from_secs(5));
    redis.restart();
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));

    let reply = daemon.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // The crash's check failed: the server refused connections.
    assert!(
        support::metric(
            daemon.addr,
            "redis_healthd_checks_total{target=\"redis\",result=\"unreachable\"}"
        ) >= 1.0,
        "{}",
        reply.body
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(reply.body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

#[test]
fn metrics_negotiates_openmetrics_and_refuses_other_methods() {
    let redis = RedisServer::start();
    let daemon = Daemon::start(&["--redis-url", &redis.url()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(
        raw.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{raw}"
    );
    assert!(raw.contains("cache-control: no-store"), "{raw}");
    assert!(raw.ends_with("# EOF\n"), "{raw}");
    assert_eq!(support::request(daemon.addr, "POST", "/metrics").status, 405);
}

/// Every PromQL expression of the Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/redis-healthd.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 8, "{queries:?}");
    queries
}

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    require("promtool");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {report}");
    report
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus"));
    let report = promtool(&["check", "rules", "alerts.yml"], dir);
    assert!(report.contains("SUCCESS: 10 rules found"), "{report}");
    let report = promtool(&["test", "rules", "alerts_test.yml"], dir);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn example_prometheus_config_is_valid() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus"));
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    // Debian's Prometheus is built without Kubernetes discovery: check everything else by
    // standing a static target in for the two-line `kubernetes_sd_configs` block.
    let sd = "    kubernetes_sd_configs:\n      - role: pod\n";
    assert!(config.contains(sd), "the Kubernetes pod discovery block moved");
    let checkable = config.replace(sd, "    static_configs:\n      - targets: [\"127.0.0.1:8558\"]\n");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("prometheus.yml"), checkable).unwrap();
    std::fs::copy(dir.join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    let report = promtool(&["check", "config", "prometheus.yml"], tmp.path());
    assert!(report.contains("SUCCESS: 10 rules found"), "{report}");
}

#[test]
fn a_scrape_reads_the_process_figures_fresh_and_an_unscraped_daemon_reads_no_proc_file() {
    let redis = RedisServer::start();
    let daemon = support::DaemonProcess::spawn_fast(&redis.url());
    let fds = || support::metric(daemon.addr, "process_open_fds ");
    let before = fds();
    // Connections the daemon holds open: its own descriptor count grows by as many.
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(daemon.addr).unwrap()).collect();
    let mut after = before;
    wait_until(
        Duration::from_secs(5),
        "a scrape counting the held connections",
        || {
            after = fds();
            after >= before + 8.0
        },
    );
    println!("process_open_fds {before} then {after} with 8 connections held");
    drop(held);
    // Between scrapes the daemon reads nothing of /proc/self for its metrics: its checks go
    // on, and no scrape means no blocking thread at all (the only reader of files here).
    let pid = daemon.child.id();
    wait_until(Duration::from_secs(20), "the blocking thread gone", || {
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    assert_eq!(
        threads, 1,
        "a thread appeared between scrapes, with checks every interval"
    );
    assert_eq!(support::get(daemon.addr, "/readyz").status, 200);
}
