//! What the probe publishes after each check: the [`Snapshot`], with every body rendered once
//! from the verdict (the health+json document and summary, the kube-style check lines, the
//! HTML status page), and what each endpoint answers from it ([`View`]): pure functions of
//! (snapshot, now), unit-tested without sockets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::health::{millis, Observed, Status, Verdict};
use crate::page;

/// The `serviceId` of every document.
const SERVICE_ID: &str = "redis-healthd";

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
    /// One condition per named check: the kube-style `?verbose` lines and per-check paths.
    pub checks: Vec<Condition>,
    /// `/` for a browser: the status page.
    pub page: Bytes,
    /// The verdict itself, for metrics and logs.
    pub verdict: Option<Verdict>,
}

/// Bodies that do not depend on a verdict, rendered once at start.
#[derive(Clone, Debug)]
pub struct FixedBodies {
    /// The documents' `description`.
    pub description: String,
    pub pass: Bytes,
    pub not_started: Bytes,
    pub stale: Bytes,
    pub draining: Bytes,
    /// Why a stale snapshot is not trusted (the `probe-loop` condition's reason).
    pub stale_reason: String,
    /// The status page while the snapshot is stale, and during shutdown.
    pub stale_page: Bytes,
    pub draining_page: Bytes,
}

/// The condition every endpoint but `/startupz` answers by: a check completed within max-age.
const PROBE_LOOP: &str = "probe-loop";

/// Why readiness fails during shutdown.
const SHUTTING_DOWN: &str = "shutting down";

impl FixedBodies {
    pub fn new(description: &str, max_age: Duration) -> Self {
        let stale_reason = format!(
            "stale: no check completed within max-age {}; the probe loop is wedged",
            humantime::format_duration(max_age)
        );
        Self {
            description: description.to_owned(),
            pass: render_summary(Status::Pass, description, None),
            not_started: render_summary(Status::Fail, description, Some("no passing check yet".into())),
            stale: render_summary(Status::Fail, description, Some(stale_reason.clone())),
            draining: render_summary(Status::Fail, description, Some(SHUTTING_DOWN.into())),
            stale_page: page::render(description, Status::Fail, Some(&stale_reason), None, None),
            draining_page: page::render(description, Status::Fail, Some(SHUTTING_DOWN), None, None),
            stale_reason,
        }
    }
}

impl Snapshot {
    /// The snapshot before any check has completed: not ready, not started; the `pending`
    /// checks fail with that reason.
    pub fn initial(now: Instant, description: &str, pending: &[&'static str]) -> Self {
        const REASON: &str = "no check has completed yet";
        let summary = render_summary(Status::Fail, description, Some(REASON.to_owned()));
        Self {
            at: now,
            status: Status::Fail,
            started: false,
            document: summary.clone(),
            summary,
            checks: pending
                .iter()
                .map(|name| Condition {
                    name,
                    status: Status::Fail,
                    reason: Some(REASON.to_owned()),
                })
                .collect(),
            page: page::render(description, Status::Fail, Some(REASON), None, None),
            verdict: None,
        }
    }

    /// The snapshot for a verdict; `started` stays true once it has been. `history` holds the
    /// recent PING round trips, this check's included (for the status page).
    pub fn new(
        now: Instant,
        verdict: Verdict,
        description: &str,
        was_started: bool,
        history: &page::History,
    ) -> Self {
        let status = verdict.status();
        let output = verdict.output();
        Self {
            at: now,
            status,
            started: was_started || verdict.has_passed() && status != Status::Fail,
            summary: render_summary(status, description, output.clone()),
            document: render_document(&verdict, description),
            checks: verdict
                .checks
                .iter()
                .map(|check| Condition {
                    name: check.name,
                    // An informational target's failure is a warning to readiness.
                    status: check.readiness_status(),
                    reason: check.output(),
                })
                .collect(),
            page: page::render(
                description,
                status,
                output.as_deref(),
                Some(&verdict),
                Some(history),
            ),
            verdict: Some(verdict),
        }
    }
}

/// One line of the kube-style text: a named check, or a condition of the endpoint itself
/// (`probe-loop`: a check completed within max-age; `shutdown`: none under way).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub name: &'static str,
    pub status: Status,
    /// Why it is not `pass`.
    pub reason: Option<String>,
}

impl Condition {
    fn holds(&self) -> bool {
        self.status != Status::Fail
    }

    fn met(name: &'static str, failure: Option<&str>) -> Self {
        Self {
            name,
            status: if failure.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            reason: failure.map(str::to_owned),
        }
    }

    /// `ok`, `ok (warn: reason)` or `failed: reason`.
    fn describe(&self) -> String {
        match (self.status, &self.reason) {
            (Status::Fail, reason) => format!("failed: {}", reason.as_deref().unwrap_or("failing")),
            (Status::Warn, Some(reason)) => format!("ok (warn: {reason})"),
            _ => "ok".to_owned(),
        }
    }
}

/// The kube-style query parameters: `?verbose` (any value) and repeatable `?exclude=NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub verbose: bool,
    pub exclude: Vec<String>,
}

impl Query {
    /// Reads a query string (percent-decoded; unknown parameters are ignored).
    pub fn parse(query: &str) -> Self {
        let mut parsed = Query::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "verbose" => parsed.verbose = true,
                "exclude" => parsed.exclude.push(value.into_owned()),
                _ => {}
            }
        }
        parsed
    }

    /// True when the answer is not the pre-rendered body.
    pub fn is_kube(&self) -> bool {
        self.verbose || !self.exclude.is_empty()
    }

    fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|excluded| excluded == name)
    }

    /// kube's warning for each excluded name that matches no condition.
    fn unmatched<'a>(&'a self, conditions: &'a [Condition]) -> impl Iterator<Item = String> + 'a {
        self.exclude
            .iter()
            .filter(|name| !conditions.iter().any(|c| c.name == name.as_str()))
            .map(|name| format!("warn: some health checks cannot be excluded: no matches for {name:?}"))
    }
}

/// The kube-style text (`?verbose`): a line per condition, `[+]name ok`, `[+]name excluded:
/// ok` or `[-]name failed: reason`, a warning per exclusion that matches nothing, and
/// `<endpoint> check passed` or `failed`. `true` when every condition not excluded holds.
pub fn render_verbose(endpoint: &str, conditions: &[Condition], query: &Query) -> (bool, String) {
    let mut text = String::new();
    let mut passed = true;
    for condition in conditions {
        if query.excludes(condition.name) {
            text.push_str(&format!("[+]{} excluded: ok\n", condition.name));
        } else {
            passed &= condition.holds();
            let sign = if condition.holds() { '+' } else { '-' };
            text.push_str(&format!("[{sign}]{} {}\n", condition.name, condition.describe()));
        }
    }
    for warning in query.unmatched(conditions) {
        text.push_str(&warning);
        text.push('\n');
    }
    let verdict = if passed { "passed" } else { "failed" };
    text.push_str(&format!("{endpoint} check {verdict}\n"));
    (passed, text)
}

/// The summary document over the conditions not excluded (`?exclude` without `?verbose`).
pub fn render_excluded(description: &str, conditions: &[Condition], query: &Query) -> (bool, Bytes) {
    let counted: Vec<&Condition> = conditions.iter().filter(|c| !query.excludes(c.name)).collect();
    let status = counted.iter().map(|c| c.status).max().unwrap_or(Status::Pass);
    let mut reasons: Vec<String> = counted
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.name, c.reason.as_ref()?)))
        .collect();
    reasons.extend(query.unmatched(conditions));
    let output = (!reasons.is_empty()).then(|| reasons.join("; "));
    (
        status != Status::Fail,
        render_summary(status, description, output),
    )
}

/// One condition alone (`/readyz/<name>`): `Some((holds, "ok" | "failed: reason"))`, `None`
/// when no condition has that name.
pub fn render_one(conditions: &[Condition], name: &str) -> Option<(bool, String)> {
    let condition = conditions.iter().find(|c| c.name == name)?;
    // A wedged loop makes every check's last state untrustworthy.
    let loop_stalled = conditions.iter().find(|c| c.name == PROBE_LOOP && !c.holds());
    Some(match loop_stalled {
        Some(stalled) if condition.holds() => (false, stalled.describe()),
        _ => (condition.holds(), condition.describe()),
    })
}

/// The probe endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Live,
    Ready,
    Started,
    Health,
}

/// The latest snapshot as one request sees it: fresh or stale, shutdown begun or not. Every
/// endpoint answers from one of these: pure functions of (snapshot, now).
pub struct View<'a> {
    snapshot: &'a Snapshot,
    fixed: &'a FixedBodies,
    fresh: bool,
    draining: bool,
}

impl<'a> View<'a> {
    pub fn new(
        snapshot: &'a Snapshot,
        fixed: &'a FixedBodies,
        now: Instant,
        max_age: Duration,
        draining: bool,
    ) -> Self {
        Self {
            snapshot,
            fixed,
            fresh: now.saturating_duration_since(snapshot.at) <= max_age,
            draining,
        }
    }

    /// What a probe endpoint answers: `(true, body)` is 200, `(false, body)` is 503.
    ///
    /// Liveness only asks whether the probe loop is turning (a fresh snapshot), never what
    /// Redis said; readiness and the document also need a pass/warn verdict and no shutdown
    /// under way.
    pub fn answer(&self, endpoint: Endpoint) -> (bool, Bytes) {
        let (snapshot, fixed) = (self.snapshot, self.fixed);
        match endpoint {
            Endpoint::Started if snapshot.started => (true, fixed.pass.clone()),
            Endpoint::Started => (false, fixed.not_started.clone()),
            _ if !self.fresh => (false, fixed.stale.clone()),
            Endpoint::Live => (true, fixed.pass.clone()),
            Endpoint::Ready | Endpoint::Health if self.draining => (false, fixed.draining.clone()),
            Endpoint::Ready => (snapshot.status != Status::Fail, snapshot.summary.clone()),
            Endpoint::Health => (snapshot.status != Status::Fail, snapshot.document.clone()),
        }
    }

    /// The conditions an endpoint answers by (kube-style text, per-check paths): liveness
    /// only by the probe loop; readiness and the document by the loop, shutdown, and every
    /// named check.
    pub fn conditions(&self, endpoint: Endpoint) -> Vec<Condition> {
        let mut conditions = vec![Condition::met(
            PROBE_LOOP,
            (!self.fresh).then_some(self.fixed.stale_reason.as_str()),
        )];
        if matches!(endpoint, Endpoint::Ready | Endpoint::Health) {
            conditions.push(Condition::met("shutdown", self.draining.then_some(SHUTTING_DOWN)));
            conditions.extend(self.snapshot.checks.iter().cloned());
        }
        conditions
    }

    /// The status page: the snapshot's, or the shutdown or stale page.
    pub fn page(&self) -> Bytes {
        if self.draining {
            self.fixed.draining_page.clone()
        } else if !self.fresh {
            self.fixed.stale_page.clone()
        } else {
            self.snapshot.page.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::fixtures::*;
    use crate::health::{Component, ComponentState, Failure, NamedCheck, Outcome, Reading, Tracker};

    /// The snapshot of a one-component verdict.
    fn snapshot_of(at: Instant, state: ComponentState, was_started: bool) -> Snapshot {
        Snapshot::new(at, verdict(state), "d", was_started, &Default::default())
    }

    #[test]
    fn slow_pong_is_warn_and_still_ready() {
        let mut tracker = Tracker::new(T);
        let slow = tracker.observe(ok(150));
        assert_eq!(slow.status, Status::Warn);
        assert!(slow.output.unwrap().contains("150ms"));
        let snap = snapshot_of(Instant::now(), tracker.observe(ok(150)), false);
        assert!(snap.started);
        let fixed = FixedBodies::new("d", Duration::from_secs(3));
        assert!(
            View::new(&snap, &fixed, snap.at, Duration::from_secs(3), false)
                .answer(Endpoint::Ready)
                .0
        );
    }

    #[test]
    fn stale_snapshot_fails_readiness_and_liveness_but_not_startup() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = snapshot_of(at, tracker.observe(ok(1)), false);
        let max_age = Duration::from_secs(3);
        let fixed = FixedBodies::new("d", max_age);
        for endpoint in [
            Endpoint::Live,
            Endpoint::Ready,
            Endpoint::Health,
            Endpoint::Started,
        ] {
            assert!(
                View::new(&snap, &fixed, at + max_age, max_age, false)
                    .answer(endpoint)
                    .0,
                "{endpoint:?}"
            );
        }
        let later = at + max_age + Duration::from_millis(1);
        for endpoint in [Endpoint::Live, Endpoint::Ready, Endpoint::Health] {
            let (ok, body) = View::new(&snap, &fixed, later, max_age, false).answer(endpoint);
            assert!(!ok, "{endpoint:?}");
            assert_eq!(body, fixed.stale);
        }
        assert!(
            View::new(&snap, &fixed, later, max_age, false)
                .answer(Endpoint::Started)
                .0
        );
    }

    #[test]
    fn liveness_ignores_a_failing_redis_and_draining() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = snapshot_of(at, tracker.observe(err("Connection refused")), false);
        let max_age = Duration::from_secs(3);
        let fixed = FixedBodies::new("d", max_age);
        assert!(
            View::new(&snap, &fixed, at, max_age, true)
                .answer(Endpoint::Live)
                .0
        );
        assert!(
            !View::new(&snap, &fixed, at, max_age, false)
                .answer(Endpoint::Ready)
                .0
        );
        assert!(
            !View::new(&snap, &fixed, at, max_age, false)
                .answer(Endpoint::Started)
                .0
        );
        let initial = Snapshot::initial(at, "d", &["redis:responseTime"]);
        assert!(
            !View::new(&initial, &fixed, at, max_age, false)
                .answer(Endpoint::Ready)
                .0
        );
        assert!(
            View::new(&initial, &fixed, at, max_age, false)
                .answer(Endpoint::Live)
                .0
        );
    }

    #[test]
    fn draining_turns_readiness_off_at_once() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let snap = snapshot_of(at, tracker.observe(ok(1)), false);
        let fixed = FixedBodies::new("d", Duration::from_secs(3));
        let (ok, body) = View::new(&snap, &fixed, at, Duration::from_secs(3), true).answer(Endpoint::Ready);
        assert!(!ok);
        assert_eq!(body, fixed.draining);
    }

    #[test]
    fn startup_latches_after_first_pass() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let passed = snapshot_of(at, tracker.observe(ok(1)), false);
        let failed = snapshot_of(at, tracker.observe(err("x")), passed.started);
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
                readiness: true,
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
