//! The standard `process_*` metrics (as client_golang names them), read from `/proc/self` when
//! a scrape asks for them (and once at start), on a blocking thread, and encoded from that
//! latest reading: a scrape reads no file on the runtime thread, and a daemon nobody scrapes
//! reads none at all. No maintained collector crate plugs into prometheus-client, so this is
//! the one small module that reads them; elsewhere than Linux it reports nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Encodes the latest reading of the `process_*` metrics; clones share it.
#[derive(Debug, Clone)]
pub struct ProcessCollector {
    constants: Option<Constants>,
    latest: Arc<Mutex<Option<(Instant, Reading)>>>,
    /// Held by the reading under way, on its blocking thread until the files are read: a
    /// reading that hangs makes later scrapes wait their budget, never start a second one.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A reading this young is served again: scrapes within it (the metrics body is reused as long)
/// share one.
pub const READING_REUSED_FOR: Duration = Duration::from_secs(1);

/// What does not change while the process runs.
#[derive(Debug, Clone, Copy)]
struct Constants {
    ticks_per_second: f64,
    page_size: i64,
    boot_time: f64,
}

impl ProcessCollector {
    pub fn new() -> Self {
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let constants = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s))
            .map(|boot_time| Constants {
                ticks_per_second: ticks.max(1) as f64,
                page_size: page.max(1),
                boot_time,
            });
        let collector = Self {
            constants,
            latest: Arc::default(),
            turn: Arc::default(),
        };
        collector.read_now();
        collector
    }

    /// Reads the process's figures now (blocking: call it off the runtime thread).
    fn read_now(&self) {
        if let Some(reading) = self.constants.and_then(Reading::now) {
            *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), reading));
        }
    }

    /// True when the latest reading is younger than [`READING_REUSED_FOR`].
    pub fn is_fresh(&self) -> bool {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < READING_REUSED_FOR)
    }

    /// Reads the figures again on a blocking thread unless the latest reading is fresh, waiting
    /// at most `budget` (past it, the scrape is encoded from the reading before).
    pub async fn refresh(&self, budget: Duration) {
        if self.constants.is_none() || self.is_fresh() {
            return;
        }
        let deadline = tokio::time::Instant::now() + budget;
        let Ok(turn) = tokio::time::timeout_at(deadline, self.turn.clone().lock_owned()).await else {
            return;
        };
        if self.is_fresh() {
            // Read by the scrape this one waited behind.
            return;
        }
        let collector = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            collector.read_now();
            drop(turn);
        });
        let _ = tokio::time::timeout_at(deadline, read).await;
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// One reading of the process's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub virtual_bytes: i64,
    pub start_time_seconds: f64,
    pub threads: i64,
    pub open_fds: i64,
    pub max_fds: Option<i64>,
}

impl Reading {
    /// Reads `/proc/self`; `None` where there is no procfs.
    fn now(c: Constants) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let mut reading = parse_stat(&stat, c.ticks_per_second, c.page_size, c.boot_time)?;
        reading.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
        reading.max_fds = max_fds();
        Some(reading)
    }
}

/// HTTP requests served since the heap was last trimmed.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Counts a request served: its garbage (bodies, buffers) is what the next round trims.
pub fn note_request() {
    SERVED.fetch_add(1, Ordering::Relaxed);
}

/// Hands memory freed since the last trim back to the OS (glibc only) when requests were served
/// since, or when `due` (the check loop's every few rounds, see `monitor`). After a burst of
/// connections the allocator keeps their freed buffers; a sidecar idles far more than it serves
/// bursts, so this keeps its resident memory near the idle level, under load too. True when it
/// trimmed.
pub fn release_free_memory(due: bool) -> bool {
    let served = SERVED.swap(0, Ordering::Relaxed);
    if !due && served == 0 {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    true
}

/// Parses `/proc/self/stat`: fields after the `(comm)`, which may itself hold spaces.
fn parse_stat(stat: &str, ticks_per_second: f64, page_size: i64, boot_time: f64) -> Option<Reading> {
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    // Field 3 (state) is index 0 here, so field N is index N - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / ticks_per_second,
        threads: field(20)? as i64,
        start_time_seconds: boot_time + field(22)? / ticks_per_second,
        virtual_bytes: field(23)? as i64,
        resident_bytes: field(24)? as i64 * page_size,
        open_fds: 0,
        max_fds: None,
    })
}

/// `btime` from `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The soft limit on open files.
fn max_fds() -> Option<i64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    i64::try_from(limit.rlim_cur).ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some((_, r)) = latest else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<&Unit>, i64); 4] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                r.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(&Unit::Bytes),
                r.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                r.open_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                r.threads,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)?;
        }
        if let Some(max) = r.max_fds {
            let gauge = ConstGauge::new(max);
            gauge.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(r.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since unix epoch in seconds.",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_comm_with_spaces() {
        // Fields 14/15 utime/stime, 20 threads, 22 starttime, 23 vsize, 24 rss (pages).
        let stat = "42 (redis healthd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 \
                    12345678 512 18446744073709551615";
        let r = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(r.cpu_seconds, 3.0);
        assert_eq!(r.threads, 3);
        assert_eq!(r.start_time_seconds, 1_700_000_010.0);
        assert_eq!(r.virtual_bytes, 12_345_678);
        assert_eq!(r.resident_bytes, 512 * 4096);
    }

    proptest::proptest! {
        #[test]
        fn any_stat_text_parses_or_is_refused_without_panicking(stat in "\\PC{0,200}") {
            let _ = parse_stat(&stat, 100.0, 4096, 0.0);
            let _ = boot_time(&stat);
        }
    }

    #[test]
    fn the_heap_is_trimmed_when_due_or_after_requests_only() {
        release_free_memory(true);
        assert!(
            !release_free_memory(false),
            "no request since the last trim, not due"
        );
        note_request();
        assert!(release_free_memory(false), "a request since the last trim");
        assert!(!release_free_memory(false), "counted once");
        assert!(release_free_memory(true), "due");
    }

    #[test]
    fn boot_time_parses() {
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn this_process_reads_sensibly_and_a_refresh_reads_again_once_the_reading_is_old() {
        let collector = ProcessCollector::new();
        let latest = || {
            collector
                .latest
                .lock()
                .unwrap()
                .clone()
                .expect("procfs on Linux")
                .1
        };
        let r = latest();
        assert!(r.resident_bytes > 0 && r.open_fds > 0 && r.threads >= 1, "{r:?}");
        assert!(r.max_fds.unwrap_or(0) >= r.open_fds, "{r:?}");
        let held = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(
            latest(),
            r,
            "encoding reads no file: the reading stays until refreshed"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let budget = Duration::from_secs(5);
        runtime.block_on(collector.refresh(budget));
        assert_eq!(latest(), r, "a fresh reading is served again");
        collector.latest.lock().unwrap().as_mut().unwrap().0 -= READING_REUSED_FOR;
        assert!(!collector.is_fresh());
        runtime.block_on(collector.refresh(budget));
        assert!(latest().open_fds > r.open_fds, "an old reading is read again");
        assert!(collector.is_fresh());
        drop(held);
    }

    #[test]
    fn a_reading_that_hangs_holds_later_scrapes_only_their_budget() {
        let collector = ProcessCollector::new();
        collector.latest.lock().unwrap().as_mut().unwrap().0 -= READING_REUSED_FOR;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A reading under way that never ends: its blocking thread holds the turn.
            let _hung = collector.turn.clone().lock_owned().await;
            let started = tokio::time::Instant::now();
            collector.refresh(Duration::from_millis(50)).await;
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(50), "{waited:?}");
            assert!(waited < Duration::from_secs(2), "{waited:?}");
        });
        assert!(!collector.is_fresh(), "no second reading was started");
    }
}
