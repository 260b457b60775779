//! What the check loop publishes after each round: the [`Snapshot`], with every body rendered
//! at most once from the verdict (the summary and the kube-style conditions at once, for the
//! probes; the health+json document and the HTML status page when first asked for), and the
//! [`FixedBodies`] that need no verdict.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::document::{render_document, render_summary};
use crate::health::{Status, Verdict};
use crate::kube::Condition;
use crate::page::{self, History};

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
    /// One condition per named check: the kube-style `?verbose` lines and per-check paths.
    pub checks: Vec<Condition>,
    /// The verdict itself, for metrics and logs.
    pub verdict: Option<Verdict>,
    /// What the bodies rendered on demand are rendered from, besides the verdict.
    description: String,
    output: Option<String>,
    history: Option<History>,
    /// `/health`: the full document, rendered when first asked for.
    document: OnceLock<Bytes>,
    /// `/` for a browser: the status page, rendered when first asked for.
    page: OnceLock<Bytes>,
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

/// Why readiness fails during shutdown.
pub const SHUTTING_DOWN: &str = "shutting down";

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
            summary,
            document: OnceLock::new(),
            checks: pending
                .iter()
                .map(|name| Condition {
                    name,
                    status: Status::Fail,
                    reason: Some(REASON.to_owned()),
                })
                .collect(),
            verdict: None,
            description: description.to_owned(),
            output: Some(REASON.to_owned()),
            history: None,
            page: OnceLock::new(),
        }
    }

    /// The snapshot for a verdict; `started` stays true once it has been. `history` holds the
    /// recent PING round trips, this check's included (for the status page).
    pub fn new(
        now: Instant,
        verdict: Verdict,
        description: &str,
        was_started: bool,
        history: &History,
    ) -> Self {
        let status = verdict.status();
        let output = verdict.output();
        Self {
            at: now,
            status,
            started: was_started || verdict.has_passed() && status != Status::Fail,
            summary: render_summary(status, description, output.clone()),
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
            verdict: Some(verdict),
            description: description.to_owned(),
            output,
            history: Some(history.clone()),
            document: OnceLock::new(),
            page: OnceLock::new(),
        }
    }

    /// `/health`: the full document (the summary before any verdict).
    pub fn document(&self) -> Bytes {
        let render = || match &self.verdict {
            Some(verdict) => render_document(verdict, &self.description),
            None => self.summary.clone(),
        };
        self.document.get_or_init(render).clone()
    }

    /// `/` for a browser: the status page.
    pub fn page(&self) -> Bytes {
        let render = || {
            page::render(
                &self.description,
                self.status,
                self.output.as_deref(),
                self.verdict.as_ref(),
                self.history.as_ref(),
            )
        };
        self.page.get_or_init(render).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::fixtures::*;
    use crate::health::{ComponentState, Tracker};

    /// The snapshot of a one-component verdict.
    fn snapshot_of(at: Instant, state: ComponentState, was_started: bool) -> Snapshot {
        Snapshot::new(at, verdict(state), "d", was_started, &Default::default())
    }

    #[test]
    fn startup_latches_after_first_pass() {
        let mut tracker = Tracker::new(T);
        let at = Instant::now();
        let passed = snapshot_of(at, tracker.observe(ok(1)), false);
        let failed = snapshot_of(at, tracker.observe(err("x")), passed.started);
        assert!(failed.started);
    }
}
