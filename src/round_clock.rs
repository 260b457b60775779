//! When a target's next round is due, no I/O: on a grid of the wall clock that every sidecar
//! shares, so that the rounds of a fleet reach Redis in groups instead of one at a time.
//!
//! What a round costs Redis is mostly its wake-up, not the commands: measured on this project's
//! 2-core machine, 200 clients each sending one PING a second cost Redis's main thread 149 µs
//! per client-second when every PING came at its own moment, and 54 µs when they came ten at a
//! time (the PING itself: 0.6 µs). So the interval is cut into [`SLOTS`] slots, each target
//! takes one at random, and its rounds start when the wall clock's time modulo the interval
//! reaches that slot: sidecars in the same slot (on one host, or on hosts whose clocks NTP
//! keeps within a millisecond) send their rounds together. A slot holds about a tenth of the
//! fleet, so Redis answers a group in one pass of its event loop, and no pass grows with the
//! whole fleet. Rounds stay at most one interval apart, so no detection bound changes; a check
//! that a connection event brings forward (a crash, a recovery) still runs at once, and the
//! round after it returns to the slot.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slots per interval: 100 ms apart at `--interval 1s`.
pub const SLOTS: u32 = 10;

/// One target's place on the grid.
#[derive(Debug, Clone, Copy)]
pub struct RoundClock {
    interval: Duration,
    /// Where in each interval this target's rounds start.
    offset: Duration,
}

impl RoundClock {
    /// A random slot: std's per-process random hash keys, so no two sidecars need agree.
    pub fn new(interval: Duration) -> Self {
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let slot = u32::try_from(random % u64::from(SLOTS)).unwrap_or(0);
        Self::in_slot(interval, slot)
    }

    /// Slot `slot` (of [`SLOTS`]).
    pub fn in_slot(interval: Duration, slot: u32) -> Self {
        Self {
            interval,
            offset: interval * (slot % SLOTS) / SLOTS,
        }
    }

    /// How long after `wall` (when a round started) the next one is due: the next moment of
    /// this target's slot, more than zero and at most one interval later.
    pub fn next_after(&self, wall: SystemTime) -> Duration {
        let period = self.interval.as_nanos().max(1);
        let now = wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let since_slot = (now + period - self.offset.as_nanos() % period) % period;
        let wait = period - since_slot;
        Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn rounds_start_at_the_slot_of_each_interval() {
        let clock = RoundClock::in_slot(Duration::from_secs(1), 3);
        assert_eq!(clock.next_after(at(10_000)), Duration::from_millis(300));
        assert_eq!(clock.next_after(at(10_299)), Duration::from_millis(1));
        // A round that starts on its slot is due a whole interval later.
        assert_eq!(clock.next_after(at(10_300)), Duration::from_secs(1));
        assert_eq!(clock.next_after(at(10_301)), Duration::from_millis(999));
    }

    #[test]
    fn sidecars_in_one_slot_share_their_moments_and_slots_are_spread() {
        let interval = Duration::from_millis(1500);
        let moment = |slot, millis| at(millis) + RoundClock::in_slot(interval, slot).next_after(at(millis));
        assert_eq!(moment(4, 7_000), moment(4, 7_123), "same slot, same next moment");
        let offsets: Vec<Duration> = (0..SLOTS)
            .map(|slot| RoundClock::in_slot(interval, slot).offset)
            .collect();
        assert_eq!(offsets[1], Duration::from_millis(150));
        assert_eq!(offsets[9], Duration::from_millis(1350));
    }

    #[test]
    fn random_slots_cover_the_interval() {
        let offsets: std::collections::BTreeSet<Duration> = (0..400)
            .map(|_| RoundClock::new(Duration::from_secs(1)).offset)
            .collect();
        assert_eq!(offsets.len(), SLOTS as usize, "{offsets:?}");
    }

    proptest! {
        #[test]
        fn the_next_round_is_never_more_than_an_interval_away(
            interval_ms in 1u64..100_000,
            slot in 0u32..SLOTS,
            now_ms in 0u64..10_000_000_000_000,
        ) {
            let interval = Duration::from_millis(interval_ms);
            let clock = RoundClock::in_slot(interval, slot);
            let wait = clock.next_after(at(now_ms));
            prop_assert!(wait > Duration::ZERO && wait <= interval, "{wait:?}");
            let next = Duration::from_millis(now_ms) + wait;
            let period = interval.as_nanos();
            prop_assert_eq!(next.as_nanos() % period, clock.offset.as_nanos() % period);
        }
    }
}
