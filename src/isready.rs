//! The `probe` subcommand: pg_isready for Redis. It connects to Redis itself (no daemon),
//! runs the daemon's checks once with the same code ([`Probe::check`], [`judge`]), prints one
//! line (or the health+json document) and exits like `pg_isready`: 0 usable (pass or warn), 1
//! Redis answered but is not usable, 2 no answer; 3 (no attempt) is `main`'s to decide.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::checks::RESPONSE_TIME;
use crate::config::{Config, ConfigError, ProbeArgs};
use crate::health::{Failure, Status, Verdict};
use crate::probe::{description, judge, Probe, Trackers};
use crate::snapshot::render_document;

/// Pause between two attempts under `--wait`.
const RETRY: Duration = Duration::from_millis(250);
/// Bound on closing the client: QUIT can hang while disconnected.
const QUIT_BUDGET: Duration = Duration::from_millis(100);

/// The exit code and what to print (nothing with `--quiet`).
pub struct Answer {
    pub code: u8,
    pub output: Option<String>,
}

/// Checks Redis once, or under `--wait` until the verdict is usable or the time is up.
pub async fn run(args: &ProbeArgs) -> Result<Answer, ConfigError> {
    let config = Config::for_probe(args)?;
    let target = &config.targets[0];
    let mut probe =
        Probe::start(&config, target, Counter::default()).map_err(|e| ConfigError(format!("{e:#}")))?;
    let deadline = Instant::now() + args.wait.unwrap_or_default();
    let (code, verdict) = loop {
        let verdict = judge(probe.check(target).await, &mut Trackers::new(), target);
        let code = exit_code(&verdict);
        let now = Instant::now();
        if code == 0 || now >= deadline {
            break (code, verdict);
        }
        tokio::time::sleep(RETRY.min(deadline - now)).await;
    };
    probe.quit(QUIT_BUDGET).await;
    let description = description(&config);
    let output = if args.quiet {
        None
    } else if args.json {
        Some(String::from_utf8_lossy(&render_document(&verdict, &description)).into_owned())
    } else {
        Some(line(target.redis.redacted(), code, &verdict))
    };
    Ok(Answer { code, output })
}

/// 0 when the verdict is pass or warn; 2 when a server gave no answer to PING (refused,
/// unreachable, timed out, TLS); 1 when Redis answered but is not usable.
pub fn exit_code(verdict: &Verdict) -> u8 {
    if verdict.status() != Status::Fail {
        return 0;
    }
    let no_answer = verdict.components_of(RESPONSE_TIME).any(|c| {
        matches!(
            c.state.outcome.result,
            Err(Failure::Timeout(_) | Failure::Unreachable(_))
        )
    });
    if no_answer {
        2
    } else {
        1
    }
}

/// `redis://host:6379: pass`, `...: warn: reason`, `...: fail: reason`, `...: no response: reason`.
fn line(url: &str, code: u8, verdict: &Verdict) -> String {
    let word = match (code, verdict.status()) {
        (0, Status::Pass) => "pass",
        (0, _) => "warn",
        (2, _) => "no response",
        _ => "fail",
    };
    match verdict.output() {
        Some(reason) => format!("{url}: {word}: {reason}"),
        None => format!("{url}: {word}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::fixtures::{err, ok, verdict, T};
    use crate::health::{Outcome, Tracker};

    #[test]
    fn exit_codes_follow_pg_isready() {
        let mut tracker = Tracker::new(T);
        assert_eq!(exit_code(&verdict(tracker.observe(ok(1)))), 0);
        assert_eq!(exit_code(&verdict(tracker.observe(ok(150)))), 0, "warn is usable");
        assert_eq!(exit_code(&verdict(tracker.observe(err("WRONGPASS invalid")))), 1);
        for failure in [
            Failure::Unreachable("Connection refused".into()),
            Failure::Timeout(Duration::from_secs(3)),
        ] {
            let state = Tracker::new(T).observe(Outcome {
                at: std::time::SystemTime::UNIX_EPOCH,
                result: Err(failure),
            });
            assert_eq!(exit_code(&verdict(state)), 2);
        }
        let refused = verdict(Tracker::new(T).observe(err("LOADING Redis is loading the dataset in memory")));
        assert_eq!(
            line("redis://127.0.0.1:6379", 1, &refused),
            "redis://127.0.0.1:6379: fail: redis:responseTime: LOADING Redis is loading the dataset in memory"
        );
    }
}
