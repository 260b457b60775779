//! HAProxy's `agent-check`, for setups where redis-healthd is the health endpoint of Redis
//! itself: on each connection one line from the latest snapshot, then close (never touching
//! Redis). `up ready` when ready; `drain #reason` while the drain key exists (or the daemon
//! shuts down); `down #reason` when not ready. Each answer states the whole state, so a server
//! the agent drained or took down comes back with the next `up ready` (only the agent can
//! revert what it set). HAProxy needs the space before `#`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::http::State;
use crate::kube::{Condition, PROBE_LOOP, SHUTDOWN};
use crate::names::{measurement, DRAIN};
use crate::view::{Endpoint, View};

/// The longest reason sent: HAProxy keeps a short line of it in its state.
const MAX_REASON: usize = 200;
/// How long one reply may take to write.
const WRITE_BUDGET: Duration = Duration::from_secs(1);
/// Pause after a failed accept (EMFILE and the like), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Answers every connection to `listener` with the agent's word until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "agent-check accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let line = state.view(word);
        tokio::spawn(async move {
            let mut stream = stream;
            // A line into a fresh socket's empty buffer; bounded all the same.
            match tokio::time::timeout(WRITE_BUDGET, stream.write_all(line.as_bytes())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "agent-check reply not sent"),
                Err(_) => debug!("agent-check reply not sent in time"),
            }
        });
    }
}

/// The agent's word for the latest snapshot, one line ending in `\n`.
pub fn word(view: &View<'_>) -> String {
    if view.answer(Endpoint::Ready).0 {
        return "up ready\n".to_owned();
    }
    let conditions = view.conditions(Endpoint::Ready);
    let failing: Vec<&Condition> = conditions.iter().filter(|c| !c.holds()).collect();
    let draining = !failing.is_empty()
        && failing
            .iter()
            .all(|c| c.name == SHUTDOWN || measurement(c.name) == measurement(DRAIN));
    let reason = failing
        .iter()
        .map(|c| format!("{}: {}", c.name, c.reason.as_deref().unwrap_or("failing")))
        .collect::<Vec<_>>()
        .join("; ");
    let reason = if reason.is_empty() {
        // Not ready with no failing condition: startup has not passed yet.
        format!("{PROBE_LOOP}: no passing check yet")
    } else {
        reason
    };
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    if draining {
        format!("drain #{reason}\n")
    } else {
        format!("down #{reason}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::fixtures::*;
    use crate::health::{Component, NamedCheck, Tracker, Verdict};
    use crate::snapshot::{FixedBodies, Snapshot};
    use std::time::Instant;

    fn word_for(checks: &[(&'static str, crate::health::Outcome)], draining: bool) -> String {
        let verdict = Verdict {
            checks: checks
                .iter()
                .map(|(name, outcome)| NamedCheck {
                    name,
                    readiness: true,
                    components: vec![Component {
                        id: "redis://127.0.0.1:6379".into(),
                        kind: "datastore",
                        server: None,
                        state: Tracker::new(T).observe(outcome.clone()),
                    }],
                })
                .collect(),
        };
        let at = Instant::now();
        let snapshot = Snapshot::new(at, verdict, "d", false, &Default::default());
        let max_age = Duration::from_secs(3);
        let fixed = FixedBodies::new("d", max_age);
        word(&View::new(&snapshot, &fixed, at, max_age, draining))
    }

    #[test]
    fn the_agent_speaks_haproxys_words() {
        assert_eq!(word_for(&[("redis:responseTime", ok(1))], false), "up ready\n");
        assert_eq!(
            word_for(
                &[
                    ("redis:responseTime", ok(1)),
                    ("redis:drain", err("drained: key d exists"))
                ],
                false
            ),
            "drain #redis:drain: drained: key d exists\n"
        );
        assert_eq!(
            word_for(
                &[("redis:responseTime", err("LOADING Redis is loading\nthe dataset"))],
                false
            ),
            "down #redis:responseTime: LOADING Redis is loading the dataset\n"
        );
        assert_eq!(
            word_for(&[("redis:responseTime", ok(1))], true),
            "drain #shutdown: shutting down\n"
        );
        let long = "x".repeat(500);
        let line = word_for(&[("redis:responseTime", err(&long))], false);
        assert_eq!(line.len(), "down #".len() + MAX_REASON + 1);
    }
}
