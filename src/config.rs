//! Command line and configuration: the clap structs (every flag has an env twin), validation
//! across fields, and the typed [`Config`] the daemon runs on. Nothing here prints a secret.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use url::Url;

use crate::checks::{ExpectRole, Names, Settings, DEFAULT_TARGET};
use crate::config_file::{self, FileTarget};
use crate::credentials::PasswordFile;
use crate::health::Thresholds;
use crate::tls::{Reloader, TlsFiles, TlsMetrics};
use fred::prelude::{Server, ServerConfig};

/// The default `--listen` address, shared by the daemon and the `check` subcommand.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8558";

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
    /// Parses `args` (the program name first), noting where `--redis-url` came from: given
    /// on the command line it conflicts with targets; from `REDIS_URL` it is only ignored.
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.serve.redis_url_on_command_line =
            matches.value_source("redis_url") == Some(clap::parser::ValueSource::CommandLine);
        Ok(cli)
    }
}

/// Subcommands; without one the daemon serves.
// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Probe a running redis-healthd once (for Docker HEALTHCHECK): exit 0 on 2xx, 1 otherwise.
    Check(CheckArgs),
    /// Check Redis itself once, like pg_isready: exit 0 usable (pass or warn), 1 Redis answered
    /// but is not usable, 2 no answer, 3 no attempt (bad arguments).
    Probe(ProbeArgs),
}

/// Flags of the `check` subcommand.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// URL to GET [default: http://127.0.0.1:<port of REDIS_HEALTHD_LISTEN>/readyz]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this long (connect and response included).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The daemon's listen address, used to derive the default URL.
    #[arg(long, env = "REDIS_HEALTHD_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR", hide = true)]
    pub listen: SocketAddr,
}

/// Flags of the daemon.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// A named Redis target, NAME=URL (NAME: a-z, 0-9, _ and -); repeatable, instead of
    /// --redis-url. Its checks are named NAME:responseTime, NAME:role, ...; the other Redis
    /// flags apply to every target.
    #[arg(
        long = "target",
        env = "REDIS_HEALTHD_TARGETS",
        value_name = "NAME=URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub targets: Vec<String>,
    /// A TOML file with one [[target]] table per Redis (name, url, and any per-target option);
    /// the flags give the defaults.
    #[arg(long, env = "REDIS_HEALTHD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// True when --redis-url was on the command line (not from REDIS_URL or the default): set
    /// by [`Cli::parse_args`].
    #[arg(skip)]
    pub redis_url_on_command_line: bool,
    /// Address the HTTP server listens on.
    #[arg(long, env = "REDIS_HEALTHD_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Time between two PINGs.
    #[arg(long, env = "REDIS_HEALTHD_INTERVAL", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
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
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A duration flag: humantime syntax, and never zero.
fn parse_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (expected e.g. 250ms, 2s, 1m30s)")),
    }
}

/// A percentage flag: `90%` or `90`, above 0 and at most 100.
fn parse_percent(value: &str) -> Result<f64, String> {
    let number = value.trim().strip_suffix('%').unwrap_or(value.trim());
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{value:?} is not a percentage above 0 and at most 100 (e.g. 90%)"
        )),
    }
}

/// `redis-healthd:<hostname>`: one key per sidecar (the pod name in Kubernetes).
fn default_write_key() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let host = if ok {
        String::from_utf8_lossy(&name[..len]).into_owned()
    } else {
        String::new()
    };
    format!(
        "redis-healthd:{}",
        if host.is_empty() { "localhost" } else { &host }
    )
}

/// The validated configuration the daemon runs on.
#[derive(Clone)]
pub struct Config {
    /// The Redis targets, in the order the document lists them (at least one).
    pub targets: Vec<Target>,
    pub listen: SocketAddr,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_age: Duration,
    pub max_connections: u32,
    pub log_format: LogFormat,
    /// Things to log once logging is set up (a `REDIS_URL` from the environment ignored).
    pub notices: Vec<String>,
    /// Certificate expiry and failed TLS reloads of every target, for the metrics registry.
    pub tls_metrics: TlsMetrics,
}

/// One named Redis target: where it is, what its checks ask and how they judge, its
/// thresholds, and whether it gates readiness.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub redis: RedisTarget,
    /// What each check asks and how it judges the answers (the check names included).
    pub checks: Settings,
    pub thresholds: Thresholds,
    /// False: informational (its failures never fail `/readyz` or `/startupz`).
    pub readiness: bool,
}

/// Where Redis is and how to log in; `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RedisTarget {
    /// The client configuration parsed from the URL, username and password file applied:
    /// holds secrets.
    client: fred::prelude::Config,
    /// The password file, read at every (re)connection.
    password_file: Option<PasswordFile>,
    /// The URL with every secret replaced by `***`: safe for logs, JSON and errors.
    redacted: String,
    /// How Redis is found.
    topology: Topology,
    /// `rediss://` and friends: TLS to every server.
    tls: bool,
    /// The TLS files, read again at every handshake (`rediss://` only).
    tls_files: Option<Arc<Reloader>>,
}

/// How the URL says Redis is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topology {
    /// One server (TCP or a Unix socket).
    Standalone,
    /// The master named by Sentinel.
    Sentinel,
    /// Every primary of a Redis Cluster, found from seed nodes.
    Cluster,
}

impl RedisTarget {
    /// Checks the scheme and prepares the redacted form; `username` and `password_file`
    /// override the URL's credentials.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password_file: Option<&Path>,
        tls: &TlsFiles,
        tls_server_name: Option<&str>,
        tls_metrics: (&TlsMetrics, &'static str),
    ) -> Result<Self, ConfigError> {
        let parsed = Url::parse(url).map_err(|e| {
            ConfigError(format!(
                "--redis-url: not a valid URL ({e}); expected redis://[user[:password]@]host[:port][/db]"
            ))
        })?;
        let redacted = redact(&parsed);
        let unix = matches!(parsed.scheme(), "redis+unix" | "valkey+unix");
        let tls_url = matches!(
            parsed.scheme(),
            "rediss" | "valkeys" | "rediss-sentinel" | "rediss-cluster"
        );
        let topology = match parsed.scheme() {
            "redis" | "valkey" | "redis+unix" | "valkey+unix" | "rediss" | "valkeys" => Topology::Standalone,
            "redis-sentinel" | "rediss-sentinel" => Topology::Sentinel,
            "redis-cluster" | "rediss-cluster" => Topology::Cluster,
            other => {
                return Err(ConfigError(format!(
                    "--redis-url: unsupported scheme {other:?} in {redacted}; expected redis://, \
                     rediss://, redis+unix://, redis-sentinel:// or redis-cluster://"
                )))
            }
        };
        if unix && matches!(parsed.path(), "" | "/") {
            return Err(ConfigError(format!("--redis-url: no socket path in {redacted}")));
        }
        if !unix && parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError(format!("--redis-url: no host in {redacted}")));
        }
        // fred's error texts name the bad part, never the password.
        let mut client = fred::prelude::Config::from_url(url)
            .map_err(|e| ConfigError(format!("--redis-url: {} in {redacted}", e.details())))?;
        if let Some(username) = username {
            client.username = Some(username.to_owned());
        }
        if !tls_url && (tls.any() || tls_server_name.is_some()) {
            return Err(ConfigError(format!(
                "--tls-* flags need a rediss:// URL, not {redacted}"
            )));
        }
        let tls_files = if tls_url {
            let (metrics, target) = tls_metrics;
            let (config, reloader) = tls.client_config(metrics.clone(), target)?;
            client.tls = Some(config);
            Some(reloader)
        } else {
            None
        };
        if let Some(name) = tls_server_name {
            match &mut client.server {
                ServerConfig::Centralized { server } => server.tls_server_name = Some(name.into()),
                ServerConfig::Clustered { hosts, .. } => {
                    for host in hosts {
                        host.tls_server_name = Some(name.into());
                    }
                }
                _ => {}
            }
        }
        let password_file = password_file
            .map(|path| PasswordFile::new(path, client.username.clone()))
            .transpose()?;
        if let Some(file) = &password_file {
            // fred asks the provider before every AUTH, so a rotated file takes effect on the
            // next connection.
            client.credential_provider = Some(Arc::new(file.clone()));
        }
        Ok(Self {
            client,
            password_file,
            redacted,
            topology,
            tls: tls_url,
            tls_files,
        })
    }

    /// Reads the TLS files again now (SIGHUP), keeping the last good set if one is bad; the
    /// handshakes that follow use what this read.
    pub fn reload_tls(&self) {
        if let Some(files) = &self.tls_files {
            files.reload();
        }
    }

    /// The Redis client's configuration (holds the password: never print it).
    pub fn client_config(&self) -> &fred::prelude::Config {
        &self.client
    }

    /// True when the password comes from a file, read at every (re)connection.
    pub fn has_password_file(&self) -> bool {
        self.password_file.is_some()
    }

    /// The URL with secrets replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The `componentId` of the checked server: the redacted URL, or through Sentinel the
    /// master it resolved (`redis://host:port`) once connected.
    pub fn component_id(&self, connected: Option<&Server>) -> String {
        match (self.topology, connected) {
            (Topology::Sentinel, Some(master)) => self.server_url(master),
            _ => self.redacted.clone(),
        }
    }

    /// A server as `redis://host:port` (`rediss://` over TLS): no credentials.
    pub fn server_url(&self, server: &Server) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if server.host.contains(':') {
            format!("{scheme}://[{}]:{}", server.host, server.port)
        } else {
            format!("{scheme}://{}:{}", server.host, server.port)
        }
    }

    /// The seed nodes of a Redis Cluster URL; `None` for any other kind of URL.
    pub fn cluster_seeds(&self) -> Option<Vec<Server>> {
        match (&self.client.server, self.topology) {
            (ServerConfig::Clustered { hosts, .. }, Topology::Cluster) => Some(hosts.clone()),
            _ => None,
        }
    }

    /// The client configuration for one node of a cluster: credentials and TLS of the URL,
    /// `--tls-server-name` if given.
    pub fn node_config(&self, node: &Server) -> fred::prelude::Config {
        let mut server = node.clone();
        if let ServerConfig::Clustered { hosts, .. } = &self.client.server {
            server.tls_server_name = hosts.first().and_then(|h| h.tls_server_name.clone());
        }
        let mut config = self.client.clone();
        config.server = ServerConfig::Centralized { server };
        config
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.redacted)
            .field("username", &self.client.username)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// The URL with its password and any password-like query parameter replaced by `***`.
pub fn redact(url: &Url) -> String {
    let mut out = url.clone();
    if url.password().is_some() {
        // Cannot fail: the URL already has a password, so it has a host that can carry one.
        let _ = out.set_password(Some("***"));
    }
    if url
        .query_pairs()
        .any(|(k, _)| k.to_ascii_lowercase().contains("password"))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.to_ascii_lowercase().contains("password") {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out.to_string()
}

impl RedisArgs {
    /// The target `name` these flags describe (files read, fields checked against each
    /// other); `write_ttl` is how long a written key lives.
    pub fn target(
        &self,
        name: &str,
        write_ttl: Duration,
        thresholds: Thresholds,
        readiness: bool,
        tls_metrics: &TlsMetrics,
    ) -> Result<Target, ConfigError> {
        let names = Names::for_target(name);
        let redis = RedisTarget::new(
            &self.redis_url,
            self.redis_username.as_deref(),
            self.redis_password_file.as_deref(),
            &TlsFiles {
                ca: self.tls_ca_file.clone(),
                cert: self.tls_cert_file.clone(),
                key: self.tls_key_file.clone(),
            },
            self.tls_server_name.as_deref(),
            (tls_metrics, names.target),
        )?;
        let master_by_topology = match redis.topology {
            Topology::Standalone => None,
            Topology::Sentinel => Some("Sentinel"),
            Topology::Cluster => Some("the cluster"),
        };
        if let (Some(by), ExpectRole::Replica) = (master_by_topology, self.expect_role) {
            return Err(ConfigError(format!(
                "--expect-role replica cannot hold for {}: {by} always names a master",
                redis.redacted
            )));
        }
        for (flag, key) in [("--write-key", &self.write_key), ("--drain-key", &self.drain_key)] {
            if key.as_deref().is_some_and(|k| k.is_empty()) {
                return Err(ConfigError(format!("{flag} must not be empty")));
            }
        }
        let checks = Settings {
            warn_latency: self.warn_latency,
            state: self.state_checks,
            expect_role: self.expect_role,
            master_by_topology,
            warn_memory: self.warn_memory,
            write_key: self
                .check_writes
                .then(|| self.write_key.clone().unwrap_or_else(default_write_key)),
            write_ttl,
            drain_key: self.drain_key.clone(),
            names,
        };
        Ok(Target {
            name: checks.names.target,
            redis,
            checks,
            thresholds,
            readiness,
        })
    }

    /// These flags with a config file's keys for one target laid over them; the file's
    /// relative paths are read from `dir`.
    fn with_file(&self, target: &FileTarget, dir: &Path) -> Result<Self, ConfigError> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| dir.join(p));
        let mut args = self.clone();
        args.redis_url = target.url.clone();
        args.redis_username = target.username.clone().or(args.redis_username);
        args.redis_password_file = path(&target.password_file).or(args.redis_password_file);
        args.tls_ca_file = path(&target.tls_ca_file).or(args.tls_ca_file);
        args.tls_cert_file = path(&target.tls_cert_file).or(args.tls_cert_file);
        args.tls_key_file = path(&target.tls_key_file).or(args.tls_key_file);
        args.tls_server_name = target.tls_server_name.clone().or(args.tls_server_name);
        args.state_checks = target.state_checks.unwrap_or(args.state_checks);
        args.check_writes = target.check_writes.unwrap_or(args.check_writes);
        args.write_key = target.write_key.clone().or(args.write_key);
        args.expect_role = target.expect_role.unwrap_or(args.expect_role);
        args.drain_key = target.drain_key.clone().or(args.drain_key);
        if let Some(text) = &target.warn_latency {
            args.warn_latency =
                parse_duration(text).map_err(|e| ConfigError(format!("warn_latency: {e}")))?;
        }
        if let Some(percent) = &target.warn_memory {
            args.warn_memory =
                parse_percent(&percent.as_text()).map_err(|e| ConfigError(format!("warn_memory: {e}")))?;
        }
        Ok(args)
    }
}

/// A flag's error said in a config file's terms: `--tls-ca-file` is the key `tls_ca_file`.
fn in_file_terms(message: &str) -> String {
    const KEYS: [(&str, &str); 11] = [
        ("--redis-url", "url"),
        ("--redis-username", "username"),
        ("--redis-password-file", "password_file"),
        ("--tls-ca-file", "tls_ca_file"),
        ("--tls-cert-file", "tls_cert_file"),
        ("--tls-key-file", "tls_key_file"),
        ("--tls-server-name", "tls_server_name"),
        ("--tls-* flags", "tls_* keys"),
        ("--write-key", "write_key"),
        ("--drain-key", "drain_key"),
        ("--expect-role", "expect_role"),
    ];
    let mut message = message.to_owned();
    for (flag, key) in KEYS {
        message = message.replace(flag, key);
    }
    message
}

/// A configuration problem: one line naming the flag; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Validates the daemon's flags across fields and reads the password file.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        if args.timeout > args.interval {
            return Err(ConfigError(format!(
                "--timeout ({}) must not be greater than --interval ({})",
                humantime::format_duration(args.timeout),
                humantime::format_duration(args.interval)
            )));
        }
        let max_age = args.max_age.unwrap_or(args.interval * 3);
        if max_age < args.interval + args.timeout {
            return Err(ConfigError(format!(
                "--max-age ({}) must be at least --interval + --timeout ({}), or every verdict goes stale",
                humantime::format_duration(max_age),
                humantime::format_duration(args.interval + args.timeout)
            )));
        }
        let thresholds = Thresholds {
            failure: args.failure_threshold,
            success: args.success_threshold,
        };
        let mut notices = Vec::new();
        let tls_metrics = TlsMetrics::default();
        let targets = if args.targets.is_empty() && args.config.is_none() {
            vec![args
                .redis
                .target(DEFAULT_TARGET, max_age, thresholds, true, &tls_metrics)?]
        } else {
            if args.redis_url_on_command_line {
                let with = if args.config.is_some() {
                    "--config"
                } else {
                    "--target"
                };
                return Err(ConfigError(format!(
                    "--redis-url and {with} cannot be used together: name each Redis with \
                     --target NAME=URL or in the --config file"
                )));
            }
            if std::env::var_os("REDIS_URL").is_some() {
                notices.push(
                    "REDIS_URL from the environment is ignored: the targets come from --target and --config"
                        .to_owned(),
                );
            }
            named_targets(args, max_age, thresholds, &tls_metrics)?
        };
        for target in &targets {
            // A cluster check reads the topology before PINGing the primaries: two budgets.
            if target.redis.topology == Topology::Cluster && max_age < args.interval + args.timeout * 2 {
                return Err(ConfigError(format!(
                    "--max-age ({}) must be at least --interval + 2 × --timeout ({}) for a cluster, \
                     or a slow topology read makes the verdict stale",
                    humantime::format_duration(max_age),
                    humantime::format_duration(args.interval + args.timeout * 2)
                )));
            }
        }
        Ok(Self {
            targets,
            listen: args.listen,
            interval: args.interval,
            timeout: args.timeout,
            max_age,
            max_connections: args.max_connections,
            log_format: args.log_format,
            notices,
            tls_metrics,
        })
    }

    /// The configuration `probe` runs its checks with, listening nowhere. Its interval only
    /// sets the reconnect delay (a tenth: 50 ms, so the first attempt is not held back) and how
    /// long a connection error is trusted without asking again.
    pub fn for_probe(args: &ProbeArgs) -> Result<Self, ConfigError> {
        let thresholds = Thresholds {
            failure: 1,
            success: 1,
        };
        let tls_metrics = TlsMetrics::default();
        let target = args
            .redis
            .target(DEFAULT_TARGET, args.timeout * 3, thresholds, true, &tls_metrics)?;
        Ok(Self {
            targets: vec![target],
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            interval: Duration::from_millis(500),
            timeout: args.timeout,
            max_age: args.timeout * 3,
            max_connections: 1,
            log_format: LogFormat::Text,
            notices: Vec::new(),
            tls_metrics,
        })
    }

    /// The shortest delay before a reconnect attempt (jitter of up to an interval is added to
    /// it, see `connection::reconnect_policy`), and the shortest gap between two checks that
    /// connection events trigger: a tenth of the interval, between 50 ms and 1 s.
    pub fn reconnect_delay(&self) -> Duration {
        (self.interval / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("targets", &self.targets)
            .field("listen", &self.listen)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("max_age", &self.max_age)
            .field("max_connections", &self.max_connections)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// The targets of `--target NAME=URL` flags and of the `--config` file, in that order; every
/// error names the flag and target, or the file, target and key.
fn named_targets(
    args: &ServeArgs,
    write_ttl: Duration,
    thresholds: Thresholds,
    tls_metrics: &TlsMetrics,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut add = |target: Target, place: &dyn Fn() -> String| {
        if targets.iter().any(|t| t.name == target.name) {
            return Err(ConfigError(format!(
                "{}: another target is named {:?}",
                place(),
                target.name
            )));
        }
        targets.push(target);
        Ok(())
    };
    for spec in &args.targets {
        let Some((name, url)) = spec.split_once('=') else {
            return Err(ConfigError(format!(
                "--target: expected NAME=URL (e.g. cache=redis://cache:6379), not {:?}",
                spec.split(':').next().unwrap_or_default()
            )));
        };
        config_file::check_name(name).map_err(|e| {
            // A URL given without a name splits at a `=` of its password: never echo that.
            if name.contains([':', '/', '@']) {
                ConfigError("--target: expected NAME=URL with NAME of a-z, 0-9, _ and - (e.g. cache=redis://cache:6379)".into())
            } else {
                ConfigError(format!("--target: {e}"))
            }
        })?;
        let mut redis = args.redis.clone();
        redis.redis_url = url.to_owned();
        let target = redis
            .target(name, write_ttl, thresholds, true, tls_metrics)
            .map_err(|e| ConfigError(format!("--target {name}: {}", e.0.replace("--redis-url: ", ""))))?;
        add(target, &|| format!("--target {name}"))?;
    }
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("--config: cannot read {}: {e}", path.display())))?;
        let file = config_file::parse(&text)
            .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for table in &file {
            let place = || format!("--config {}: target {:?}", path.display(), table.name);
            let thresholds = Thresholds {
                failure: table.failure_threshold.unwrap_or(thresholds.failure),
                success: table.success_threshold.unwrap_or(thresholds.success),
            };
            for (key, value) in [
                ("failure_threshold", thresholds.failure),
                ("success_threshold", thresholds.success),
            ] {
                if value == 0 {
                    return Err(ConfigError(format!("{}: {key}: must be at least 1", place())));
                }
            }
            let target = args
                .redis
                .with_file(table, dir)
                .and_then(|redis| {
                    redis.target(
                        &table.name,
                        write_ttl,
                        thresholds,
                        table.readiness.unwrap_or(true),
                        tls_metrics,
                    )
                })
                .map_err(|e| ConfigError(format!("{}: {}", place(), in_file_terms(&e.0))))?;
            add(target, &place)?;
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::parse_args(std::iter::once("redis-healthd").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(&cli.serve).map_err(|e| e.to_string())
    }

    proptest::proptest! {
        #[test]
        fn any_duration_text_is_parsed_or_refused_never_zero(text in "\\PC{0,24}|[0-9]{1,6} ?(ms|s|m|h|us|ns)") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero());
            }
        }

        #[test]
        fn any_url_text_is_accepted_or_refused_without_panicking(url in "\\PC{0,80}|(redis|rediss|http|valkey)://[ -~]{0,60}") {
            if let Err(e) = RedisTarget::new(&url, None, None, &TlsFiles::default(), None, (&TlsMetrics::default(), "redis")) {
                proptest::prop_assert!(e.0.starts_with("--redis-url"), "{}", e);
            }
        }
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.max_age, Duration::from_secs(3));
        assert_eq!(config.listen, "0.0.0.0:8558".parse().unwrap());
        assert_eq!(config.targets[0].redis.redacted(), "redis://127.0.0.1:6379");
        assert_eq!(config.reconnect_delay(), Duration::from_millis(100));
    }

    #[test]
    fn durations_need_units_and_must_not_be_zero() {
        let err = parse(&["--interval", "0s"]).err().unwrap();
        assert!(
            err.contains("--interval") && err.contains("greater than zero"),
            "{err}"
        );
        let err = parse(&["--timeout", "5"]).err().unwrap();
        assert!(err.contains("--timeout"), "{err}");
        let config = parse(&["--interval", "2s", "--timeout", "1s 500ms"]).unwrap();
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.max_age, Duration::from_secs(6));
    }

    #[test]
    fn timeout_must_fit_in_interval() {
        let err = parse(&["--interval", "500ms", "--timeout", "750ms"])
            .err()
            .unwrap();
        assert!(
            err.contains("--timeout (750ms)") && err.contains("--interval (500ms)"),
            "{err}"
        );
        let err = parse(&["--max-age", "1s"]).err().unwrap();
        assert!(err.contains("--max-age"), "{err}");
    }

    #[test]
    fn unix_socket_urls_need_a_path() {
        let config = parse(&["--redis-url", "redis+unix:///run/redis/redis.sock"]).unwrap();
        assert_eq!(
            config.targets[0].redis.redacted(),
            "redis+unix:///run/redis/redis.sock"
        );
        let err = parse(&["--redis-url", "redis+unix://"]).err().unwrap();
        assert!(err.contains("no socket path"), "{err}");
    }

    #[test]
    fn cluster_urls_name_their_seeds() {
        let config = parse(&[
            "--redis-url",
            "rediss-cluster://app:hunter2@10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002",
            "--tls-server-name",
            "redis.internal",
        ])
        .unwrap();
        let seeds = config.targets[0].redis.cluster_seeds().unwrap();
        let mut seeds: Vec<String> = seeds
            .iter()
            .map(|s| config.targets[0].redis.server_url(s))
            .collect();
        seeds.sort();
        assert_eq!(
            seeds,
            [
                "rediss://10.0.0.1:7000",
                "rediss://10.0.0.2:7001",
                "rediss://10.0.0.3:7002"
            ]
        );
        let node = config.targets[0]
            .redis
            .node_config(&Server::new("10.0.0.9", 7009));
        match &node.server {
            ServerConfig::Centralized { server } => {
                assert_eq!(server.port, 7009);
                assert_eq!(server.tls_server_name.as_deref(), Some("redis.internal"));
            }
            other => panic!("a node is one server, not {other:?}"),
        }
        assert_eq!(
            (node.username.as_deref(), node.password.as_deref()),
            (Some("app"), Some("hunter2"))
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(parse(&["--redis-url", "redis://10.0.0.1"]).unwrap().targets[0]
            .redis
            .cluster_seeds()
            .is_none());
        let err = parse(&[
            "--redis-url",
            "redis-cluster://h",
            "--interval",
            "1s",
            "--timeout",
            "500ms",
            "--max-age",
            "1500ms",
        ])
        .err()
        .unwrap();
        assert!(
            err.starts_with("--max-age (1s 500ms) must be at least --interval + 2 × --timeout (2s)"),
            "{err}"
        );
    }

    #[test]
    fn state_check_flags() {
        let config = parse(&[]).unwrap();
        assert!(config.targets[0].checks.state);
        assert_eq!(config.targets[0].checks.expect_role, ExpectRole::Any);
        assert_eq!(config.targets[0].checks.warn_memory, 90.0);
        assert_eq!(
            (
                &config.targets[0].checks.write_key,
                &config.targets[0].checks.drain_key
            ),
            (&None, &None)
        );
        let config = parse(&[
            "--state-checks",
            "false",
            "--expect-role",
            "master",
            "--warn-memory",
            "75.5",
            "--check-writes",
            "--drain-key",
            "drain",
        ])
        .unwrap();
        assert!(!config.targets[0].checks.state);
        assert_eq!(config.targets[0].checks.expect_role, ExpectRole::Master);
        assert_eq!(config.targets[0].checks.warn_memory, 75.5);
        let key = config.targets[0].checks.write_key.clone().unwrap();
        assert!(
            key.starts_with("redis-healthd:") && key.len() > "redis-healthd:".len(),
            "{key}"
        );
        assert_eq!(config.targets[0].checks.write_ttl, config.max_age);
        assert_eq!(config.targets[0].checks.drain_key.as_deref(), Some("drain"));
        for (args, flag) in [
            (&["--warn-memory", "0%"][..], "--warn-memory"),
            (&["--warn-memory", "101"][..], "--warn-memory"),
            (&["--expect-role", "primary"][..], "--expect-role"),
            (&["--state-checks", "maybe"][..], "--state-checks"),
            (&["--drain-key", ""][..], "--drain-key"),
        ] {
            let err = parse(args).err().unwrap();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let err = parse(&[
            "--redis-url",
            "redis-sentinel://h:26379/0?sentinelServiceName=m",
            "--expect-role",
            "replica",
        ])
        .err()
        .unwrap();
        assert!(err.starts_with("--expect-role replica cannot hold"), "{err}");
    }

    #[test]
    fn thresholds_start_at_one() {
        let err = parse(&["--failure-threshold", "0"]).err().unwrap();
        assert!(err.contains("--failure-threshold"), "{err}");
    }

    #[test]
    fn non_redis_schemes_are_refused_without_leaking_the_password() {
        for url in [
            "http://u:hunter2@host:6379",
            "redis-clusters://:hunter2@host:6380",
            "hunter2",
        ] {
            let err = parse(&["--redis-url", url]).err().unwrap();
            assert!(err.contains("--redis-url"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = parse(&["--redis-url", "redis://h", "--tls-server-name", "h"])
            .err()
            .unwrap();
        assert!(err.contains("need a rediss:// URL"), "{err}");
        let err = parse(&["--redis-url", "rediss://h", "--tls-cert-file", "/etc/hostname"])
            .err()
            .unwrap();
        assert!(err.starts_with("--tls-cert-file"), "{err}");
    }

    #[test]
    fn redaction_hides_passwords_in_userinfo_and_query() {
        let target = RedisTarget::new(
            "redis://user:p%40ss@host:6379/2?sentinelPassword=x1",
            None,
            None,
            &TlsFiles::default(),
            None,
            (&TlsMetrics::default(), "redis"),
        )
        .unwrap();
        assert_eq!(
            target.redacted(),
            "redis://user:***@host:6379/2?sentinelPassword=***"
        );
        let target = RedisTarget::new(
            "redis://:hunter2@host",
            Some("app"),
            None,
            &TlsFiles::default(),
            None,
            (&TlsMetrics::default(), "redis"),
        )
        .unwrap();
        let debug = format!("{target:?}");
        assert!(!debug.contains("hunter2") && debug.contains("app"), "{debug}");
        assert_eq!(target.to_string(), "redis://:***@host");
    }

    #[test]
    fn password_file_drops_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("redis-healthd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(crate::credentials::read(&file).unwrap(), "s3cret");
        let config = parse(&["--redis-password-file", file.to_str().unwrap()]).unwrap();
        assert!(config.targets[0].redis.has_password_file());
        assert!(!format!("{config:?}").contains("s3cret"));
        std::fs::write(&file, "\n").unwrap();
        let err = parse(&["--redis-password-file", file.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(err.contains("is empty"), "{err}");
        let missing = dir.join("missing");
        let err = parse(&["--redis-password-file", missing.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(err.starts_with("--redis-password-file: cannot read"), "{err}");
    }
}
