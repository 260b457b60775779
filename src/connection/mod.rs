//! One long-lived fred client to one Redis server (or one Sentinel-resolved master): its
//! reconnect attempts, the connection events that trigger early checks, the real reason behind a
//! failure, and commands bounded by the check budget. The check loop holds one; a cluster holds one
//! per node.

use std::time::{Duration, Instant};

use fred::interfaces::ClientInterface;
use fred::prelude::{
    Builder, Client, ClientLike, Error, ErrorKind, EventInterface, FromValue, Options, Server,
};
use fred::types::{ClusterHash, ConnectHandle, CustomCommand};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;
use tracing::{debug, warn};

use crate::config::Config;
use crate::health::Failure;
use crate::info_schedule::InfoSchedule;
use crate::reason::describe;

mod attempts;
mod check;

use attempts::AttemptClock;
pub use attempts::{reconnect_delay, reconnect_window};

/// A connection event from the client.
pub enum Event {
    /// A connection was made.
    Connected,
    /// The first error since the last connection: the connection was lost (or never made).
    Lost,
    /// Another failed reconnect attempt during an outage already known.
    StillDown,
    /// A reconnect attempt was started (its outcome comes as `Connected` or `StillDown`).
    Retrying,
    /// The client quit; no more events.
    Closed,
}

/// One fred client and what it has said about its connection.
pub struct Connection {
    client: Client,
    /// The client's connection task: it ends when an attempt fails (fail_fast), when a
    /// connection that was made is lost (the client has no reconnect policy: this connection
    /// makes its own attempts), or when the client quits.
    connecting: ConnectHandle,
    /// When a connection that was made and lost is tried again.
    attempts: AttemptClock,
    /// The next reconnect attempt, while a connection that was made is known down.
    retry_at: Option<tokio::time::Instant>,
    /// Per-command options: fred's own timeout (a bare `tokio::time::timeout` would leave
    /// timed-out commands queued in the client, to burst onto Redis later), one attempt, fail at
    /// once while disconnected.
    options: Options,
    budget: Duration,
    errors: broadcast::Receiver<(Error, Option<Server>)>,
    reconnects: broadcast::Receiver<Server>,
    /// True once the client has reported its first attempt, made or failed.
    settled: bool,
    /// The latest connection-level error and when it came, cleared when a connection is made:
    /// the real reason behind fred's generic "Connection closed unexpectedly".
    connection_error: Option<(Failure, Instant)>,
    /// How long a connection error is trusted to mean "down" without a PING: the reconnect
    /// window and the reconnect delay, since a failed attempt refreshes it once per window.
    trust_error_for: Duration,
    /// When the connection to a server that was connected dropped, while no reconnect attempt
    /// has failed since: Redis may be fine (a `CLIENT KILL`, an idle timeout, a proxy), so
    /// checks hold the verdict while the server still accepts connections.
    dropped_at: Option<Instant>,
    /// How long a drop may hold the verdict: the reconnect attempt starts within the reconnect
    /// delay and window (the [`AttemptClock`]'s gap and period) and is bounded by the check
    /// budget.
    hold_for: Duration,
    /// Connection-level errors and failed reconnect attempts since start (a metric).
    connection_errors: Counter,
    /// The server of the latest connection (through Sentinel: the master it resolved).
    connected_to: Option<Server>,
    /// The `NOPERM` reply to INFO on this connection: INFO is not asked again until the next.
    info_denied: Option<String>,
    /// Which `INFO` sections the next check asks, and the latest reply with all of them.
    info_schedule: InfoSchedule,
    /// The client closed its event streams (it quit): no more events will come.
    events_closed: bool,
    /// What this connection was built from, to build its replacement.
    recipe: Recipe,
}

/// What a connection is built from. Holds the password: never printed.
#[derive(Clone)]
struct Recipe {
    client_config: fred::prelude::Config,
    timeout: Duration,
    /// The gap between reconnect attempts.
    window: Duration,
    /// The shortest wait from a lost connection to its first reconnect attempt.
    delay: Duration,
}

impl Connection {
    /// Builds the client for `client_config` and starts connecting in the background; never
    /// waits for Redis.
    pub fn start(
        config: &Config,
        client_config: fred::prelude::Config,
        connection_errors: Counter,
    ) -> anyhow::Result<Self> {
        let recipe = Recipe {
            client_config,
            timeout: config.timeout,
            window: reconnect_window(config.interval),
            delay: reconnect_delay(config.interval),
        };
        Self::open(recipe, connection_errors)
    }

    fn open(recipe: Recipe, connection_errors: Counter) -> anyhow::Result<Self> {
        let mut client_config = recipe.client_config.clone();
        // fail_fast: the first attempt is made at once; if it fails, the connection task ends
        // and the next check starts another (`known_failure`). No reconnect policy: fred's
        // delays count from the attempt before, so a lost connection is tried again at this
        // connection's own slot of the reconnect window instead (`AttemptClock`).
        client_config.fail_fast = true;
        let timeout = recipe.timeout;
        let client = Builder::from_config(client_config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // fred makes nine event channels per client with this many slots each; the probe
                // reads two of them, promptly (a lag is counted, not lost). 32 slots cost about
                // 30 KiB per client: with many targets, most of the daemon's heap.
                p.broadcast_channel_capacity = 4;
            })
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Redis client: {}", e.details()))?;
        let errors = client.error_rx();
        let reconnects = client.reconnect_rx();
        let connecting = client.connect();
        Ok(Self {
            client,
            connecting,
            attempts: AttemptClock::random(recipe.window, recipe.delay),
            retry_at: None,
            options: Options {
                timeout: Some(timeout),
                fail_fast: true,
                max_attempts: Some(1),
                ..Default::default()
            },
            budget: timeout,
            errors,
            reconnects,
            settled: false,
            connection_error: None,
            trust_error_for: recipe.window + recipe.delay,
            dropped_at: None,
            hold_for: recipe.window + recipe.delay + timeout * 2,
            connection_errors,
            connected_to: None,
            info_denied: None,
            info_schedule: InfoSchedule::default(),
            events_closed: false,
            recipe,
        })
    }

    /// Runs one command under the check budget; a failure reads as its real reason.
    pub async fn query<R: FromValue>(
        &self,
        command: &'static str,
        args: &[&'static str],
    ) -> Result<R, String> {
        let command = CustomCommand::new_static(command, ClusterHash::FirstKey, false);
        let client = self.client.with_options(&self.options);
        let reply = Box::pin(client.custom::<R, _>(command, args.to_vec()));
        match tokio::time::timeout(self.budget * 2, reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.failure(&e).to_string()),
            Err(_) => Err(Failure::Timeout(self.budget).to_string()),
        }
    }

    /// Why a check must fail without asking Redis, if it must: the client reported the
    /// connection down less than a reconnect window ago. Before the client's first attempt is known,
    /// waits for it (bounded by the budget) so start-up does not report "not connected yet".
    async fn known_failure(&mut self) -> Option<Failure> {
        if !self.settle().await {
            // The first attempt neither connected nor failed within the budget (a path that
            // swallows packets): that is the answer, not "not connected yet".
            return Some(Failure::Unreachable(format!(
                "connecting timed out after {}",
                humantime::format_duration(self.budget)
            )));
        }
        self.drain_events();
        if self.connecting.is_finished() && self.connected_to.is_none() {
            // No connection made yet and the attempt failed: start another, whose outcome
            // arrives as an event (a connection made triggers a check at once). No command
            // goes out meanwhile: none would be read until it connects. (A connection that was
            // made and lost is tried again at its `AttemptClock`'s moments, in `next_event`.)
            self.connecting = self.client.connect();
            return Some(self.last_cause());
        }
        if let Some(dropped) = self.dropped_at {
            return Some(self.while_reconnecting(dropped).await);
        }
        match &self.connection_error {
            Some((failure, when)) if when.elapsed() < self.trust_error_for => Some(failure.clone()),
            _ => None,
        }
    }

    /// What a check says after the connection dropped and before the reconnection is known:
    /// "reconnecting" (the verdict holds) while the server accepts a new connection, else
    /// why it does not (refused, timed out: a crash shows at once). A reconnection that has
    /// not completed within [`Self::hold_for`] is a failure.
    async fn while_reconnecting(&mut self, dropped: Instant) -> Failure {
        let lost = self.last_cause();
        if dropped.elapsed() > self.hold_for {
            self.dropped_at = None;
            return Failure::Unreachable(format!(
                "the connection was lost ({}) and not re-established within {}",
                reason_of(&lost),
                humantime::format_duration(self.hold_for)
            ));
        }
        let Some(server) = self.connected_to.clone() else {
            return lost;
        };
        match accepts_connections(&server, self.budget).await {
            Ok(()) => Failure::Reconnecting(format!(
                "the connection was lost ({}); the server accepts connections",
                reason_of(&lost)
            )),
            Err(reason) => {
                // A definite answer: Redis is gone. Later checks use the client's own errors.
                self.dropped_at = None;
                let failure = Failure::Unreachable(reason);
                self.connection_error = Some((failure.clone(), Instant::now()));
                failure
            }
        }
    }

    /// Waits (bounded by the budget) for the client's first connection attempt to be known;
    /// false when the budget ran out first (this once: later checks do not wait).
    async fn settle(&mut self) -> bool {
        if self.settled {
            return true;
        }
        self.settled = true;
        tokio::time::timeout(self.budget, self.next_event()).await.is_ok()
    }

    /// True once the client has reported its first connection attempt, made or failed.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// True when the latest event was a connection made (nothing known to be wrong).
    pub fn is_up(&self) -> bool {
        self.connected_to.is_some() && self.connection_error.is_none()
    }

    /// The server of the latest connection (through Sentinel: the master it resolved).
    pub fn connected_to(&self) -> Option<&Server> {
        self.connected_to.as_ref()
    }

    /// The real cause of a failed command: its timeout, Redis's own error reply, or the last
    /// connection error when fred only says the connection is gone.
    fn failure(&self, error: &Error) -> Failure {
        match error.kind() {
            ErrorKind::Timeout => Failure::Timeout(self.budget),
            ErrorKind::Canceled | ErrorKind::IO => self.last_cause(),
            _ => Failure::Error(describe(error)),
        }
    }

    /// Why there is no connection: the latest connection error, else an attempt under way.
    fn last_cause(&self) -> Failure {
        match &self.connection_error {
            Some((cause, _)) => cause.clone(),
            None => Failure::Unreachable("not connected: a connection attempt is under way".to_owned()),
        }
    }

    /// True once the client closed its event streams.
    pub fn events_closed(&self) -> bool {
        self.events_closed
    }

    /// Waits for the next connection event and records it; starts the reconnect attempt that
    /// falls due meanwhile.
    pub async fn next_event(&mut self) -> Event {
        let retry_at = self.retry_at;
        let retry_due = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = self.errors.recv() => self.on_error(e),
            r = self.reconnects.recv() => self.on_reconnect(r),
            () = retry_due => self.retry(),
        }
    }

    /// Starts a reconnect attempt unless one is under way; the next is due one window later.
    fn retry(&mut self) -> Event {
        self.retry_at = Some(self.attempts.next());
        if self.connecting.is_finished() {
            debug!("reconnecting to redis");
            self.connecting = self.client.connect();
        }
        Event::Retrying
    }

    /// Records the events already queued, without waiting.
    pub fn drain_events(&mut self) {
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
        self.settled = true;
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
                // Refused logins and the like are Redis answering; the rest is no answer.
                let failure = match error.kind() {
                    ErrorKind::Auth | ErrorKind::Unknown | ErrorKind::InvalidCommand | ErrorKind::Cluster => {
                        Failure::Error(reason)
                    }
                    _ => Failure::Unreachable(reason),
                };
                let was_up = self.connection_error.is_none();
                self.connection_error = Some((failure, Instant::now()));
                if self.connected_to.is_some() {
                    // A lost connection, or a failed attempt to make it again: the next
                    // attempt at this connection's next moment.
                    self.retry_at = Some(self.attempts.next());
                }
                if was_up {
                    // A connection that was made has dropped; before the first connection,
                    // an error is a failed attempt.
                    if self.connected_to.is_some() {
                        self.dropped_at = Some(Instant::now());
                    }
                    Event::Lost
                } else {
                    // A reconnect attempt failed: its reason is the answer.
                    self.dropped_at = None;
                    Event::StillDown
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.connection_errors.inc_by(missed);
                Event::StillDown
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.events_closed = true;
                Event::Closed
            }
        }
    }

    fn on_reconnect(&mut self, event: Result<Server, broadcast::error::RecvError>) -> Event {
        self.settled = true;
        match event {
            Ok(server) => {
                // This connection's reconnect slot, from the id Redis gave it.
                let id = self.client.connection_ids().get(&server).copied();
                if let Some(id) = id {
                    self.attempts.take_slot_of(id);
                }
                debug!(server = %server, client_id = id, "redis connected");
                self.connection_error = None;
                self.dropped_at = None;
                self.retry_at = None;
                self.connected_to = Some(server);
                // A new connection may have a new user or a new server: ask INFO afresh.
                self.info_denied = None;
                self.info_schedule.reset();
                Event::Connected
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Event::Connected,
            Err(broadcast::error::RecvError::Closed) => {
                self.events_closed = true;
                Event::Closed
            }
        }
    }

    /// Makes a new connection (the password and TLS files read again) before dropping this
    /// one: the new client connects, bounded by the check budget, then takes this one's place,
    /// and the old one is closed in the background. Checks meanwhile still use the old
    /// connection, so a reconnection on request never fails a check or slows a PONG.
    ///
    /// While the connection is known to be down nothing is replaced: the attempt already under
    /// way reads the files again. A connection task that has ended is started again.
    pub async fn reconnect(&mut self) {
        self.drain_events();
        if self.connecting.is_finished() {
            self.connecting = self.client.connect();
            return;
        }
        if !self.is_up() {
            debug!("reconnect requested while the connection is down: the next attempt reads the files");
            return;
        }
        let mut fresh = match Self::open(self.recipe.clone(), self.connection_errors.clone()) {
            Ok(fresh) => fresh,
            Err(e) => {
                warn!(reason = %e, "cannot make a new connection; keeping this one");
                return;
            }
        };
        if !fresh.settle().await {
            debug!("the new connection is still being made after the check budget");
        }
        let old = std::mem::replace(self, fresh);
        let budget = old.budget;
        tokio::spawn(old.quit(budget));
    }

    /// Closes the client, bounded: QUIT can hang while disconnected.
    pub async fn quit(self, budget: Duration) {
        if tokio::time::timeout(budget, self.client.quit()).await.is_err() {
            debug!("redis QUIT timed out");
        }
    }
}

/// Whether `server` accepts a new connection now (TCP, or its Unix socket), within `budget`;
/// the connection is closed at once, before any TLS handshake or command.
async fn accepts_connections(server: &Server, budget: Duration) -> Result<(), String> {
    let host: &str = &server.host;
    let connect = async {
        if server.port == 0 && host.starts_with('/') {
            tokio::net::UnixStream::connect(host).await.map(drop)
        } else {
            tokio::net::TcpStream::connect((host, server.port))
                .await
                .map(drop)
        }
    };
    match tokio::time::timeout(budget, connect).await {
        Ok(Ok(())) => Ok(()),
        // The OS's own words, as fred's errors give them: "Connection refused".
        Ok(Err(e)) => Err(e
            .to_string()
            .split(" (os error ")
            .next()
            .unwrap_or_default()
            .to_owned()),
        Err(_) => Err(format!(
            "connecting timed out after {}",
            humantime::format_duration(budget)
        )),
    }
}

/// A failure's reason without its kind.
fn reason_of(failure: &Failure) -> String {
    match failure {
        Failure::Unreachable(reason) | Failure::Error(reason) | Failure::Reconnecting(reason) => {
            reason.clone()
        }
        other => other.to_string(),
    }
}
