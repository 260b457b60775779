//! The only code that talks to Redis: one long-lived fred client with a bounded reconnect
//! policy, one PING at a time under the check budget, and the loop that runs a check every
//! interval (and at once when the connection drops or comes back), folds the outcome into the
//! verdict and publishes a [`Snapshot`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fred::prelude::{
    Builder, Client, ClientLike, Error, ErrorKind, EventInterface, Options, ReconnectPolicy, Server,
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{broadcast, watch, Notify};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::health::{
    Component, Failure, NamedCheck, Outcome, Snapshot, Status, Thresholds, Tracker, Verdict,
};
use crate::metrics::Metrics;

/// The name of the PING check in the health+json document.
pub const CHECK_NAME: &str = "redis:responseTime";

/// The Redis side of the daemon: the client and what it has said about its connection.
pub struct Probe {
    client: Client,
    /// Per-PING options: fred's own timeout (a bare `tokio::time::timeout` would leave timed-out
    /// PINGs queued in the client, to burst onto Redis later), one attempt, fail at once while
    /// disconnected.
    ping: Options,
    budget: Duration,
    errors: broadcast::Receiver<(Error, Option<Server>)>,
    reconnects: broadcast::Receiver<Server>,
    /// The latest connection-level error and when it came, cleared when a connection is made:
    /// the real reason behind fred's generic "Connection closed unexpectedly".
    connection_error: Option<(String, Instant)>,
    /// How long a connection error is trusted to mean "down" without a PING.
    trust_error_for: Duration,
    /// Connection-level errors and failed reconnect attempts since start (a metric).
    connection_errors: Counter,
    /// The server of the latest connection (through Sentinel: the master it resolved).
    connected_to: Option<Server>,
}

/// A connection event from the client.
enum Event {
    /// A connection was made.
    Connected,
    /// The first error since the last connection: the connection was lost (or never made).
    Lost,
    /// Another failed reconnect attempt during an outage already known.
    StillDown,
    /// The client quit; no more events.
    Closed,
}

impl Probe {
    /// Builds the client and starts connecting in the background; never waits for Redis.
    pub fn start(config: &Config, connection_errors: Counter) -> anyhow::Result<Self> {
        let mut client_config = config.redis.client_config().clone();
        // fail_fast = false keeps the client reconnecting when Redis is down at start.
        client_config.fail_fast = false;
        let delay = config.reconnect_delay();
        let mut policy = ReconnectPolicy::new_constant(0, millis_u32(delay));
        // A little jitter so a fleet of sidecars does not reconnect in lockstep.
        policy.set_jitter(millis_u32(delay / 5));
        let timeout = config.timeout;
        let client = Builder::from_config(client_config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(policy)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Redis client: {}", e.details()))?;
        let errors = client.error_rx();
        let reconnects = client.reconnect_rx();
        // The task ends when the client quits; the probe never needs its result.
        drop(client.connect());
        Ok(Self {
            client,
            ping: Options {
                timeout: Some(timeout),
                fail_fast: true,
                max_attempts: Some(1),
                ..Default::default()
            },
            budget: timeout,
            errors,
            reconnects,
            connection_error: None,
            trust_error_for: config.interval,
            connection_errors,
            connected_to: None,
        })
    }

    /// PINGs once: `PONG` within the budget passes, anything else fails with the real reason.
    ///
    /// While the client knows the connection is down (a connection error since the last
    /// connect), the check fails at once with that error: fred would otherwise queue the PING
    /// until its next reconnect attempt and the crash would show only as a timeout.
    pub async fn check_once(&mut self) -> Outcome {
        let at = SystemTime::now();
        self.drain_events();
        if let Some((reason, when)) = &self.connection_error {
            if when.elapsed() < self.trust_error_for {
                return Outcome {
                    at,
                    result: Err(Failure::Error(reason.clone())),
                };
            }
        }
        let started = Instant::now();
        let client = self.client.with_options(&self.ping);
        // fred's own timeout ends the PING; this outer one (twice the budget) is only a
        // backstop, so that no fault inside the client can ever wedge the check loop.
        let reply = tokio::time::timeout(self.budget * 2, client.ping::<String>(None))
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "backstop timeout")));
        let elapsed = started.elapsed();
        // The reason for a failed PING often arrives as a connection error at the same moment.
        self.drain_events();
        let result = match reply {
            Ok(pong) if pong == "PONG" => Ok(elapsed),
            Ok(other) => Err(Failure::Error(format!(
                "unexpected reply to PING: {:?}",
                other.chars().take(64).collect::<String>()
            ))),
            Err(e) if *e.kind() == ErrorKind::Timeout => Err(Failure::Timeout(self.budget)),
            Err(e) => Err(Failure::Error(self.reason(&e))),
        };
        Outcome { at, result }
    }

    /// The real cause of a failed PING: Redis's own error reply, or the last connection error
    /// when fred only says the connection is gone.
    fn reason(&self, error: &Error) -> String {
        let generic = matches!(error.kind(), ErrorKind::Canceled | ErrorKind::IO);
        match (&self.connection_error, generic) {
            (Some((cause, _)), true) => cause.clone(),
            (None, true) => "not connected: a connection attempt is under way".to_owned(),
            _ => describe(error),
        }
    }

    /// Waits for the next connection event and records it.
    async fn next_event(&mut self) -> Event {
        tokio::select! {
            e = self.errors.recv() => self.on_error(e),
            r = self.reconnects.recv() => self.on_reconnect(r),
        }
    }

    /// Records the events already queued, without waiting.
    fn drain_events(&mut self) {
        loop {
            match self.errors.try_recv() {
                Ok(event) => {
                    self.on_error(Ok(event));
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    self.connection_errors.inc_by(missed);
                }
                Err(_) => break,
            }
        }
        while let Ok(server) = self.reconnects.try_recv() {
            self.on_reconnect(Ok(server));
        }
    }

    fn on_error(&mut self, event: Result<(Error, Option<Server>), broadcast::error::RecvError>) -> Event {
        match event {
            Ok((error, _server)) => {
                self.connection_errors.inc();
                let reason = if *error.kind() == ErrorKind::Timeout {
                    // fred's own text is "Request timed out." even when connecting timed out.
                    format!(
                        "connecting timed out after {}",
                        humantime::format_duration(self.budget)
                    )
                } else {
                    describe(&error)
                };
                debug!(reason = %reason, "redis connection error");
                let was_up = self.connection_error.is_none();
                self.connection_error = Some((reason, Instant::now()));
                if was_up {
                    Event::Lost
                } else {
                    Event::StillDown
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.connection_errors.inc_by(missed);
                Event::StillDown
            }
            Err(broadcast::error::RecvError::Closed) => Event::Closed,
        }
    }

    fn on_reconnect(&mut self, event: Result<Server, broadcast::error::RecvError>) -> Event {
        match event {
            Ok(server) => {
                debug!(server = %server, "redis connected");
                self.connection_error = None;
                self.connected_to = Some(server);
                Event::Connected
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Event::Connected,
            Err(broadcast::error::RecvError::Closed) => Event::Closed,
        }
    }

    /// Drops the connection and makes a new one (reading the password file again), bounded by
    /// the check budget; the reconnect event then triggers a check.
    async fn reconnect(&mut self) {
        match tokio::time::timeout(self.budget, self.client.force_reconnection()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(reason = %describe(&e), "reconnect failed"),
            Err(_) => debug!("reconnect still under way after the check budget"),
        }
    }

    /// Closes the client, bounded: QUIT can hang while disconnected.
    pub async fn quit(self, budget: Duration) {
        if tokio::time::timeout(budget, self.client.quit()).await.is_err() {
            debug!("redis QUIT timed out");
        }
    }
}

/// fred's error as one line: Redis's reply (`WRONGPASS ...`, `LOADING ...`) or the I/O error.
fn describe(error: &Error) -> String {
    let details = error.details().trim();
    if details.is_empty() {
        return error.kind().to_str().to_owned();
    }
    let message = io_message(details).unwrap_or(details);
    // rustls errors arrive as their Debug names; say what they are.
    if let Some(inner) = message
        .strip_prefix("InvalidCertificate(")
        .and_then(|m| m.strip_suffix(')'))
    {
        format!("TLS: invalid server certificate: {inner}")
    } else if let Some(inner) = message
        .strip_prefix("AlertReceived(")
        .and_then(|m| m.strip_suffix(')'))
    {
        format!("TLS: the server refused the handshake: {inner}")
    } else {
        message.to_owned()
    }
}

/// fred carries I/O errors as their `Debug` text (`Os { code: 111, kind: ConnectionRefused,
/// message: "Connection refused" }`, `Custom { kind: InvalidData, error: AlertReceived(..) }`):
/// keep the human part.
fn io_message(details: &str) -> Option<&str> {
    let quoted = ["message: \"", "error: \""].iter().find_map(|key| {
        let start = details.find(key)? + key.len();
        let len = details[start..].find('"')?;
        Some(&details[start..start + len])
    });
    quoted.or_else(|| {
        let rest = details.strip_prefix("Custom { kind: ")?;
        rest.get(rest.find(", error: ")? + ", error: ".len()..)?
            .strip_suffix(" }")
    })
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Runs checks until `stop` turns true, publishing a snapshot after each one.
///
/// A check runs every interval, and also at once when the client reports the connection lost
/// or made (at most one such extra check per reconnect delay), so a crash or a recovery shows
/// within milliseconds; the interval PING catches the hangs no socket event reveals. Failed
/// reconnect attempts during an outage only refresh the reason the next check reports.
pub async fn run(
    config: Config,
    mut probe: Probe,
    metrics: Arc<Metrics>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    reconnect: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Probe {
    let description = description(&config);
    let mut tracker = Tracker::new(Thresholds {
        failure: config.failure_threshold,
        success: config.success_threshold,
        warn_latency: config.warn_latency,
    });
    let min_gap = config.reconnect_delay();
    let mut started = false;
    let mut status: Option<Status> = None;

    // fred makes its first connection attempt one reconnect delay after start: give it the
    // check budget so start-up does not report a failure that is only "not connected yet".
    let _ = tokio::time::timeout(config.timeout, probe.next_event()).await;
    let mut due = tokio::time::Instant::now();
    let mut earliest_extra = due;
    let mut events_open = true;

    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            _ = tokio::time::sleep_until(due) => {}
            _ = reconnect.notified() => {
                info!(password_file = config.redis.has_password_file(), "reconnecting to redis on request");
                probe.reconnect().await;
                continue;
            }
            event = probe.next_event(), if events_open => {
                match event {
                    // Only changes trigger a check: every failed reconnect attempt doing so
                    // would make --failure-threshold count attempts instead of intervals.
                    Event::Lost | Event::Connected => {
                        due = due.min(earliest_extra.max(tokio::time::Instant::now()));
                    }
                    Event::StillDown => {}
                    Event::Closed => {
                        warn!("redis client closed its event streams; checks go on at the interval only");
                        events_open = false;
                    }
                }
                continue;
            }
        }
        let check_started = tokio::time::Instant::now();
        let outcome = probe.check_once().await;
        let state = tracker.observe(outcome);
        metrics.record(&state);
        let verdict = Verdict {
            checks: vec![NamedCheck {
                name: CHECK_NAME,
                components: vec![Component {
                    id: config.redis.component_id(probe.connected_to.as_ref()),
                    kind: "datastore",
                    state,
                }],
            }],
        };
        let snapshot = Snapshot::new(Instant::now(), verdict, &description, started);
        started = snapshot.started;
        log_transition(status, &snapshot);
        status = Some(snapshot.status);
        snapshots.send_replace(Arc::new(snapshot));
        crate::process::release_free_memory();
        due = check_started + config.interval;
        earliest_extra = tokio::time::Instant::now() + min_gap;
    }
    probe
}

/// The document's `description`.
pub fn description(config: &Config) -> String {
    format!("Redis at {} as seen by redis-healthd", config.redis.redacted())
}

/// Logs a verdict change once, with its reason; repeated failures stay quiet.
fn log_transition(previous: Option<Status>, snapshot: &Snapshot) {
    if previous == Some(snapshot.status) {
        return;
    }
    let reason = snapshot
        .verdict
        .as_ref()
        .and_then(|v| v.checks.first())
        .and_then(|c| c.components.first())
        .and_then(|c| c.state.output.clone())
        .unwrap_or_default();
    match snapshot.status {
        Status::Pass => info!("redis check passing"),
        Status::Warn => warn!(reason = %reason, "redis check warning"),
        Status::Fail => warn!(reason = %reason, "redis check failing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_error_text_is_described_without_panicking(details in "\\PC{0,120}") {
            let described = describe(&Error::new(ErrorKind::IO, details.clone()));
            proptest::prop_assert!(details.contains(described.trim()) || described == "IO Error");
        }
    }

    #[test]
    fn io_errors_read_as_their_message() {
        let refused = r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;
        assert_eq!(io_message(refused), Some("Connection refused"));
        let dns = r#"Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" }"#;
        assert_eq!(
            io_message(dns),
            Some("failed to lookup address information: Name or service not known")
        );
        assert_eq!(io_message("WRONGPASS invalid username-password pair"), None);
        let tls = "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }";
        assert_eq!(
            describe(&Error::new(ErrorKind::IO, tls)),
            "TLS: invalid server certificate: UnknownIssuer"
        );
        let alert = "Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }";
        assert_eq!(
            describe(&Error::new(ErrorKind::IO, alert)),
            "TLS: the server refused the handshake: CertificateRequired"
        );
        let e = Error::new(ErrorKind::IO, refused);
        assert_eq!(describe(&e), "Connection refused");
        assert_eq!(
            describe(&Error::new(ErrorKind::Auth, "WRONGPASS invalid")),
            "WRONGPASS invalid"
        );
    }
}
