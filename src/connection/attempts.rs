//! When a lost connection is tried again, no I/O: once per reconnect window, at this
//! connection's own random phase of it, counted on the clock from when the connection was built
//! and never from the attempt before.
//!
//! So the first attempt after Redis comes back is uniform over the window across a fleet (a
//! drawn gap after each attempt, "full jitter", front-loads it: a sidecar is the likelier to
//! be due the sooner after the restart), and sidecars whose attempts fell in step (a busy host
//! ran many late, together) are back at their own phases at the next one.

use std::time::Duration;

use tokio::time::Instant;

/// One connection's reconnect attempts: at `origin + phase + k × period`, for every whole k.
#[derive(Debug, Clone, Copy)]
pub struct AttemptClock {
    origin: Instant,
    phase: Duration,
    period: Duration,
}

impl AttemptClock {
    /// Attempts once per `period`, at a phase drawn at random.
    pub fn random(period: Duration) -> Self {
        Self::with_phase(Instant::now(), random_fraction(), period)
    }

    /// Attempts once per `period`, at `fraction` (0 to 1) of it after `origin`.
    fn with_phase(origin: Instant, fraction: f64, period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        let phase = period.mul_f64(fraction.clamp(0.0, 1.0));
        Self {
            origin,
            // A fraction of 1 is the same moment as 0.
            phase: if phase >= period { Duration::ZERO } else { phase },
            period,
        }
    }

    /// The first attempt strictly after `now`.
    pub fn next_after(&self, now: Instant) -> Instant {
        let first = self.origin + self.phase;
        if now < first {
            return first;
        }
        let period = self.period.as_nanos();
        let passed = (now - first).as_nanos() / period + 1;
        // A u64 of nanoseconds holds 584 years of periods.
        let offset = u64::try_from(passed.saturating_mul(period)).unwrap_or(u64::MAX);
        first + Duration::from_nanos(offset)
    }
}

/// A number in [0, 1) from the system's random source (0 if it fails: one phase, still valid).
fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(2500);

    #[test]
    fn attempts_come_once_per_period_at_the_phase_strictly_after_now() {
        let origin = Instant::now();
        let clock = AttemptClock::with_phase(origin, 0.2, WINDOW);
        let at = |ms| origin + Duration::from_millis(ms);
        assert_eq!(clock.next_after(origin), at(500));
        assert_eq!(clock.next_after(at(499)), at(500));
        assert_eq!(
            clock.next_after(at(500)),
            at(3000),
            "strictly after: not twice at once"
        );
        assert_eq!(clock.next_after(at(2999)), at(3000));
        assert_eq!(clock.next_after(at(10_001)), at(10_500));
    }

    #[test]
    fn an_attempt_run_late_does_not_move_the_next_one() {
        // A gap counted from the attempt before would carry the lateness on, and a bunch of
        // sidecars run late together would stay together.
        let origin = Instant::now();
        let clock = AttemptClock::with_phase(origin, 0.4, WINDOW);
        let ran_late = origin + Duration::from_millis(1000 + 700);
        assert_eq!(clock.next_after(ran_late), origin + Duration::from_millis(3500));
    }

    #[test]
    fn a_fleet_s_first_attempts_after_a_restart_are_uniform_over_the_window() {
        // 10,000 connections built within one second, Redis back at a moment well after: the
        // wait from it to each one's next attempt, in tenths of the window.
        let start = Instant::now();
        let back = start + Duration::from_millis(7_321);
        let mut tenths = [0u32; 10];
        for i in 0..10_000u32 {
            let origin = start + Duration::from_micros(u64::from(i) * 100);
            let clock = AttemptClock::with_phase(origin, random_fraction(), WINDOW);
            let wait = clock.next_after(back) - back;
            assert!(wait <= WINDOW, "{wait:?}");
            tenths[(wait.as_secs_f64() / WINDOW.as_secs_f64() * 10.0) as usize % 10] += 1;
        }
        // Uniform: 1,000 a tenth (binomial sd 30). Full jitter put 1,900 in the first tenth.
        assert!(tenths.iter().all(|&n| (850..1150).contains(&n)), "{tenths:?}");
    }

    #[test]
    fn random_phases_differ() {
        let phases: Vec<Duration> = (0..8).map(|_| AttemptClock::random(WINDOW).phase).collect();
        assert!(phases.iter().all(|p| *p < WINDOW));
        assert!(phases.windows(2).any(|w| w[0] != w[1]), "{phases:?}");
    }
}
