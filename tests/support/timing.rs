//! The check timing most tests run the daemon with, and waits with a deadline.

use std::time::{Duration, Instant};

/// The check timing most tests run the daemon with, and the bounds it implies (README,
/// Reliability): detect ≤ interval + timeout (memory and persistence: 5 intervals +
/// timeout), recover ≤ the reconnect window (interval up to 1 s, + 1.5 s) + reconnect delay.
pub const INTERVAL: Duration = Duration::from_millis(500);
pub const TIMEOUT: Duration = Duration::from_millis(200);
/// The longest wait between reconnect attempts: the interval (under 1 s here) and 1.5 s more.
pub const RECONNECT_WINDOW: Duration = Duration::from_millis(500 + 1500);
/// Recovery past the last reconnect wait: the connection, the check it triggers, and the
/// round trips of both.
pub const RECONNECT: Duration = Duration::from_millis(60);
/// Scheduling slack on a shared 2-core machine.
pub const SLACK: Duration = Duration::from_millis(400);
pub const DETECT: Duration = Duration::from_millis(500 + 200 + 400);
/// Memory, persistence and the keyspace are read in full every fifth round.
pub const DETECT_IN_FULL_INFO: Duration = Duration::from_millis(5 * 500 + 200 + 400);
pub const RECOVER: Duration = Duration::from_millis(2000 + 60 + 400);
/// The flags for that timing.
pub const FAST: [&str; 4] = ["--interval", "500ms", "--timeout", "200ms"];

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
/// Returns how long it took.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
