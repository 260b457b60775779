//! The verdict as plain data, no I/O: what one check found ([`Outcome`]), the thresholds that
//! turn outcomes into a component's state ([`Tracker`]), and the [`Verdict`] over every named
//! check and component. [`crate::snapshot`] renders it.

use std::time::{Duration, SystemTime};

use serde::Serialize;

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
    /// No answer at all: the connection could not be made or was lost (refused, DNS, TLS).
    Unreachable(String),
    /// Redis answered, but not as a usable server (an error reply, a failed state check).
    Error(String),
    /// Not a fault of Redis: the connection dropped while Redis still accepts connections,
    /// and the client is re-establishing it. The component's state holds (neither a failure
    /// nor a success) until the reconnection succeeds or fails.
    Reconnecting(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(budget) => write!(f, "timed out after {}", humantime::format_duration(*budget)),
            Failure::Unreachable(reason) => write!(f, "unreachable: {reason}"),
            Failure::Error(reason) => f.write_str(reason),
            Failure::Reconnecting(reason) => write!(f, "reconnecting: {reason}"),
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
    pub value: ObservedValue,
    /// Why the reading is `warn` rather than `pass`, if it is.
    pub warning: Option<String>,
}

impl Reading {
    pub fn pass(value: ObservedValue) -> Self {
        Self { value, warning: None }
    }

    pub fn warn(value: ObservedValue, warning: String) -> Self {
        Self {
            value,
            warning: Some(warning),
        }
    }
}

/// An observed value, with its unit.
#[derive(Clone, Debug, PartialEq)]
pub enum ObservedValue {
    /// A round trip, shown in milliseconds.
    RoundTrip(Duration),
    /// A share of a limit (used memory of `maxmemory`).
    Percent(f64),
    Bytes(u64),
    /// Whole seconds (a replica's lag).
    Seconds(u64),
    /// A state in words (`master`, `up`, `ok`).
    Text(String),
    /// Nothing to show (a check that could not look).
    Nothing,
}

impl ObservedValue {
    /// The value for people: `0.264 ms`, `95.0 %`, `1.0 MiB`, `master`; `None` for nothing.
    pub fn describe(&self) -> Option<String> {
        match self {
            ObservedValue::RoundTrip(d) => Some(format!("{} ms", millis(*d))),
            ObservedValue::Percent(p) => Some(format!("{p:.1} %")),
            ObservedValue::Bytes(b) => Some(format!("{:.1} MiB", *b as f64 / (1024.0 * 1024.0))),
            ObservedValue::Seconds(s) => Some(format!("{s} s")),
            ObservedValue::Text(t) => Some(t.clone()),
            ObservedValue::Nothing => None,
        }
    }

    /// The round trip, for the latency metrics.
    pub fn round_trip(&self) -> Option<Duration> {
        match self {
            ObservedValue::RoundTrip(d) => Some(*d),
            _ => None,
        }
    }
}

/// What one server reported in one check round: an outcome per named check.
#[derive(Clone, Debug)]
pub struct Report {
    /// What the component's thresholds are tracked under (stable across a Sentinel failover).
    pub key: String,
    /// The component's `componentId` (never a secret).
    pub id: String,
    /// `(check name, outcome)`, in the order the document lists checks.
    pub outcomes: Vec<(&'static str, Outcome)>,
    /// The server's `run_id` and uptime, when `INFO` was read: a new `run_id` is a restart.
    pub run: Option<(String, Option<u64>)>,
    /// Which server answered (`redis 7.0.15`, `valkey 8.1.8`), when `INFO` was read.
    pub server: Option<String>,
}

impl Report {
    /// True when every check passed, with no warning.
    pub fn all_pass(&self) -> bool {
        self.outcomes
            .iter()
            .all(|(_, outcome)| matches!(&outcome.result, Ok(reading) if reading.warning.is_none()))
    }
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
    /// A failing cluster primary the quorum carries (`--cluster-ready majority`): shown as
    /// `warn`, and not waited for by `/startupz`.
    pub tolerated: bool,
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
        if let Err(Failure::Reconnecting(reason)) = &outcome.result {
            return self.hold(reason.clone(), outcome);
        }
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
            tolerated: false,
        }
    }
}

impl Tracker {
    /// The state while the connection is re-established: as it was (a healthy component stays
    /// ready, as `warn`; one not yet healthy stays failing), no threshold counted.
    fn hold(&mut self, reason: String, outcome: Outcome) -> ComponentState {
        let status = if self.healthy == Some(true) {
            Status::Warn
        } else {
            Status::Fail
        };
        ComponentState {
            status,
            latest: Status::Warn,
            healthy: self.healthy,
            outcome,
            consecutive_failures: self.consecutive_failures,
            last_success: self.last_success,
            output: Some(format!("reconnecting: {reason}")),
            tolerated: false,
        }
    }
}

/// A named check in the document (`"redis:responseTime"`) with one entry per component.
#[derive(Clone, Debug)]
pub struct NamedCheck {
    pub name: &'static str,
    pub components: Vec<Component>,
    /// False for a target with `readiness = false`: its failures show in `/health` and the
    /// metrics (the overall status at worst `warn`), never in `/readyz` or `/startupz`.
    pub readiness: bool,
}

/// One component of a check: what it is and its latest state.
#[derive(Clone, Debug)]
pub struct Component {
    /// The component's id in the document (a redacted URL: never a secret).
    pub id: String,
    pub kind: &'static str,
    /// Which server answered, as its INFO says (`redis 7.0.15`, `valkey 8.1.8`), once read.
    pub server: Option<String>,
    pub state: ComponentState,
}

/// The verdict over every check: the worst component status wins.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub checks: Vec<NamedCheck>,
}

impl Verdict {
    /// The worst check's status, an informational check's counting as `warn` at worst.
    pub fn status(&self) -> Status {
        self.checks
            .iter()
            .map(NamedCheck::readiness_status)
            .max()
            .unwrap_or(Status::Fail)
    }

    /// True once every component that counts for readiness has been healthy at least once.
    pub fn has_passed(&self) -> bool {
        self.checks
            .iter()
            .filter(|c| c.readiness)
            .flat_map(|c| c.components.iter())
            .all(|c| c.state.last_success.is_some() || c.state.tolerated)
    }

    /// The components of every target's check measuring what `check` does (`redis:responseTime`
    /// finds `cache:responseTime` too); none when no such check was reported.
    pub fn components_of<'a>(&'a self, check: &'a str) -> impl Iterator<Item = &'a Component> {
        let measurement = crate::names::measurement(check);
        self.checks
            .iter()
            .filter(move |c| crate::names::measurement(c.name) == measurement)
            .flat_map(|c| c.components.iter())
    }

    /// The top-level `output`: every non-pass component's reason, `check: reason; ...`, with
    /// the component named where a check has several (`check componentId: reason`).
    pub fn output(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .checks
            .iter()
            .flat_map(|check| {
                check.reasons().map(|(id, output)| match id {
                    Some(id) => format!("{} {id}: {output}", check.name),
                    None => format!("{}: {output}", check.name),
                })
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

impl NamedCheck {
    /// The worst status of the check's components.
    pub fn status(&self) -> Status {
        self.components
            .iter()
            .map(|c| c.state.status)
            .max()
            .unwrap_or(Status::Fail)
    }

    /// What the check weighs in readiness: its status, or at worst `warn` when its target is
    /// informational (`readiness = false`).
    pub fn readiness_status(&self) -> Status {
        match self.status() {
            Status::Fail if !self.readiness => Status::Warn,
            status => status,
        }
    }

    /// Why the check is not `pass`, for the kube-style text: `reason`, or with several
    /// components `componentId: reason; ...`.
    pub fn output(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .reasons()
            .map(|(id, output)| match id {
                Some(id) => format!("{id}: {output}"),
                None => output.to_owned(),
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Each non-pass component's reason, with its id where the check has several components.
    fn reasons(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        let several = self.components.len() > 1;
        self.components.iter().filter_map(move |c| {
            let output = c.state.output.as_deref()?;
            Some((several.then_some(c.id.as_str()), output))
        })
    }
}

/// Milliseconds with microsecond precision, as the document's `observedValue`.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A round trip as `1.234ms`.
pub fn format_ms(d: Duration) -> String {
    format!("{}ms", millis(d))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Outcomes and verdicts for the unit tests of this module and of [`crate::snapshot`].
    use super::*;

    pub const T: Thresholds = Thresholds {
        failure: 1,
        success: 1,
    };

    /// A PONG after `ms`, a warning past 100 ms (as `redis:responseTime` judges it).
    pub fn ok(ms: u64) -> Outcome {
        let value = ObservedValue::RoundTrip(Duration::from_millis(ms));
        Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            result: Ok(match ms {
                0..=100 => Reading::pass(value),
                _ => Reading::warn(value, format!("slow PONG: {ms}ms is over the warn latency 100ms")),
            }),
        }
    }

    pub fn err(reason: &str) -> Outcome {
        Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            result: Err(Failure::Error(reason.into())),
        }
    }

    pub fn verdict(state: ComponentState) -> Verdict {
        Verdict {
            checks: vec![NamedCheck {
                readiness: true,
                name: "redis:responseTime",
                components: vec![Component {
                    id: "redis://:***@127.0.0.1:6379".into(),
                    kind: "datastore",
                    server: None,
                    state,
                }],
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

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
    fn a_reconnection_holds_the_state_and_counts_nothing() {
        let reconnecting = || Outcome {
            at: SystemTime::UNIX_EPOCH,
            result: Err(Failure::Reconnecting("connection lost".into())),
        };
        let mut tracker = Tracker::new(Thresholds { failure: 2, ..T });
        let held = tracker.observe(reconnecting());
        assert_eq!(
            (held.status, held.healthy),
            (Status::Fail, None),
            "nothing was ready to hold"
        );
        tracker.observe(ok(1));
        let held = tracker.observe(reconnecting());
        assert_eq!((held.status, held.latest), (Status::Warn, Status::Warn));
        assert_eq!(held.output.as_deref(), Some("reconnecting: connection lost"));
        // The hold counted no failure: one real failure is still tolerated.
        assert_eq!(tracker.observe(err("x")).status, Status::Warn);
        assert_eq!(tracker.observe(reconnecting()).consecutive_failures, 1);
        assert_eq!(tracker.observe(err("x")).status, Status::Fail);
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
}
