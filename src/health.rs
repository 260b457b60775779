//! The verdict as plain data, no I/O: what one check found ([`Outcome`]), the thresholds that
//! turn outcomes into a verdict ([`Tracker`]), the health+json document
//! (draft-inadarei-api-health-check-06), and the [`Snapshot`] the probe publishes with its
//! bodies already rendered. What a probe endpoint answers is [`answer`]: a pure function of
//! (snapshot, now), unit-tested without sockets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

/// The `serviceId` of every document.
const SERVICE_ID: &str = "redis-healthd";

/// health+json status, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// Why a check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the check's budget.
    Timeout(Duration),
    /// An error reply or a connection error, with the real reason.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(budget) => write!(f, "timed out after {}", humantime::format_duration(*budget)),
            Failure::Error(reason) => f.write_str(reason),
        }
    }
}

/// What one check found: a reading (with a warning, if it is `warn`), or why it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Wall-clock time the check started (for the document's `time`).
    pub at: SystemTime,
    pub result: Result<Reading, Failure>,
}

/// What a check observed when it did not fail.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The document's `observedValue` (and `observedUnit`).
    pub value: Observed,
    /// Why the reading is `warn` rather than `pass`, if it is.
    pub warning: Option<String>,
}

impl Reading {
    pub fn pass(value: Observed) -> Self {
        Self { value, warning: None }
    }

    pub fn warn(value: Observed, warning: String) -> Self {
        Self {
            value,
            warning: Some(warning),
        }
    }
}

/// An observed value, with its unit.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// A round trip, shown in milliseconds.
    RoundTrip(Duration),
    /// A share of a limit (used memory of `maxmemory`).
    Percent(f64),
    Bytes(u64),
    /// A state in words (`master`, `up`, `ok`).
    Text(String),
    /// Nothing to show (a check that could not look).
    Nothing,
}

impl Observed {
    /// The round trip, for the latency metrics.
    pub fn round_trip(&self) -> Option<Duration> {
        match self {
            Observed::RoundTrip(d) => Some(*d),
            _ => None,
        }
    }
}

/// What one check round found on one component (a server): an outcome per named check.
#[derive(Clone, Debug)]
pub struct Observation {
    /// What the component's thresholds are tracked under (stable across a Sentinel failover).
    pub key: String,
    /// The component's `componentId` (never a secret).
    pub id: String,
    /// `(check name, outcome)`, in the order the document lists checks.
    pub outcomes: Vec<(&'static str, Outcome)>,
    /// The server's `run_id` and uptime, when `INFO` was read: a new `run_id` is a restart.
    pub run: Option<(String, Option<u64>)>,
}

/// The thresholds a [`Tracker`] applies.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

/// Turns a stream of outcomes for one component into a thresholded state.
#[derive(Clone, Debug)]
pub struct Tracker {
    thresholds: Thresholds,
    /// `None` until enough outcomes agree: not yet known counts as not ready.
    healthy: Option<bool>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_success: Option<SystemTime>,
}

/// One component's state after the latest outcome, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentState {
    /// The thresholded status this component contributes to the verdict.
    pub status: Status,
    /// The latest outcome's own status (a tolerated failure is `fail` here, `warn` above).
    pub latest: Status,
    pub healthy: Option<bool>,
    pub outcome: Outcome,
    pub consecutive_failures: u32,
    pub last_success: Option<SystemTime>,
    /// Why the component is not `pass`, if it is not.
    pub output: Option<String>,
}

impl Tracker {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            healthy: None,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_success: None,
        }
    }

    /// Folds one outcome in and returns the component's state.
    pub fn observe(&mut self, outcome: Outcome) -> ComponentState {
        let t = self.thresholds;
        let latest = match &outcome.result {
            Ok(reading) if reading.warning.is_some() => Status::Warn,
            Ok(_) => Status::Pass,
            Err(_) => Status::Fail,
        };
        if latest == Status::Fail {
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
            // From "not yet known" the first failure decides at once: nothing was ready to lose.
            if self.healthy.is_none() || self.consecutive_failures >= t.failure {
                self.healthy = Some(false);
            }
        } else {
            self.consecutive_successes += 1;
            self.consecutive_failures = 0;
            self.last_success = Some(outcome.at);
            if self.consecutive_successes >= t.success {
                self.healthy = Some(true);
            }
        }
        let (status, output) = match (&outcome.result, self.healthy) {
            (Ok(reading), Some(true)) => (latest, reading.warning.clone()),
            (Ok(_), _) => (
                Status::Fail,
                Some(format!(
                    "recovering: {} of {} passing checks needed",
                    self.consecutive_successes, t.success
                )),
            ),
            (Err(failure), Some(true)) => (
                Status::Warn,
                Some(format!(
                    "{failure} ({} of {} failures tolerated)",
                    self.consecutive_failures, t.failure
                )),
            ),
            (Err(failure), _) => (Status::Fail, Some(failure.to_string())),
        };
        ComponentState {
            status,
            latest,
            healthy: self.healthy,
            outcome,
            consecutive_failures: self.consecutive_failures,
            last_success: self.last_success,
            output,
        }
    }
}

/// A named check in the document (`"redis:responseTime"`) with one entry per component.
#[derive(Clone, Debug)]
pub struct NamedCheck {
    pub name: &'static str,
    pub components: Vec<Component>,
}

/// One component of a check: what it is and its latest state.
#[derive(Clone, Debug)]
pub struct Component {
    /// The component's id in the document (a redacted URL: never a secret).
    pub id: String,
    pub kind: &'static str,
    pub state: ComponentState,
}

/// The verdict over every check: the worst component status wins.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub checks: Vec<NamedCheck>,
}

impl Verdict {
    pub fn status(&self) -> Status {
        self.components()
            .map(|c| c.state.status)
            .max()
            .unwrap_or(Status::Fail)
    }

    /// True once every component has been healthy at least once.
    pub fn has_passed(&self) -> bool {
        self.components().all(|c| c.state.last_success.is_some())
    }

    fn components(&self) -> impl Iterator<Item = &Component> {
        self.checks.iter().flat_map(|c| c.components.iter())
    }

    /// The top-level `output`: every non-pass component's reason, `check: reason; ...`, with
    /// the component named where a check has several (`check componentId: reason`).
    pub fn output(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .checks
            .iter()
            .flat_map(|check| {
                let several = check.components.len() > 1;
                check.components.iter().filter_map(move |c| {
                    let output = c.state.output.as_ref()?;
                    Some(if several {
                        format!("{} {}: {output}", check.name, c.id)
                    } else {
                        format!("{}: {output}", check.name)
                    })
                })
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// The health+json document's top level.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    status: Status,
    version: &'static str,
    service_id: &'static str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<BTreeMap<&'a str, Vec<Entry<'a>>>>,
}

/// One entry of a check's array.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    component_id: &'a str,
    component_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<Value<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'static str>,
    status: Status,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<String>,
}

/// An `observedValue`: a number or a word.
#[derive(Serialize)]
#[serde(untagged)]
enum Value<'a> {
    Number(f64),
    Integer(u64),
    Text(&'a str),
}

/// An observed value as the document shows it: value and unit.
fn observed(value: &Observed) -> Option<(Value<'_>, Option<&'static str>)> {
    match value {
        Observed::RoundTrip(d) => Some((Value::Number(millis(*d)), Some("ms"))),
        Observed::Percent(p) => Some((Value::Number((p * 10.0).round() / 10.0), Some("%"))),
        Observed::Bytes(b) => Some((Value::Integer(*b), Some("bytes"))),
        Observed::Text(t) => Some((Value::Text(t), None)),
        Observed::Nothing => None,
    }
}

/// Milliseconds with microsecond precision, as the document's `observedValue`.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A round trip as `1.234ms`.
pub fn format_ms(d: Duration) -> String {
    format!("{}ms", millis(d))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Renders `{"status":...,"output":...}` plus the fixed fields: the body of the probe endpoints.
fn render_summary(status: Status, description: &str, output: Option<String>) -> Bytes {
    render(&Document {
        status,
        version: env!("CARGO_PKG_VERSION"),
        service_id: SERVICE_ID,
        description,
        output,
        checks: None,
    })
}

fn render(doc: &Document<'_>) -> Bytes {
    // Serializing plain structs with string keys cannot fail.
    Bytes::from(serde_json::to_vec(doc).unwrap_or_default())
}

/// The full document for a verdict, `checks` included.
pub fn render_document(verdict: &Verdict, description: &str) -> Bytes {
    let checks = verdict
        .checks
        .iter()
        .map(|check| {
            let entries = check
                .components
                .iter()
                .map(|c| {
                    let s = &c.state;
                    let (observed_value, observed_unit) =
                        match s.outcome.result.as_ref().ok().and_then(|r| observed(&r.value)) {
                            Some((value, unit)) => (Some(value), unit),
                            None => (None, None),
                        };
                    Entry {
                        component_id: &c.id,
                        component_type: c.kind,
                        observed_value,
                        observed_unit,
                        status: s.latest,
                        time: rfc3339(s.outcome.at),
                        output: match &s.outcome.result {
                            Err(_) => s.output.as_deref(),
                            Ok(_) => s.output.as_deref().filter(|_| s.status != Status::Pass),
                        },
                        consecutive_failures: s.consecutive_failures,
                        last_success: s.last_success.map(rfc3339),
                    }
                })
                .collect();
            (check.name, entries)
        })
        .collect();
    render(&Document {
        status: verdict.status(),
        version: env!("CARGO_PKG_VERSION"),
        service_id: SERVICE_ID,
        description,
        output: verdict.output(),
        checks: Some(checks),
    })
}

/// What the probe publishes after each check: the verdict and its bodies, already rendered.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When this snapshot was published (its age decides staleness).
    pub at: Instant,
    pub status: Status,
    /// At least one check has passed since start (for `/startupz`).
    pub started: bool,
    /// `/readyz`: status and output only.
    pub summary: Bytes,
    /// `/health`: the full document.
    pub document: Bytes,
    /// The verdict itself, for metrics and logs.
    pub verdict: Option<Verdict>,
}

/// Bodies that do not depend on a verdict, rendered once at start.
#[derive(Clone, Debug)]
pub struct FixedBodies {
    pub pass: Bytes,
    pub not_started: Bytes,
    pub stale: Bytes,
    pub draining: Bytes,
}

impl FixedBodies {
    pub fn new(description: &str, max_age: Duration) -> Self {
        Self {
            pass: render_summary(Status::Pass, description, None),
            not_started: render_summary(Status::Fail, description, Some("no passing check yet".into())),
            stale: render_summary(
                Status::Fail,
                description,
                Some(format!(
                    "stale: no check completed within max-age {}; the probe loop is wedged",
                    humantime::format_duration(max_age)
                )),
            ),
            draining: render_summary(Status::Fail, description, Some("shutting down".into())),
        }
    }
}

impl Snapshot {
    /// The snapshot before any check has completed: not ready, not started.
    pub fn initial(now: Instant, description: &str) -> Self {
        let output = Some("no check has completed yet".to_owned());
        let summary = render_summary(Status::Fail, description, output.clone());
        Self {
            at: now,
            status: Status::Fail,
            started: false,
            document: summary.clone(),
            summary,
            verdict: None,
        }
    }

    /// The snapshot for a verdict; `started` stays true once it has been.
    pub fn new(now: Instant, verdict: Verdict, description: &str, was_started: bool) -> Self {
        let status = verdict.status();
        Self {
            at: now,
            status,
            started: was_started || verdict.has_passed() && status != Status::Fail,
            summary: render_summary(status, description, verdict.output()),
            document: render_document(&verdict, description),
            verdict: Some(verdict),
        }
    }
}

/// The probe endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
    Started,
    Health,
}

/// What a probe endpoint answers: `(true, body)` is 200, `(false, body)` is 503.
///
/// Liveness only asks whether the probe loop is turning (a fresh snapshot), never what Redis
/// said; readiness and the document also need a pass/warn verdict and no shutdown under way.
pub fn answer(
    probe: Probe,
    snapshot: &Snapshot,
    fixed: &FixedBodies,
    now: Instant,
    max_age: Duration,
    draining: bool,
) -> (bool, Bytes) {
    let fresh = now.saturating_duration_since(snapshot.at) <= max_age;
    match probe {
        Probe::Started if snapshot.started => (true, fixed.pass.clone()),
        Probe::Started => (false, fixed.not_started.clone()),
        _ if !fresh => (false, fixed.stale.clone()),
        Probe::Live => (true, fixed.pass.clone()),
        Probe::Ready | Probe::Health if draining => (false, fixed.draining.clone()),
        Probe::Ready => (snapshot.status != Status::Fail, snapshot.summary.clone()),
        Probe::Health => (snapshot.status != Status::Fail, snapshot.document.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failure: 1,
        success: 1,
    };

    /// A PONG after `ms`, a warning past 100 ms (as `redis:responseTime` judges it).
    fn ok(ms: u64) -> Outcome {
        let value = Observed::RoundTrip(Duration::from_millis(ms));
        Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            result: Ok(match ms {
                0..=100 => Reading::pass(value),
                _ => Reading::warn(value, format!("slow PONG: {ms}ms is over the warn latency 100ms")),
            }),
        }
    }

    fn err(reason: &str) -> Outcome {
        Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            result: Err(Failure::Error(reason.into())),
        }
    }

    fn verdict(state: ComponentState) -> Verdict {
        Verdict {
            checks: vec![NamedCheck {
                name: "redis:responseTime",
                components: vec![Component {
                    id: "redis://:***@127.0.0.1:6379".into(),
                    kind: "datastore",
                    state,
                }],
            }],
        }
    }

    #[test]
    fn default_thresholds_flip_on_every_outcome() {
        let mut tracker = Tracker::new(T);
        assert_eq!(tracker.observe(ok(1)).status, Status::Pass);
        let failed = tracker.observe(err("Connection refused"));
        assert_eq!(failed.status, Status::Fail);
        assert_eq!(failed.output.as_deref(), Some("Connection refused"));
        assert_eq!(tracker.observe(ok(1)).status, Status::Pass);
    }

    #[test]
    fn failure_threshold_tolerates_failures_as_warn() {
        let mut tracker = Tracker::new(Thresholds { failure: 3, ..T });
        tracker.observe(ok(1));
        let first = tracker.observe(err("LOADING Redis is loading"));
        assert_eq!((first.status, first.latest), (Status::Warn, Status::Fail));
        assert_eq!(
            first.output.as_deref(),
            Some("LOADING Redis is loading (1 of 3 failures tolerated)")
        );
        assert_eq!(tracker.observe(err("x")).status, Status::Warn);
        let third = tracker.observe(err("x"));
        assert_eq!((third.status, third.consecutive_failures), (Status::Fail, 3));
    }

    #[test]
    fn first_failure_from_unknown_is_fail_at_once() {
        let mut tracker = Tracker::new(Thresholds { failure: 5, ..T });
        assert_eq!(tracker.observe(err("Connection refused")).status, Status::Fail);
    }

    #[test]
    fn success_threshold_holds_fail_until_enough_passes() {
        let mut tracker = Tracker::new(Thresholds { success: 2, ..T });
        let first = tracker.observe(ok(1));
        assert_eq!((first.status, first.latest), (Status::Fail, Status::Pass));
        assert_eq!(
            first.output.as_deref(),
            Some("recovering: 1 of 2 passing checks needed")
        );
        assert_eq!(tracker.observe(ok(1)).status, Status::Pass);
        tracker.observe(err("x"));
        assert_eq!(tracker.observe(ok(1)).status, Status::Fail);
        assert_eq!(tracker.observe(ok(1)).status, Status::Pass);
    }

    #[test]
    fn slow_pong_is_warn_and_still_ready() {
        let mut tracker = Tracker::new(T);
        let slow = tracker.observe(ok(150));
        assert_eq!(slow.status, Status::Warn);
        assert!(slow.output.unwrap().contains("150ms"));
        let snap = Snapshot::new(Instant::now(), verdict(tracker.observe(ok(150))), "d", false);
        assert!(snap.started);
        let fixed = FixedBodies::new("d", Duration::from_secs(3));
        assert!(
            answer(
                Probe::Ready,
                &snap,
                &fixed,
                snap.at,
                Duration::from_secs(3),
                false
            )
            .0
        );
    }

    #[test]
    fn stale_snapshot_fails_readiness_and_liveness_but_not_startup() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = Snapshot::new(at, verdict(tracker.observe(ok(1))), "d", false);
        let max_age = Duration::from_secs(3);
        let fixed = FixedBodies::new("d", max_age);
        for probe in [Probe::Live, Probe::Ready, Probe::Health, Probe::Started] {
            assert!(
                answer(probe, &snap, &fixed, at + max_age, max_age, false).0,
                "{probe:?}"
            );
        }
        let later = at + max_age + Duration::from_millis(1);
        for probe in [Probe::Live, Probe::Ready, Probe::Health] {
            let (ok, body) = answer(probe, &snap, &fixed, later, max_age, false);
            assert!(!ok, "{probe:?}");
            assert_eq!(body, fixed.stale);
        }
        assert!(answer(Probe::Started, &snap, &fixed, later, max_age, false).0);
    }

    #[test]
    fn liveness_ignores_a_failing_redis_and_draining() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = Snapshot::new(
            at,
            verdict(tracker.observe(err("Connection refused"))),
            "d",
            false,
        );
        let max_age = Duration::from_secs(3);
        let fixed = FixedBodies::new("d", max_age);
        assert!(answer(Probe::Live, &snap, &fixed, at, max_age, true).0);
        assert!(!answer(Probe::Ready, &snap, &fixed, at, max_age, false).0);
        assert!(!answer(Probe::Started, &snap, &fixed, at, max_age, false).0);
        let initial = Snapshot::initial(at, "d");
        assert!(!answer(Probe::Ready, &initial, &fixed, at, max_age, false).0);
        assert!(answer(Probe::Live, &initial, &fixed, at, max_age, false).0);
    }

    #[test]
    fn draining_turns_readiness_off_at_once() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = Snapshot::new(at, verdict(tracker.observe(ok(1))), "d", false);
        let fixed = FixedBodies::new("d", Duration::from_secs(3));
        let (ok, body) = answer(Probe::Ready, &snap, &fixed, at, Duration::from_secs(3), true);
        assert!(!ok);
        assert_eq!(body, fixed.draining);
    }

    #[test]
    fn startup_latches_after_first_pass() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let passed = Snapshot::new(at, verdict(tracker.observe(ok(1))), "d", false);
        let failed = Snapshot::new(at, verdict(tracker.observe(err("x"))), "d", passed.started);
        assert!(failed.started);
    }

    #[test]
    fn document_follows_health_json() {
        let mut tracker = Tracker::new(T);
        tracker.observe(ok(1));
        let state = tracker.observe(Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_002),
            result: Err(Failure::Timeout(Duration::from_millis(500))),
        });
        let body = render_document(&verdict(state), "Redis at redis://:***@127.0.0.1:6379");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["status"], "fail");
        assert_eq!(doc["serviceId"], "redis-healthd");
        assert_eq!(doc["output"], "redis:responseTime: timed out after 500ms");
        let entry = &doc["checks"]["redis:responseTime"][0];
        assert_eq!(entry["componentId"], "redis://:***@127.0.0.1:6379");
        assert_eq!(entry["componentType"], "datastore");
        assert_eq!(entry["status"], "fail");
        assert_eq!(entry["time"], "2023-11-14T22:13:22.000Z");
        assert_eq!(entry["lastSuccess"], "2023-11-14T22:13:20.000Z");
        assert_eq!(entry["consecutiveFailures"], 1);
        assert!(entry.get("observedValue").is_none());

        let mut tracker = Tracker::new(T);
        let body = render_document(&verdict(tracker.observe(ok(2))), "d");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entry = &doc["checks"]["redis:responseTime"][0];
        assert_eq!(
            (entry["observedValue"].as_f64(), &entry["observedUnit"]),
            (Some(2.0), &"ms".into())
        );
        assert!(doc.get("output").is_none() && entry.get("output").is_none());
    }

    #[test]
    fn observed_values_render_with_their_units() {
        let render = |value: Observed| {
            let state = Tracker::new(T).observe(Outcome {
                at: SystemTime::UNIX_EPOCH,
                result: Ok(Reading::pass(value)),
            });
            let doc: serde_json::Value =
                serde_json::from_slice(&render_document(&verdict(state), "d")).unwrap();
            let entry = &doc["checks"]["redis:responseTime"][0];
            (entry["observedValue"].to_string(), entry["observedUnit"].clone())
        };
        assert_eq!(
            render(Observed::Bytes(1_025_928)),
            ("1025928".into(), "bytes".into())
        );
        assert_eq!(render(Observed::Percent(95.04)), ("95.0".into(), "%".into()));
        assert_eq!(
            render(Observed::Text("master".into())),
            ("\"master\"".into(), serde_json::Value::Null)
        );
        assert_eq!(
            render(Observed::Nothing),
            ("null".into(), serde_json::Value::Null)
        );
    }

    #[test]
    fn several_components_are_named_in_the_output_and_the_worst_wins() {
        let node = |id: &str, outcome: Outcome| Component {
            id: id.into(),
            kind: "datastore",
            state: Tracker::new(T).observe(outcome),
        };
        let verdict = Verdict {
            checks: vec![NamedCheck {
                name: "redis:responseTime",
                components: vec![
                    node("redis://10.0.0.1:6379", ok(1)),
                    node("redis://10.0.0.2:6379", err("Connection refused")),
                    node("redis://10.0.0.3:6379", ok(150)),
                ],
            }],
        };
        assert_eq!(verdict.status(), Status::Fail);
        let doc: serde_json::Value = serde_json::from_slice(&render_document(&verdict, "d")).unwrap();
        assert_eq!(
            doc["output"],
            "redis:responseTime redis://10.0.0.2:6379: Connection refused; \
             redis:responseTime redis://10.0.0.3:6379: slow PONG: 150ms is over the warn latency 100ms"
        );
        let entries = doc["checks"]["redis:responseTime"].as_array().unwrap();
        let statuses: Vec<_> = entries
            .iter()
            .map(|e| (&e["componentId"], &e["status"]))
            .collect();
        assert_eq!(
            statuses,
            [
                (&"redis://10.0.0.1:6379".into(), &"pass".into()),
                (&"redis://10.0.0.2:6379".into(), &"fail".into()),
                (&"redis://10.0.0.3:6379".into(), &"warn".into()),
            ]
        );
    }
}
