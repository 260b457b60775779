//! The command line: the clap structs (every flag has an environment twin), and their
//! conversion into the clap-free descriptions [`crate::config`] validates. Each value goes on
//! with where it was given (the flag, or its environment variable), so that an error names
//! what the user wrote. Nothing else in the crate uses clap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValue};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::checks::{ClusterReady, ExpectRole};
use crate::config::{parse_duration, parse_percent, Flags, LogFormat, TargetSpec};
use crate::error::{At, Given, Scope};
use crate::names::DEFAULT_TARGET;

/// The default `--listen` address, shared by the daemon and the `check` subcommand.
pub const DEFAULT_LISTEN: &str = ":8558";

/// A listen address: `HOST:PORT` with an IP address (`127.0.0.1:8558`, `[::1]:8558`),
/// `localhost:PORT` (IPv4 loopback), or `:PORT` for every address, IPv4 and IPv6 (`[::]` as
/// one dual-stack socket; see [`crate::http::bind`]). No other host name: resolving one would
/// make the start wait on DNS.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let expected = "(expected :PORT for every address, IPv4 and IPv6, or IP:PORT, \
                    e.g. :8558, 127.0.0.1:8558, [::1]:8558, localhost:8558)";
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() => (host, port),
        _ => return Err(format!("{value:?} has no port {expected}")),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number {expected}"))?;
    let ip = match host {
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map_or_else(
                || host.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
                |h| h.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
            )
            .ok_or_else(|| format!("{host:?} is not an IP address {expected}"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `check`'s path: one of the daemon's, so it starts with `/` (`/readyz`, `/readyz/redis:role`).
fn parse_path(value: &str) -> Result<String, String> {
    if value.starts_with('/') && !value.contains(char::is_whitespace) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a path of the daemon (expected one starting with /, e.g. /livez, /readyz)"
        ))
    }
}

/// The command line as clap parses it.
#[derive(Parser)]
#[command(name = "redis-healthd", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses `args` (the program name first), noting where each value was given (the flag,
    /// its environment variable, or the default).
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command();
        let matches = command.clone().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.serve.sources = Sources::of(&command, &matches);
        if let (Some(Command::Probe(probe)), Some(("probe", sub))) = (&mut cli.command, matches.subcommand())
        {
            if let Some(sub_command) = command.find_subcommand("probe") {
                probe.sources = Sources::of(sub_command, sub);
            }
        }
        Ok(cli)
    }
}

/// Where each argument's value came from, by clap's argument id (the field name).
#[derive(Clone, Debug, Default)]
pub struct Sources(Vec<(String, At, bool)>);

impl Sources {
    fn of(command: &clap::Command, matches: &ArgMatches) -> Self {
        let sources = command
            .get_arguments()
            .filter_map(|arg| {
                let id = arg.get_id().as_str();
                let long = arg.get_long()?;
                let source = matches.value_source(id);
                let at = match (source, arg.get_env()) {
                    (Some(ValueSource::EnvVariable), Some(env)) => {
                        At::Env(env.to_string_lossy().into_owned())
                    }
                    _ => At::Flag(format!("--{long}")),
                };
                Some((id.to_owned(), at, source == Some(ValueSource::CommandLine)))
            })
            .collect();
        Self(sources)
    }

    /// Where the argument `id` was given.
    fn at(&self, id: &str) -> At {
        self.0.iter().find(|(known, _, _)| known == id).map_or_else(
            || At::Flag(format!("--{}", id.replace('_', "-"))),
            |(_, at, _)| at.clone(),
        )
    }

    /// True when the argument `id` was on the command line itself.
    fn on_command_line(&self, id: &str) -> bool {
        self.0.iter().any(|(known, _, given)| known == id && *given)
    }

    fn given<T>(&self, id: &str, value: T) -> Given<T> {
        Given::new(value, self.at(id))
    }
}

/// Subcommands; without one the daemon serves.
// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Ask a running redis-healthd once (an image's HEALTHCHECK): exit 0 on 2xx, 1 otherwise.
    /// Asks /livez unless told otherwise: `check /readyz` where a service waits for Redis.
    Check(CheckArgs),
    /// Check Redis itself once, like pg_isready: exit 0 usable (pass or warn), 1 Redis answered
    /// but is not usable, 2 no answer, 3 no attempt (bad arguments).
    Probe(ProbeArgs),
}

/// Flags of the `check` subcommand.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The daemon's path to GET. /livez (the default) never fails because Redis is down, so
    /// an engine or orchestrator that restarts unhealthy containers cannot restart the daemon
    /// for it; /readyz carries the Redis verdict (what compose's `service_healthy` waits for).
    #[arg(value_name = "PATH", default_value = "/livez", value_parser = parse_path)]
    pub path: String,
    /// Full URL to GET instead [default: http://127.0.0.1:<port of REDIS_HEALTHD_LISTEN><PATH>]
    #[arg(long, value_name = "URL", conflicts_with = "path")]
    pub url: Option<String>,
    /// Give up after this long (connect and response included).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The daemon's listen address, used to derive the default URL.
    #[arg(long, env = "REDIS_HEALTHD_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR", value_parser = parse_listen, hide = true)]
    pub listen: SocketAddr,
    /// The daemon's web configuration: with TLS in it, the default URL is https://.
    #[arg(
        long = "web.config.file",
        env = "REDIS_HEALTHD_WEB_CONFIG_FILE",
        value_name = "PATH",
        hide = true
    )]
    pub web_config_file: Option<PathBuf>,
}

/// Flags of the daemon.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// A named Redis target, NAME=URL (NAME: a-z, 0-9, _ and -); repeatable, instead of
    /// --redis-url. Its checks are named NAME:responseTime, NAME:role, ...; the other Redis
    /// flags apply to every target.
    // Split at commas only from the environment (see `flags`): on the command line a comma can
    // be part of a password.
    #[arg(
        long = "target",
        env = "REDIS_HEALTHD_TARGETS",
        value_name = "NAME=URL",
        hide_env_values = true
    )]
    pub targets: Vec<String>,
    /// A TOML file with one [[target]] table per Redis (name, url, and any per-target option);
    /// the flags give the defaults.
    #[arg(long, env = "REDIS_HEALTHD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// TLS and basic auth for the HTTP side, in the exporters' web configuration format.
    #[arg(
        long = "web.config.file",
        env = "REDIS_HEALTHD_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<PathBuf>,
    /// Validate the configuration, print it and exit (0 valid, 2 not); connects to nothing.
    #[arg(long)]
    pub check_config: bool,
    /// Where each value came from: set by [`Cli::parse_args`].
    #[arg(skip)]
    pub sources: Sources,
    /// Also answer HAProxy's agent-check on this address (`up ready`, `drain`, `down #reason`,
    /// from the cached verdict); off when not given.
    #[arg(long, env = "REDIS_HEALTHD_AGENT_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    pub agent_listen: Option<SocketAddr>,
    /// HTTP listen address: :PORT (every address, IPv4 and IPv6) or IP:PORT.
    #[arg(long, env = "REDIS_HEALTHD_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Time between two PINGs.
    #[arg(long, env = "REDIS_HEALTHD_INTERVAL", default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,
    /// Budget of one PING, connecting included; at most --interval.
    #[arg(long, env = "REDIS_HEALTHD_TIMEOUT", default_value = "500ms", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A verdict older than this counts as failed (the probe loop is wedged) [default: 3 × --interval]
    #[arg(long, env = "REDIS_HEALTHD_MAX_AGE", value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Consecutive failed checks needed to turn a passing verdict into fail.
    #[arg(long, env = "REDIS_HEALTHD_FAILURE_THRESHOLD", default_value = "1", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_threshold: u32,
    /// Consecutive passing checks needed to turn a failing (or unknown) verdict into pass.
    #[arg(long, env = "REDIS_HEALTHD_SUCCESS_THRESHOLD", default_value = "1", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub success_threshold: u32,
    /// Concurrent HTTP connections; when full, the one idle longest is closed for the newcomer
    /// (a peer address's own first past a quarter of this). Probes and scrapes need a handful;
    /// the cap keeps a flood from exhausting file descriptors (1024 is a common soft limit) or
    /// memory (about 25 KiB per connection).
    #[arg(long, env = "REDIS_HEALTHD_MAX_CONNECTIONS", default_value = "256", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub max_connections: u32,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "REDIS_HEALTHD_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,
}

/// Which Redis, how to log in, and what to check: shared by the daemon and `probe`.
#[derive(Args, Clone)]
pub struct RedisArgs {
    /// Redis to check (redis://[user[:password]@]host[:port][/db]).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Redis ACL user (overrides the URL's).
    #[arg(long, env = "REDIS_USERNAME", value_name = "NAME")]
    pub redis_username: Option<String>,
    /// File holding the Redis password (overrides the URL's; a trailing newline is ignored);
    /// read again at every reconnection and on SIGHUP.
    #[arg(long, env = "REDIS_PASSWORD_FILE", value_name = "PATH")]
    pub redis_password_file: Option<PathBuf>,
    /// Behind Sentinel: file holding the Sentinels' own password (requirepass in
    /// sentinel.conf; overrides the URL's sentinelPassword); read again at every reconnection.
    #[arg(long, env = "REDIS_HEALTHD_SENTINEL_PASSWORD_FILE", value_name = "PATH")]
    pub sentinel_password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to verify a rediss:// server with, instead of the system's.
    #[arg(long, env = "REDIS_HEALTHD_TLS_CA_FILE", value_name = "PATH")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key-file.
    #[arg(long, env = "REDIS_HEALTHD_TLS_CERT_FILE", value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert-file.
    #[arg(long, env = "REDIS_HEALTHD_TLS_KEY_FILE", value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,
    /// Server name to send (SNI) and verify, e.g. when connecting by IP.
    #[arg(long, env = "REDIS_HEALTHD_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// A PONG slower than this is `warn` (still ready).
    #[arg(long, env = "REDIS_HEALTHD_WARN_LATENCY", default_value = "100ms", value_name = "DURATION", value_parser = parse_duration)]
    pub warn_latency: Duration,
    /// Read Redis's state with one INFO per check, sent alongside the PING (redis:role,
    /// redis:replication, redis:memory, redis:persistence); false checks PING only.
    #[arg(long, env = "REDIS_HEALTHD_STATE_CHECKS", default_value = "true", value_name = "BOOL", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub state_checks: bool,
    /// The role Redis must have; any other fails redis:role.
    #[arg(long, env = "REDIS_HEALTHD_EXPECT_ROLE", default_value = "any", value_enum)]
    pub expect_role: ExpectRole,
    /// A replica whose master was last heard from longer ago than this (master_last_io_seconds_ago)
    /// is warn in redis:replication (fail under --expect-role replica): its reads are stale.
    /// Well above the master's 10 s replication ping period.
    #[arg(long, env = "REDIS_HEALTHD_MAX_REPLICATION_LAG", default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub max_replication_lag: Duration,
    /// A Redis Cluster is ready when all its primaries pass, or (majority) when more than half
    /// do: the failing ones then show as warn with their reasons (a cache that serves the rest
    /// of its keyspace).
    #[arg(long, env = "REDIS_HEALTHD_CLUSTER_READY", default_value = "all", value_enum)]
    pub cluster_ready: ClusterReady,
    /// With maxmemory-policy noeviction, used memory from this share of maxmemory on is warn.
    #[arg(long, env = "REDIS_HEALTHD_WARN_MEMORY", default_value = "90%", value_name = "PERCENT", value_parser = parse_percent)]
    pub warn_memory: f64,
    /// Each check also SETs --write-key (expiring after max-age): an error reply (OOM,
    /// READONLY, NOREPLICAS, NOPERM, ...) fails redis:writable.
    #[arg(long, env = "REDIS_HEALTHD_CHECK_WRITES", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub check_writes: bool,
    /// The key --check-writes sets [default: redis-healthd:<hostname>]
    #[arg(long, env = "REDIS_HEALTHD_WRITE_KEY", value_name = "KEY")]
    pub write_key: Option<String>,
    /// While this key exists, redis:drain fails (readiness off): SET it to take Redis out of
    /// rotation, DEL it to put it back.
    #[arg(long, env = "REDIS_HEALTHD_DRAIN_KEY", value_name = "KEY")]
    pub drain_key: Option<String>,
    /// False: report this Redis without gating readiness (its failures make /health warn, never
    /// fail /readyz or /startupz).
    #[arg(long, env = "REDIS_HEALTHD_READINESS", default_value = "true", value_name = "BOOL", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub readiness: bool,
}

/// Flags of the `probe` subcommand (pg_isready for Redis).
#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Budget of the check, connecting included.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Check again until the verdict passes or this much time has passed (exit with the last
    /// code); for entrypoints and init containers.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Print nothing; the exit code says it all.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the health+json document instead of one line.
    #[arg(long)]
    pub json: bool,
    /// Where each value came from: set by [`Cli::parse_args`].
    #[arg(skip)]
    pub sources: Sources,
}

impl ServeArgs {
    /// The daemon's settings as given, each value with where it was given.
    pub fn flags(&self) -> Flags {
        let sources = &self.sources;
        let thresholds = (
            sources.given("failure_threshold", self.failure_threshold),
            sources.given("success_threshold", self.success_threshold),
        );
        Flags {
            defaults: self.redis.spec(sources, thresholds),
            targets: self
                .targets
                .iter()
                .flat_map(|t| match sources.at("targets") {
                    At::Env(_) => t.split(',').map(str::to_owned).collect(),
                    _ => vec![t.clone()],
                })
                .map(|t| sources.given("targets", t))
                .collect(),
            config: self.config.clone().map(|path| sources.given("config", path)),
            redis_url_on_command_line: sources.on_command_line("redis_url"),
            listen: self.listen,
            agent_listen: self.agent_listen,
            interval: sources.given("interval", self.interval),
            timeout: sources.given("timeout", self.timeout),
            max_age: sources.given("max_age", self.max_age),
            max_connections: self.max_connections,
            web_config: self
                .web_config_file
                .clone()
                .map(|path| sources.given("web_config_file", path)),
            log_format: self.log_format,
        }
    }
}

impl ProbeArgs {
    /// The one target `probe` checks, as given (every check must pass once: thresholds of 1).
    pub fn target(&self) -> TargetSpec {
        let one = || Given::new(1, At::Inline);
        self.redis.spec(&self.sources, (one(), one()))
    }
}

impl RedisArgs {
    /// The default target these flags describe (`--redis-url`), and the defaults of every
    /// named target.
    fn spec(&self, sources: &Sources, (failure, success): (Given<u32>, Given<u32>)) -> TargetSpec {
        TargetSpec {
            name: DEFAULT_TARGET.to_owned(),
            scope: Scope::Global,
            url: sources.given("redis_url", self.redis_url.clone()),
            username: sources.given("redis_username", self.redis_username.clone()),
            password_file: sources.given("redis_password_file", self.redis_password_file.clone()),
            sentinel_password_file: sources
                .given("sentinel_password_file", self.sentinel_password_file.clone()),
            tls_ca_file: sources.given("tls_ca_file", self.tls_ca_file.clone()),
            tls_cert_file: sources.given("tls_cert_file", self.tls_cert_file.clone()),
            tls_key_file: sources.given("tls_key_file", self.tls_key_file.clone()),
            tls_server_name: sources.given("tls_server_name", self.tls_server_name.clone()),
            warn_latency: sources.given("warn_latency", self.warn_latency),
            state_checks: sources.given("state_checks", self.state_checks),
            expect_role: sources.given("expect_role", self.expect_role),
            warn_memory: sources.given("warn_memory", self.warn_memory),
            max_replication_lag: sources.given("max_replication_lag", self.max_replication_lag),
            cluster_ready: sources.given("cluster_ready", self.cluster_ready),
            check_writes: sources.given("check_writes", self.check_writes),
            write_key: sources.given("write_key", self.write_key.clone()),
            drain_key: sources.given("drain_key", self.drain_key.clone()),
            failure_threshold: failure,
            success_threshold: success,
            readiness: sources.given("readiness", self.readiness),
        }
    }
}

impl ValueEnum for ExpectRole {
    fn value_variants<'a>() -> &'a [Self] {
        &[ExpectRole::Master, ExpectRole::Replica, ExpectRole::Any]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ExpectRole::Master => "master",
            ExpectRole::Replica => "replica",
            ExpectRole::Any => "any",
        }))
    }
}

impl ValueEnum for ClusterReady {
    fn value_variants<'a>() -> &'a [Self] {
        &[ClusterReady::All, ClusterReady::Majority]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ClusterReady::All => "all",
            ClusterReady::Majority => "majority",
        }))
    }
}

impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Text, LogFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Cli::parse_args(std::iter::once("redis-healthd").chain(args.iter().copied()))
            .unwrap()
            .serve
            .flags()
    }

    #[test]
    fn each_value_says_where_it_was_given() {
        let flags = flags(&["--redis-url", "redis://h", "--tls-ca-file", "/ca.pem"]);
        assert!(flags.redis_url_on_command_line);
        assert_eq!(flags.defaults.url.at, At::Flag("--redis-url".into()));
        assert_eq!(flags.defaults.tls_ca_file.at, At::Flag("--tls-ca-file".into()));
        assert_eq!(flags.interval.at, At::Flag("--interval".into()));
        assert_eq!(flags.max_age.value, None);
        // The environment is read by clap at parse time; the one variable the suite can set
        // without racing other tests is none: only the flag side is checked here, the
        // environment side in tests/cli.rs against the binary.
    }

    #[test]
    fn probe_keeps_its_own_sources() {
        let cli = Cli::parse_args([
            "redis-healthd",
            "probe",
            "--redis-url",
            "redis://h",
            "--timeout",
            "1s",
        ])
        .unwrap();
        let Some(Command::Probe(probe)) = cli.command else {
            panic!("probe parsed as the daemon")
        };
        let spec = probe.target();
        assert_eq!(spec.url.value, "redis://h");
        assert_eq!(spec.url.at, At::Flag("--redis-url".into()));
        assert_eq!(
            (spec.failure_threshold.value, spec.success_threshold.value),
            (1, 1)
        );
    }
}
