//! The Prometheus registry and its encoding. The probe task records each check here; a scrape
//! only reads atomics and `/proc/self`, never Redis. The classic text format (0.0.4) is the
//! default; OpenMetrics is served when the `Accept` header asks for it.
//!
//! An encoded body is reused until a check completes, readiness changes, or a second passes, so
//! a flood of scrapes costs at most one encoding (and one `/proc` read) per format per second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::encoding::{prometheus_text, text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::health::{Failure, Status, Verdict};
use crate::names::{target_of, RESPONSE_TIME};
use crate::process::ProcessCollector;
use crate::tls::{TargetLabel, TlsMetrics};

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The labels of `redis_healthd_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    target: &'static str,
    result: &'static str,
}

/// The labels of `redis_healthd_cluster_node_up`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    target: &'static str,
    node: String,
}

/// The labels of `redis_healthd_check_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckStatusLabels {
    target: &'static str,
    check: &'static str,
    status: &'static str,
}

/// Makes each target's PING histogram with the same buckets.
#[derive(Clone, Debug)]
struct PingHistogram {
    timeout: Duration,
}

impl MetricConstructor<Histogram> for PingHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(ping_buckets(self.timeout))
    }
}

/// Every metric the daemon exports, and the registry that encodes them. Every series about
/// Redis has a `target` label.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    up: Family<TargetLabel, Gauge>,
    ready: Gauge,
    ping_duration: Family<TargetLabel, Histogram, PingHistogram>,
    checks: Family<CheckLabels, Counter>,
    consecutive_failures: Family<TargetLabel, Gauge>,
    last_check: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    last_success: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    connection_errors: Family<TargetLabel, Counter>,
    cluster_node_up: Family<NodeLabels, Gauge>,
    /// The nodes each cluster target reported last (to drop the series of former primaries).
    cluster_nodes: Mutex<BTreeMap<&'static str, Vec<String>>>,
    check_status: Family<CheckStatusLabels, Gauge>,
    redis_restarts: Family<TargetLabel, Counter>,
    topology_changes: Family<TargetLabel, Counter>,
    /// Bumped by every recorded check: a cached body from an older generation is stale.
    generation: AtomicU64,
    /// The last body of each format: [classic, OpenMetrics].
    cache: Mutex<[Option<Encoded>; 2]>,
    /// The `process_*` figures, as last read.
    process: ProcessCollector,
}

/// An encoded body and what it was encoded from.
#[derive(Debug)]
struct Encoded {
    at: Instant,
    generation: u64,
    ready: bool,
    body: Bytes,
}

/// How long an encoded body may be served again (process metrics and timestamps age).
const ENCODED_TTL: Duration = Duration::from_secs(1);

/// The histogram's bucket bounds: doubling from 100 µs up to the first bound at or past the
/// PING timeout (a PING never takes longer).
fn ping_buckets(timeout: Duration) -> impl Iterator<Item = f64> {
    let mut count = 1u16;
    while 1e-4 * 2f64.powi(i32::from(count) - 1) < timeout.as_secs_f64() && count < 40 {
        count += 1;
    }
    exponential_buckets(1e-4, 2.0, count)
}

impl Metrics {
    /// The registry, with a zero for each of `targets`' counters and every result.
    pub fn new(timeout: Duration, targets: &[&'static str]) -> Self {
        let up = Family::<TargetLabel, Gauge>::default();
        let ready = Gauge::default();
        let ping_duration = Family::new_with_constructor(PingHistogram { timeout });
        let checks = Family::<CheckLabels, Counter>::default();
        let consecutive_failures = Family::<TargetLabel, Gauge>::default();
        let last_check = Family::<TargetLabel, Gauge<f64, AtomicU64>>::default();
        let last_success = Family::<TargetLabel, Gauge<f64, AtomicU64>>::default();
        let connection_errors = Family::<TargetLabel, Counter>::default();
        let cluster_node_up = Family::<NodeLabels, Gauge>::default();
        let check_status = Family::<CheckStatusLabels, Gauge>::default();
        let redis_restarts = Family::<TargetLabel, Counter>::default();
        let topology_changes = Family::<TargetLabel, Counter>::default();
        for &target in targets {
            for result in ["pass", "warn", "fail", "timeout", "unreachable", "reconnecting"] {
                let _ = checks.get_or_create(&CheckLabels { target, result });
            }
            let _ = connection_errors.get_or_create(&TargetLabel { target });
            let _ = redis_restarts.get_or_create(&TargetLabel { target });
            let _ = topology_changes.get_or_create(&TargetLabel { target });
        }

        let mut registry = Registry::default();
        let process = ProcessCollector::new();
        registry.register_collector(Box::new(process.clone()));
        let sub = registry.sub_registry_with_prefix("redis_healthd");
        sub.register(
            "up",
            "1 if the target's last check passed (for a cluster: on every primary), else 0",
            up.clone(),
        );
        sub.register(
            "ready",
            "1 if /readyz would answer 200 now (thresholds, staleness and shutdown applied)",
            ready.clone(),
        );
        sub.register_with_unit(
            "ping_duration",
            "Round trip of PINGs answered with PONG",
            Unit::Seconds,
            ping_duration.clone(),
        );
        // Registered without `_total`: prometheus-client adds it (and panics in debug builds
        // when the name already ends in it).
        sub.register(
            "checks",
            "Checks run, by result: pass, warn (slow PONG), fail (error or bad reply), timeout",
            checks.clone(),
        );
        sub.register(
            "consecutive_failures",
            "Failed checks in a row (0 after a pass; for a cluster, the most of any node)",
            consecutive_failures.clone(),
        );
        sub.register_with_unit(
            "last_check_timestamp",
            "When the target's last check started, seconds since the Unix epoch",
            Unit::Seconds,
            last_check.clone(),
        );
        sub.register_with_unit(
            "last_success_timestamp",
            "When the target's last passing check started, seconds since the Unix epoch (0 before any)",
            Unit::Seconds,
            last_success.clone(),
        );
        sub.register(
            "connection_errors",
            "Connection-level errors and failed reconnect attempts of the Redis client",
            connection_errors.clone(),
        );
        sub.register(
            "cluster_node_up",
            "Redis Cluster only: 1 per primary whose last check passed (PONG and cluster_state:ok), else 0",
            cluster_node_up.clone(),
        );
        sub.register(
            "check_status",
            "One-hot status of each named check (worst of its components, thresholds applied): \
             1 for the current status (pass, warn, fail), 0 for the others",
            check_status.clone(),
        );
        sub.register(
            "redis_restarts",
            "Times a checked server's run_id changed at the same address: Redis restarted (and \
             may have lost data). Moving to another server is a topology change, never a restart",
            redis_restarts.clone(),
        );
        sub.register(
            "topology_changes",
            "Times a target's checks moved to other servers: a Sentinel failover followed to a \
             new master, or a Redis Cluster's primaries or their slots changed",
            topology_changes.clone(),
        );
        sub.register(
            "build",
            "Build information; the value is always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            up,
            ready,
            ping_duration,
            checks,
            consecutive_failures,
            last_check,
            last_success,
            connection_errors,
            cluster_node_up,
            cluster_nodes: Mutex::new(BTreeMap::new()),
            check_status,
            redis_restarts,
            topology_changes,
            generation: AtomicU64::new(0),
            cache: Mutex::new([None, None]),
            process,
        }
    }

    /// True when a scrape should first [`refresh_process`](Self::refresh_process): the
    /// `process_*` reading is older than the time an encoded body is reused.
    pub fn process_is_stale(&self) -> bool {
        !self.process.is_fresh()
    }

    /// Reads the `process_*` figures again, off the runtime thread, waiting at most `budget`.
    pub async fn refresh_process(&self, budget: Duration) {
        self.process.refresh(budget).await;
    }

    /// Adds the TLS series: certificate expiry and failed reloads of the TLS files.
    pub fn with_tls(mut self, tls: &TlsMetrics) -> Self {
        let sub = self.registry.sub_registry_with_prefix("redis_healthd");
        sub.register_with_unit(
            "tls_cert_not_after",
            "When a certificate expires, seconds since the Unix epoch: cert=client from \
             --tls-cert-file as last read, cert=server as presented at the latest handshake",
            Unit::Seconds,
            tls.not_after.clone(),
        );
        sub.register(
            "config_reload_errors",
            "Reloads that found a file missing or malformed and kept the last good one: a target's \
             TLS files and password file, or (target=\"web.config.file\") the web configuration",
            tls.reload_errors.clone(),
        );
        self
    }

    /// A handle the target's client increments on every connection error.
    pub fn connection_errors(&self, target: &'static str) -> Counter {
        self.connection_errors
            .get_or_create(&TargetLabel { target })
            .clone()
    }

    /// A handle counting `target`'s topology changes (see `topology_changes` above).
    pub fn topology_changes(&self, target: &'static str) -> Counter {
        self.topology_changes
            .get_or_create(&TargetLabel { target })
            .clone()
    }

    /// Records one check round of `target`: the PING metrics from its `responseTime` check
    /// (one component, or one per cluster primary).
    pub fn record(&self, target: &'static str, verdict: &Verdict) {
        let label = TargetLabel { target };
        let mut checked = 0;
        let mut passed = 0;
        let mut failures = 0;
        let mut at = None;
        for state in verdict.components_of(RESPONSE_TIME).map(|c| &c.state) {
            let result = match (&state.outcome.result, state.latest) {
                (Ok(_), Status::Warn) => "warn",
                (Ok(_), _) => "pass",
                (Err(Failure::Timeout(_)), _) => "timeout",
                (Err(Failure::Error(_)), _) => "fail",
                (Err(Failure::Unreachable(_)), _) => "unreachable",
                (Err(Failure::Reconnecting(_)), _) => "reconnecting",
            };
            self.checks.get_or_create(&CheckLabels { target, result }).inc();
            if let Some(rtt) = state
                .outcome
                .result
                .as_ref()
                .ok()
                .and_then(|r| r.value.round_trip())
            {
                self.ping_duration
                    .get_or_create(&label)
                    .observe(rtt.as_secs_f64());
                passed += 1;
            } else if matches!(state.outcome.result, Err(Failure::Reconnecting(_)))
                && state.healthy == Some(true)
            {
                // Redis was up and still accepts connections: only the connection is new.
                passed += 1;
            }
            checked += 1;
            failures = failures.max(state.consecutive_failures);
            at = at.max(Some(state.outcome.at));
        }
        let all_passed = checked > 0 && passed == checked;
        self.up.get_or_create(&label).set(i64::from(all_passed));
        self.consecutive_failures
            .get_or_create(&label)
            .set(i64::from(failures));
        if let Some(at) = at {
            self.last_check.get_or_create(&label).set(epoch_seconds(at));
            let last_success = self.last_success.get_or_create(&label);
            if all_passed {
                last_success.set(epoch_seconds(at));
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records the status of every named check of every target (one-hot); a check no longer
    /// reported (`redis:replication` after a promotion) loses its series.
    pub fn record_statuses(&self, verdict: &Verdict) {
        self.check_status.clear();
        for check in &verdict.checks {
            let worst = check.components.iter().map(|c| c.state.status).max();
            let target = target_of(check.name);
            for (status, label) in [
                (Status::Pass, "pass"),
                (Status::Warn, "warn"),
                (Status::Fail, "fail"),
            ] {
                self.check_status
                    .get_or_create(&CheckStatusLabels {
                        target,
                        check: check.name,
                        status: label,
                    })
                    .set(i64::from(worst == Some(status)));
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Counts a restart of a server of `target` (a new `run_id`).
    pub fn count_restart(&self, target: &'static str) {
        self.redis_restarts.get_or_create(&TargetLabel { target }).inc();
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records which primaries of a cluster target passed the last check (`host:port`,
    /// passed); a node no longer a primary loses its series.
    pub fn record_cluster_nodes<'a>(
        &self,
        target: &'static str,
        nodes: impl IntoIterator<Item = (&'a str, bool)>,
    ) {
        let mut known = self.cluster_nodes.lock().unwrap_or_else(|p| p.into_inner());
        let previous = known.remove(target).unwrap_or_default();
        let mut current = Vec::new();
        for (node, passed) in nodes {
            self.cluster_node_up
                .get_or_create(&NodeLabels {
                    target,
                    node: node.to_owned(),
                })
                .set(i64::from(passed));
            current.push(node.to_owned());
        }
        for node in previous.into_iter().filter(|n| !current.contains(n)) {
            self.cluster_node_up.remove(&NodeLabels { target, node });
        }
        known.insert(target, current);
    }

    /// The encoded metrics and their content type; `ready` is what `/readyz` would answer now.
    pub fn encode(&self, openmetrics: bool, ready: bool) -> (Bytes, &'static str) {
        let content_type = if openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            PROMETHEUS_CONTENT_TYPE
        };
        let generation = self.generation.load(Ordering::Acquire);
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut cache[usize::from(openmetrics)];
        if let Some(cached) = slot {
            if cached.generation == generation && cached.ready == ready && cached.at.elapsed() < ENCODED_TTL {
                return (cached.body.clone(), content_type);
            }
        }
        self.ready.set(i64::from(ready));
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = if openmetrics {
            text::encode(&mut out, &self.registry)
        } else {
            prometheus_text::encode(&mut out, &self.registry)
        };
        let body = Bytes::from(out);
        *slot = Some(Encoded {
            at: Instant::now(),
            generation,
            ready,
            body: body.clone(),
        });
        (body, content_type)
    }
}

/// True when an `Accept` header asks for OpenMetrics (as Prometheus does when it may).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let refused = params.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Component, ComponentState, NamedCheck, ObservedValue, Outcome, Reading};

    /// A verdict of one `check` with one component in this state.
    fn verdict(check: &'static str, result: Result<Duration, Failure>, latest: Status) -> Verdict {
        let state = ComponentState {
            status: latest,
            latest,
            healthy: Some(latest != Status::Fail),
            outcome: Outcome {
                at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                result: result.map(|rtt| Reading::pass(ObservedValue::RoundTrip(rtt))),
            },
            consecutive_failures: u32::from(latest == Status::Fail),
            last_success: None,
            output: None,
            tolerated: false,
        };
        Verdict {
            checks: vec![NamedCheck {
                readiness: true,
                name: check,
                components: vec![Component {
                    id: "redis://127.0.0.1:6379".into(),
                    kind: "datastore",
                    server: None,
                    state,
                }],
            }],
        }
    }

    /// A round of the default target, as its loop and the publisher record it.
    fn record(metrics: &Metrics, verdict: &Verdict) {
        metrics.record("redis", verdict);
        metrics.record_statuses(verdict);
    }

    fn state(result: Result<Duration, Failure>, latest: Status) -> Verdict {
        verdict(crate::names::RESPONSE_TIME, result, latest)
    }

    proptest::proptest! {
        #[test]
        fn any_accept_header_negotiates_without_panicking(accept in "\\PC{0,200}") {
            let openmetrics = wants_openmetrics(Some(&accept));
            proptest::prop_assert!(!openmetrics || accept.to_ascii_lowercase().contains("application/openmetrics-text"));
        }
    }

    #[test]
    fn negotiation_prefers_openmetrics_only_when_asked() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(wants_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }

    #[test]
    fn classic_and_openmetrics_encodings() {
        let metrics = Metrics::new(Duration::from_millis(500), &["redis"]);
        record(&metrics, &state(Ok(Duration::from_micros(250)), Status::Pass));
        record(
            &metrics,
            &state(Err(Failure::Timeout(Duration::from_millis(500))), Status::Fail),
        );
        let (classic, content_type) = metrics.encode(false, true);
        let classic = String::from_utf8(classic.to_vec()).unwrap();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            "redis_healthd_up{target=\"redis\"} 0",
            "redis_healthd_ready 1",
            "redis_healthd_checks_total{target=\"redis\",result=\"pass\"} 1",
            "redis_healthd_checks_total{target=\"redis\",result=\"timeout\"} 1",
            "redis_healthd_checks_total{target=\"redis\",result=\"warn\"} 0",
            "redis_healthd_checks_total{target=\"redis\",result=\"fail\"} 0",
            "redis_healthd_consecutive_failures{target=\"redis\"} 1",
            "redis_healthd_last_check_timestamp_seconds{target=\"redis\"} 1700000000",
            "redis_healthd_ping_duration_seconds_count{target=\"redis\"} 1",
            "redis_healthd_ping_duration_seconds_bucket{target=\"redis\",le=\"0.0004\"} 1",
            "redis_healthd_ping_duration_seconds_bucket{target=\"redis\",le=\"0.0002\"} 0",
            "redis_healthd_ping_duration_seconds_bucket{target=\"redis\",le=\"0.8192\"} 1",
            "redis_healthd_connection_errors_total{target=\"redis\"} 0",
            "redis_healthd_check_status{target=\"redis\",check=\"redis:responseTime\",status=\"fail\"} 1",
            "redis_healthd_check_status{target=\"redis\",check=\"redis:responseTime\",status=\"pass\"} 0",
            "redis_healthd_check_status{target=\"redis\",check=\"redis:responseTime\",status=\"warn\"} 0",
            "redis_healthd_redis_restarts_total{target=\"redis\"} 0",
            "redis_healthd_build_info{version=\"",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(classic.contains(line), "missing {line:?} in\n{classic}");
        }
        assert!(!classic.contains("# EOF"));
        assert!(!classic.contains("le=\"1.6384\""), "buckets stop at the timeout");
        let (open, content_type) = metrics.encode(true, false);
        let open = String::from_utf8(open.to_vec()).unwrap();
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("redis_healthd_ready 0"));
        assert!(open.contains("redis_healthd_checks_total{target=\"redis\",result=\"timeout\"} 1"));
    }

    #[test]
    fn encoded_bodies_are_reused_until_something_changes() {
        let metrics = Metrics::new(Duration::from_millis(500), &["redis"]);
        let (first, _) = metrics.encode(false, true);
        let (again, _) = metrics.encode(false, true);
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes are served again");
        let (not_ready, _) = metrics.encode(false, false);
        assert!(String::from_utf8_lossy(&not_ready).contains("redis_healthd_ready 0"));
        record(&metrics, &state(Ok(Duration::from_micros(250)), Status::Pass));
        let (after_check, _) = metrics.encode(false, false);
        assert!(String::from_utf8_lossy(&after_check)
            .contains("redis_healthd_checks_total{target=\"redis\",result=\"pass\"} 1"));
        let (open, _) = metrics.encode(true, false);
        assert!(
            String::from_utf8_lossy(&open).ends_with("# EOF\n"),
            "formats are cached apart"
        );
    }

    #[test]
    fn check_status_is_one_hot_and_follows_the_checks_reported() {
        let metrics = Metrics::new(Duration::from_millis(500), &["redis"]);
        record(
            &metrics,
            &verdict("redis:replication", Ok(Duration::ZERO), Status::Warn),
        );
        metrics.count_restart("redis");
        let (body, _) = metrics.encode(false, true);
        let body = String::from_utf8_lossy(&body);
        for line in [
            "redis_healthd_check_status{target=\"redis\",check=\"redis:replication\",status=\"warn\"} 1",
            "redis_healthd_check_status{target=\"redis\",check=\"redis:replication\",status=\"pass\"} 0",
            "redis_healthd_check_status{target=\"redis\",check=\"redis:replication\",status=\"fail\"} 0",
            "redis_healthd_redis_restarts_total{target=\"redis\"} 1",
        ] {
            assert!(body.contains(line), "missing {line:?} in\n{body}");
        }
        // The replica was promoted: its replication check is gone, and so are its series.
        record(&metrics, &state(Ok(Duration::ZERO), Status::Pass));
        let (body, _) = metrics.encode(false, true);
        assert!(!String::from_utf8_lossy(&body).contains("redis:replication"));
    }

    #[test]
    fn buckets_span_100us_to_the_timeout() {
        let buckets: Vec<f64> = ping_buckets(Duration::from_millis(500)).collect();
        assert_eq!(buckets.first(), Some(&1e-4));
        assert!(
            buckets[buckets.len() - 2] < 0.5 && buckets[buckets.len() - 1] >= 0.5,
            "{buckets:?}"
        );
        let buckets: Vec<f64> = ping_buckets(Duration::from_micros(50)).collect();
        assert_eq!(buckets, vec![1e-4]);
    }
}
