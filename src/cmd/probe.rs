//! `redis-healthd probe`: pg_isready for Redis. It connects to Redis itself (no daemon), runs
//! the daemon's checks once with the same code ([`Servers::check`], [`judge`]), prints one
//! line (or the health+json document) and exits like `pg_isready` ([`ProbeExit`]): usable
//! (pass or warn), not usable (Redis answered), no answer; no attempt is `main`'s to decide.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::cli::ProbeArgs;
use crate::config::Config;
use crate::document::render_document;
use crate::exit::ProbeExit;
use crate::health::{Failure, Status, Verdict};
use crate::monitor::{description, judge, Servers, Trackers};
use crate::names::RESPONSE_TIME;

/// Pause between two attempts under `--wait`.
const RETRY: Duration = Duration::from_millis(250);
/// Bound on closing the client: QUIT can hang while disconnected.
const QUIT_BUDGET: Duration = Duration::from_millis(100);

/// The exit code and what to print (nothing with `--quiet`).
pub struct Answer {
    pub code: ProbeExit,
    pub output: Option<String>,
}

/// Checks Redis once, or under `--wait` until the verdict is usable or the time is up.
/// An error is a configuration problem (or a client that cannot be built): no attempt made.
pub async fn run(args: &ProbeArgs) -> anyhow::Result<Answer> {
    let config = Config::for_probe(&args.target(), args.timeout)?;
    let target = &config.targets[0];
    let mut servers = Servers::start(&config, target, Counter::default(), Counter::default())?;
    let deadline = Instant::now() + args.wait.unwrap_or_default();
    let (code, verdict) = loop {
        let verdict = judge(servers.check(target).await, &mut Trackers::new(), target);
        let code = exit_code(&verdict);
        let now = Instant::now();
        if code == ProbeExit::Usable || now >= deadline {
            break (code, verdict);
        }
        tokio::time::sleep(RETRY.min(deadline - now)).await;
    };
    servers.quit(QUIT_BUDGET).await;
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

/// Usable when the verdict is pass or warn; no answer when a server gave no answer to PING
/// (refused, unreachable, timed out, TLS); else not usable: Redis answered.
pub fn exit_code(verdict: &Verdict) -> ProbeExit {
    if verdict.status() != Status::Fail {
        return ProbeExit::Usable;
    }
    let no_answer = verdict.components_of(RESPONSE_TIME).any(|c| {
        matches!(
            c.state.outcome.result,
            Err(Failure::Timeout(_) | Failure::Unreachable(_))
        )
    });
    if no_answer {
        ProbeExit::NoAnswer
    } else {
        ProbeExit::NotUsable
    }
}

/// `redis://host:6379: pass`, `...: warn: reason`, `...: fail: reason`, `...: no response: reason`.
fn line(url: &str, code: ProbeExit, verdict: &Verdict) -> String {
    let word = match (code, verdict.status()) {
        (ProbeExit::Usable, Status::Pass) => "pass",
        (ProbeExit::Usable, _) => "warn",
        (ProbeExit::NoAnswer, _) => "no response",
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
        assert_eq!(exit_code(&verdict(tracker.observe(ok(1)))), ProbeExit::Usable);
        assert_eq!(
            exit_code(&verdict(tracker.observe(ok(150)))),
            ProbeExit::Usable,
            "warn is usable"
        );
        assert_eq!(
            exit_code(&verdict(tracker.observe(err("WRONGPASS invalid")))),
            ProbeExit::NotUsable
        );
        for failure in [
            Failure::Unreachable("Connection refused".into()),
            Failure::Timeout(Duration::from_secs(3)),
        ] {
            let state = Tracker::new(T).observe(Outcome {
                at: std::time::SystemTime::UNIX_EPOCH,
                result: Err(failure),
            });
            assert_eq!(exit_code(&verdict(state)), ProbeExit::NoAnswer);
        }
        let refused = verdict(Tracker::new(T).observe(err("LOADING Redis is loading the dataset in memory")));
        assert_eq!(
            line("redis://127.0.0.1:6379", ProbeExit::NotUsable, &refused),
            "redis://127.0.0.1:6379: fail: redis:responseTime: LOADING Redis is loading the dataset in memory"
        );
    }
}
