//! What each endpoint answers, from the latest snapshot as one request sees it ([`View`]):
//! fresh or stale against max-age, shutdown begun or not. Pure functions of (snapshot, now),
//! unit-tested without sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::health::Status;
use crate::kube::{Condition, PROBE_LOOP, SHUTDOWN};
use crate::snapshot::{FixedBodies, Snapshot, SHUTTING_DOWN};

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
            Endpoint::Health => (snapshot.status != Status::Fail, snapshot.document()),
        }
    }

    /// True when the verdict is `warn` and readiness holds: Envoy's active health checker
    /// marks such a host degraded (`x-envoy-degraded`) rather than healthy or failed.
    pub fn degraded(&self) -> bool {
        self.fresh && !self.draining && self.snapshot.status == Status::Warn
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
            conditions.push(Condition::met(SHUTDOWN, self.draining.then_some(SHUTTING_DOWN)));
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
            self.snapshot.page()
        }
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
}
