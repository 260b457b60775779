//! When a lost connection is tried again, no I/O: once per reconnect window, at this
//! connection's own slot of it, counted on the wall clock (time since the Unix epoch) and never
//! from the attempt before; the first no sooner than the reconnect delay after the loss (a slot
//! closer than that is taken one window later), so a check run at the loss always sees it.
//!
//! The slot comes from the connection's `CLIENT ID` on its server (fred asks for it on every
//! connection): a fleet that connected to one Redis got consecutive ids, and consecutive ids
//! times the golden ratio land evenly spread over the window (Fibonacci hashing; the three-gap
//! theorem bounds every gap between 0.38 and 2.6 times the even one). So after a restart a
//! fleet's TLS handshakes reach Redis one after another, not in the random clumps that queue
//! on its main thread; and since the new connections get consecutive ids again, the next
//! restart is spread as well. Before a first id, the slot is random. Clocks that disagree
//! across hosts make it as random as that, never worse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shortest wait from a lost connection to its first reconnect attempt, and between two
/// checks brought forward by connection events: interval / 10, 50–100 ms, so that a long
/// interval does not hold back a reconnection or its check.
pub fn reconnect_delay(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_millis(50), Duration::from_millis(100))
}

/// The gap between reconnect attempts: the interval up to 1 s, and 1.5 s more (2.5 s at the
/// default interval). A longer interval asks Redis less often while it is up; it does not slow
/// down the recovery, which costs a running Redis nothing.
pub fn reconnect_window(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(1)) + Duration::from_millis(1500)
}

/// One connection's reconnect attempts: where the wall clock is at `slot` of a `period`, at
/// least `gap` apart.
#[derive(Debug, Clone, Copy)]
pub struct AttemptClock {
    /// The fraction of the period, scaled to 2^64.
    slot: u64,
    period: Duration,
    gap: Duration,
}

impl AttemptClock {
    /// Attempts once per `period`, at a slot drawn at random, never within `gap` of now.
    pub fn random(period: Duration, gap: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        Self {
            slot: random_u64(),
            period,
            gap: gap.min(period),
        }
    }

    /// Takes the slot of the connection that Redis knows by `id`.
    pub fn take_slot_of(&mut self, id: i64) {
        // 2^64 / golden ratio, odd: consecutive ids step a golden fraction of the period.
        self.slot = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// The next attempt, at least the gap after now, on the runtime's clock.
    pub fn next(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.wait()
    }

    /// How long until the next attempt, at least the gap after now.
    fn wait(&self) -> Duration {
        // A clock before 1970 counts from 1970: still a valid moment of the period.
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.wait_from(wall)
    }

    fn phase(&self) -> Duration {
        self.period
            .mul_f64(self.slot as f64 / 2f64.powi(64))
            .min(self.period)
    }

    /// How long from `wall` (time since the epoch) to the next attempt, at least the gap (and
    /// strictly) after it.
    fn wait_from(&self, wall: Duration) -> Duration {
        let period = self.period.as_nanos();
        let at = wall.as_nanos() % period;
        let phase = self.phase().as_nanos() % period;
        let wait = if phase > at {
            phase - at
        } else {
            phase + period - at
        };
        // Below two periods, which are Durations.
        let wait = Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX));
        if wait < self.gap {
            wait + self.period
        } else {
            wait
        }
    }
}

/// A random u64 from the system's random source (0 if it fails: one slot, still valid).
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_does_not_slow_down_with_a_longer_interval() {
        let ms = Duration::from_millis;
        let timing = |interval| (reconnect_delay(interval), reconnect_window(interval));
        assert_eq!(timing(ms(200)), (ms(50), ms(1700)));
        assert_eq!(timing(ms(500)), (ms(50), ms(2000)));
        assert_eq!(timing(ms(1000)), (ms(100), ms(2500)));
        assert_eq!(timing(ms(30_000)), (ms(100), ms(2500)));
    }

    const WINDOW: Duration = Duration::from_millis(2500);

    const GAP: Duration = Duration::from_millis(100);

    fn at_fraction(fraction: f64) -> AttemptClock {
        AttemptClock {
            slot: (fraction * 2f64.powi(64)) as u64,
            period: WINDOW,
            gap: GAP,
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Equal to within a microsecond (the slot goes through an f64).
    fn near(d: Duration, want: Duration) -> bool {
        d.abs_diff(want) < Duration::from_micros(1)
    }

    #[test]
    fn attempts_come_once_per_period_at_the_slot_strictly_after_now() {
        let clock = at_fraction(0.2);
        // The wall clock at 4 periods + 100 ms: the slot (500 ms) is 400 ms away.
        let base = WINDOW * 4;
        assert!(near(clock.wait_from(base + ms(100)), ms(400)));
        assert!(
            near(clock.wait_from(base + ms(500)), WINDOW),
            "strictly after: not twice at once"
        );
        assert!(near(clock.wait_from(base + ms(501)), ms(2499)));
        assert!(near(clock.wait_from(base + ms(2400)), ms(600)));
        assert!(clock.wait() <= WINDOW + GAP);
    }

    #[test]
    fn a_slot_within_the_gap_of_now_is_taken_one_window_later() {
        // A connection lost 60 ms before its slot: not at once (a check run at the loss would
        // find it back already), but one window after the slot.
        let clock = at_fraction(0.2);
        let base = WINDOW * 3;
        assert!(near(clock.wait_from(base + ms(440)), ms(60) + WINDOW));
        assert!(
            near(clock.wait_from(base + ms(400)), ms(100)),
            "exactly the gap away"
        );
    }

    #[test]
    fn an_attempt_run_late_does_not_move_the_next_one() {
        // A gap counted from the attempt before would carry the lateness on, and a bunch of
        // sidecars run late together would stay together.
        let clock = at_fraction(0.4);
        let ran_late = WINDOW * 7 + ms(1000 + 700);
        let next = ran_late + clock.wait_from(ran_late);
        assert!(near(next, WINDOW * 8 + ms(1000)), "{next:?}");
    }

    /// The gaps between a fleet's attempts, as multiples of the even gap (window / fleet).
    fn gaps(fleet: &[AttemptClock]) -> (f64, f64) {
        let mut phases: Vec<f64> = fleet.iter().map(|c| c.phase().as_secs_f64()).collect();
        phases.sort_by(f64::total_cmp);
        let even = WINDOW.as_secs_f64() / fleet.len() as f64;
        let wrap = WINDOW.as_secs_f64() - phases[phases.len() - 1] + phases[0];
        let gaps = phases.windows(2).map(|w| w[1] - w[0]).chain([wrap]);
        let (min, max) = gaps.fold((f64::MAX, 0f64), |(lo, hi), g| (lo.min(g), hi.max(g)));
        (min / even, max / even)
    }

    /// A fleet's clocks, each with the slot of its connection's id.
    fn slots_of(ids: impl Iterator<Item = i64>) -> Vec<AttemptClock> {
        ids.map(|id| {
            let mut clock = AttemptClock::random(WINDOW, GAP);
            clock.take_slot_of(id);
            clock
        })
        .collect()
    }

    #[test]
    fn a_fleet_with_consecutive_ids_is_spread_evenly_over_the_window() {
        let (min, max) = gaps(&slots_of(5_000..6_000));
        // Three gaps, all within a factor of the even one.
        assert!(
            min > 0.3 && max < 2.7,
            "gaps {min:.2} to {max:.2} of the even one"
        );
        // Random slots clump: the closest attempts all but coincide, the widest gap is several
        // even ones (the clumps are what queue handshakes on Redis's main thread).
        let random: Vec<AttemptClock> = (0..1_000).map(|_| AttemptClock::random(WINDOW, GAP)).collect();
        let (min, max) = gaps(&random);
        assert!(min < 0.05 && max > 4.0, "random gaps {min:.3} to {max:.2}");
    }

    #[test]
    fn ids_taken_in_between_by_other_clients_still_leave_no_clump() {
        // Every third id went to an application's connection: the fleet's own still never
        // come closer than the spread of all of them allows.
        let (min, max) = gaps(&slots_of((1..1_500).filter(|id| id % 3 != 0)));
        assert!(
            min > 0.2 && max < 4.0,
            "gaps {min:.2} to {max:.2} of the even one"
        );
    }

    #[test]
    fn random_slots_differ() {
        let slots: Vec<u64> = (0..8).map(|_| AttemptClock::random(WINDOW, GAP).slot).collect();
        assert!(slots.windows(2).any(|w| w[0] != w[1]), "{slots:?}");
    }
}
