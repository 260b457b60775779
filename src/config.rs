//! The validated configuration the daemon runs on, clap-free. Every target, the one
//! `--redis-url` describes, each `--target NAME=URL` and each `[[target]]` of a `--config`
//! file, is first a [`TargetSpec`]: the same description, each value with where it was given.
//! One function, [`target`], checks a description and builds the [`Target`]; so flags and
//! file keys follow the same rules, and an error names the flag, variable or key at fault.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::web_config::Web;

use crate::address::{is_tls_scheme, RedisAddress, Topology};
use crate::checks::{ClusterReady, ExpectRole, Plan};
use crate::config_file::{self, FileTarget};
use crate::error::{AddressKeys, At, ConfigError, Given, Scope};
use crate::health::Thresholds;
use crate::names::{check_target_name, Names};
use crate::tls::{TlsFiles, TlsMetrics};
pub use crate::units::{parse_duration, parse_percent};
use crate::write_key::{default_write_key, hash_tag};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The daemon's settings as given (by flags and their environment twins), not yet checked.
pub struct Flags {
    /// The target `--redis-url` describes, whose values are also every named target's
    /// defaults.
    pub defaults: TargetSpec,
    /// `--target NAME=URL` values, as given.
    pub targets: Vec<Given<String>>,
    pub config: Option<Given<PathBuf>>,
    /// `--redis-url` was on the command line itself (beside targets that is a conflict; from
    /// `REDIS_URL` it is only ignored).
    pub redis_url_on_command_line: bool,
    pub listen: SocketAddr,
    pub agent_listen: Option<SocketAddr>,
    pub interval: Given<Duration>,
    pub timeout: Given<Duration>,
    pub max_age: Given<Option<Duration>>,
    pub max_connections: u32,
    pub log_format: LogFormat,
    /// `--web.config.file`.
    pub web_config: Option<Given<PathBuf>>,
}

/// One target as described, each value with where it was given. No `Debug`: the URL may hold
/// a password.
#[derive(Clone)]
pub struct TargetSpec {
    pub name: String,
    /// Where the target is described (errors begin with it).
    pub scope: Scope,
    pub url: Given<String>,
    pub username: Given<Option<String>>,
    pub password_file: Given<Option<PathBuf>>,
    pub sentinel_password_file: Given<Option<PathBuf>>,
    pub tls_ca_file: Given<Option<PathBuf>>,
    pub tls_cert_file: Given<Option<PathBuf>>,
    pub tls_key_file: Given<Option<PathBuf>>,
    pub tls_server_name: Given<Option<String>>,
    pub warn_latency: Given<Duration>,
    pub state_checks: Given<bool>,
    pub expect_role: Given<ExpectRole>,
    pub warn_memory: Given<f64>,
    pub max_replication_lag: Given<Duration>,
    pub cluster_ready: Given<ClusterReady>,
    pub check_writes: Given<bool>,
    pub write_key: Given<Option<String>>,
    pub drain_key: Given<Option<String>>,
    pub failure_threshold: Given<u32>,
    pub success_threshold: Given<u32>,
    /// False: informational (its failures never fail `/readyz` or `/startupz`).
    pub readiness: Given<bool>,
}

/// The validated configuration the daemon runs on.
#[derive(Clone)]
pub struct Config {
    /// The Redis targets, in the order the document lists them (at least one).
    pub targets: Vec<Target>,
    pub listen: SocketAddr,
    /// Where HAProxy's agent-check is answered, if anywhere.
    pub agent_listen: Option<SocketAddr>,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_age: Duration,
    pub max_connections: u32,
    pub log_format: LogFormat,
    /// Things to log once logging is set up (a `REDIS_URL` from the environment ignored).
    pub notices: Vec<String>,
    /// Certificate expiry and failed TLS reloads of every target, for the metrics registry.
    pub tls_metrics: TlsMetrics,
    /// `--web.config.file`, read and checked: its path, what it read and the settings built.
    pub web: Option<Web>,
}

/// One named Redis target: where it is, what its checks ask and how they judge, its
/// thresholds, and whether it gates readiness.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub redis: RedisAddress,
    /// What each check asks and how it judges the answers (the check names included).
    pub checks: Plan,
    pub thresholds: Thresholds,
    /// False: informational (its failures never fail `/readyz` or `/startupz`).
    pub readiness: bool,
}

fn format_duration(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

impl Config {
    /// Checks the daemon's settings across fields, reads the `--config` file and every
    /// password and TLS file once.
    pub fn from_flags(flags: Flags) -> Result<Self, ConfigError> {
        let global = Scope::Global;
        let (interval, timeout) = (&flags.interval, &flags.timeout);
        if timeout.value > interval.value {
            return Err(ConfigError::conflict(
                &global,
                format!(
                    "{} ({}) must not be greater than {} ({})",
                    timeout.at,
                    format_duration(timeout.value),
                    interval.at,
                    format_duration(interval.value)
                ),
            ));
        }
        let max_age = flags.max_age.value.unwrap_or(interval.value * 3);
        let at_least = |budgets: u32, what: &str, why: &str| {
            let needed = interval.value + timeout.value * budgets;
            if max_age >= needed {
                return Ok(());
            }
            let timeouts = if budgets == 1 {
                timeout.at.to_string()
            } else {
                format!("{budgets} × {}", timeout.at)
            };
            Err(ConfigError::conflict(
                &global,
                format!(
                    "{} ({}) must be at least {} + {timeouts} ({}){what}, or {why}",
                    flags.max_age.at,
                    format_duration(max_age),
                    interval.at,
                    format_duration(needed)
                ),
            ))
        };
        at_least(1, "", "every verdict goes stale")?;
        let mut notices = Vec::new();
        let tls_metrics = TlsMetrics::default();
        let specs = if flags.targets.is_empty() && flags.config.is_none() {
            vec![flags.defaults.clone()]
        } else {
            if flags.redis_url_on_command_line {
                let with = if flags.config.is_some() {
                    "--config"
                } else {
                    "--target"
                };
                return Err(ConfigError::conflict(
                    &global,
                    format!(
                        "--redis-url and {with} cannot be used together: name each Redis with \
                         --target NAME=URL or in the --config file"
                    ),
                ));
            }
            if let At::Env(variable) = &flags.defaults.url.at {
                notices.push(format!(
                    "{variable} from the environment is ignored: the targets come from --target and --config"
                ));
            }
            if flags.config.is_some() {
                let credentials = [
                    flags.defaults.username.as_given().map(|g| g.at),
                    flags.defaults.password_file.as_given().map(|g| g.at),
                    flags.defaults.sentinel_password_file.as_given().map(|g| g.at),
                ];
                for at in credentials.into_iter().flatten() {
                    notices.push(format!(
                        "{at} is not used for the --config file's targets: each [[target]] takes its \
                         credentials from its own keys"
                    ));
                }
            }
            named_specs(&flags)?
        };
        for spec in &specs {
            // `--target` on the command line, or `--redis-url` there (not from the environment).
            let (flag, shown) = match spec.scope {
                Scope::Target { .. } => ("--target", matches!(spec.url.at, At::Flag(_))),
                _ => ("--redis-url", flags.redis_url_on_command_line),
            };
            if shown && url::Url::parse(&spec.url.value).is_ok_and(|u| u.password().is_some()) {
                notices.push(format!(
                    "the password in {flag} is readable by every local user (ps, /proc/<pid>/cmdline): \
                     give it in a file with --redis-password-file"
                ));
            }
        }
        let mut targets: Vec<Target> = Vec::with_capacity(specs.len());
        for spec in &specs {
            if targets.iter().any(|t| t.name == spec.name) {
                return Err(ConfigError::conflict(
                    &spec.scope,
                    format!("another target is named {:?}", spec.name),
                ));
            }
            let target = target(spec, max_age, &tls_metrics)?;
            if target.redis.topology() == Topology::Cluster {
                // A cluster check reads the topology before PINGing the primaries: two budgets.
                at_least(
                    2,
                    " for a cluster",
                    "a slow topology read makes the verdict stale",
                )?;
            }
            targets.push(target);
        }
        let web = flags
            .web_config
            .as_ref()
            .map(|given| Web::load(&given.value).map_err(|e| ConfigError::at(&Scope::Global, &given.at, e)))
            .transpose()?;
        Ok(Self {
            targets,
            listen: flags.listen,
            agent_listen: flags.agent_listen,
            interval: interval.value,
            timeout: timeout.value,
            max_age,
            max_connections: flags.max_connections,
            log_format: flags.log_format,
            notices,
            tls_metrics,
            web,
        })
    }

    /// The configuration `probe` runs its checks with, listening nowhere. Its interval only
    /// sets the reconnect delay (a tenth: 50 ms, so the first attempt is not held back) and how
    /// long a connection error is trusted without asking again.
    pub fn for_probe(spec: &TargetSpec, timeout: Duration) -> Result<Self, ConfigError> {
        let tls_metrics = TlsMetrics::default();
        let target = target(spec, timeout * 3, &tls_metrics)?;
        Ok(Self {
            targets: vec![target],
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            agent_listen: None,
            interval: Duration::from_millis(500),
            timeout,
            max_age: timeout * 3,
            max_connections: 1,
            log_format: LogFormat::Text,
            web: None,
            notices: Vec::new(),
            tls_metrics,
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("targets", &self.targets)
            .field("listen", &self.listen)
            .field("agent_listen", &self.agent_listen)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("max_age", &self.max_age)
            .field("max_connections", &self.max_connections)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Checks one target's description and builds it (files read, fields checked against each
/// other); `write_ttl` is how long a written key lives.
pub fn target(
    spec: &TargetSpec,
    write_ttl: Duration,
    tls_metrics: &TlsMetrics,
) -> Result<Target, ConfigError> {
    let scope = &spec.scope;
    for threshold in [&spec.failure_threshold, &spec.success_threshold] {
        if threshold.value == 0 {
            return Err(ConfigError::at(
                scope,
                &threshold.at,
                "must be at least 1".to_owned(),
            ));
        }
    }
    let names = Names::for_target(&spec.name);
    let tls_options = [
        &spec.tls_ca_file.at,
        &spec.tls_cert_file.at,
        &spec.tls_key_file.at,
    ];
    let first_tls = [
        spec.tls_ca_file.value.is_some(),
        spec.tls_cert_file.value.is_some(),
        spec.tls_key_file.value.is_some(),
    ]
    .iter()
    .zip(tls_options)
    .find_map(|(given, at)| given.then_some(at))
    .or(spec
        .tls_server_name
        .value
        .as_ref()
        .map(|_| &spec.tls_server_name.at));
    let keys = AddressKeys {
        url: &spec.url.at,
        password_file: &spec.password_file.at,
        sentinel_password_file: &spec.sentinel_password_file.at,
        tls_ca_file: &spec.tls_ca_file.at,
        tls_cert_file: &spec.tls_cert_file.at,
        tls_key_file: &spec.tls_key_file.at,
        first_tls,
    };
    let redis = RedisAddress::new(
        &spec.url.value,
        spec.username.value.as_deref(),
        spec.password_file.value.as_deref(),
        spec.sentinel_password_file.value.as_deref(),
        &TlsFiles {
            ca: spec.tls_ca_file.value.clone(),
            cert: spec.tls_cert_file.value.clone(),
            key: spec.tls_key_file.value.clone(),
        },
        spec.tls_server_name.value.as_deref(),
        (tls_metrics, names.target),
    )
    .map_err(|e| ConfigError::address(scope, &keys, e))?;
    if redis.username_without_password() {
        let at = if spec.username.value.is_some() {
            &spec.username.at
        } else {
            &spec.url.at
        };
        return Err(ConfigError::at(
            scope,
            at,
            "a username needs a password (in the URL or a password file): without one no AUTH is \
             sent and the checks run as the default user (for an ACL user with nopass, give any \
             password)"
                .to_owned(),
        ));
    }
    let master_by_topology = match redis.topology() {
        Topology::Standalone => None,
        Topology::Sentinel => Some("Sentinel"),
        Topology::Cluster => Some("the cluster"),
    };
    if let (Some(by), ExpectRole::Replica) = (master_by_topology, spec.expect_role.value) {
        return Err(ConfigError::at(
            scope,
            &spec.expect_role.at,
            format!(
                "replica cannot hold for {}: {by} always names a master",
                redis.redacted()
            ),
        ));
    }
    // A cluster's primaries are each written a key in their own slots, by a hash tag added to
    // the key: one the key already has would pin every primary's key to one slot.
    let tagged = spec
        .write_key
        .value
        .as_deref()
        .filter(|key| hash_tag(key).is_some());
    if let (Topology::Cluster, true, Some(key)) = (redis.topology(), spec.check_writes.value, tagged) {
        return Err(ConfigError::at(
            scope,
            &spec.write_key.at,
            format!(
                "{key:?} has a hash tag ({{{}}}): in a cluster each primary is written a key in \
                 one of its own slots, by a hash tag redis-healthd adds; give a key without one",
                hash_tag(key).unwrap_or_default()
            ),
        ));
    }
    for key in [&spec.write_key, &spec.drain_key] {
        if key.value.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::at(scope, &key.at, "must not be empty".to_owned()));
        }
    }
    let checks = Plan {
        warn_latency: spec.warn_latency.value,
        state: spec.state_checks.value,
        expect_role: spec.expect_role.value,
        master_by_topology,
        warn_memory: spec.warn_memory.value,
        max_replication_lag: spec.max_replication_lag.value,
        cluster_ready: spec.cluster_ready.value,
        write_key: spec
            .check_writes
            .value
            .then(|| spec.write_key.value.clone().unwrap_or_else(default_write_key)),
        write_ttl,
        drain_key: spec.drain_key.value.clone(),
        names,
    };
    Ok(Target {
        name: checks.names.target,
        redis,
        checks,
        thresholds: Thresholds {
            failure: spec.failure_threshold.value,
            success: spec.success_threshold.value,
        },
        readiness: spec.readiness.value,
    })
}

/// The descriptions of the `--target NAME=URL` flags and of the `--config` file's tables, in
/// that order.
fn named_specs(flags: &Flags) -> Result<Vec<TargetSpec>, ConfigError> {
    let mut specs = Vec::new();
    for given in &flags.targets {
        let at = &given.at;
        let Some((name, url)) = given.value.split_once('=') else {
            return Err(ConfigError::at(
                &Scope::Global,
                at,
                // Never a quote of the value: it may be a piece of a password.
                "expected NAME=URL (e.g. cache=redis://cache:6379): the value has no `=`".to_owned(),
            ));
        };
        if check_target_name(name).is_err() {
            // Not quoted: a URL given without a name splits at a `=` of its password.
            let problem = "expected NAME=URL with NAME of 1 to 64 of a-z, 0-9, _ and - \
                           (e.g. cache=redis://cache:6379): the part before the first `=` is not one";
            return Err(ConfigError::at(&Scope::Global, at, problem.to_owned()));
        }
        let mut spec = flags.defaults.clone();
        spec.name = name.to_owned();
        spec.scope = Scope::Target {
            given_as: at.clone(),
            name: name.to_owned(),
        };
        spec.url = Given::new(url.to_owned(), At::Inline);
        specs.push(spec);
    }
    if let Some(path) = &flags.config {
        let text = std::fs::read_to_string(&path.value).map_err(|e| {
            ConfigError::at(
                &Scope::Global,
                &path.at,
                format!("cannot read {}: {e}", path.value.display()),
            )
        })?;
        let file_scope = Scope::File {
            path: path.value.clone(),
            target: None,
        };
        let tables = config_file::parse(&text).map_err(|e| ConfigError {
            scope: Box::new(file_scope),
            at: None,
            problem: Box::new(e.into()),
        })?;
        let dir = path.value.parent().unwrap_or(Path::new("."));
        for table in &tables {
            specs.push(file_spec(&flags.defaults, table, &path.value, dir)?);
        }
    }
    Ok(specs)
}

/// A `[[target]]` table laid over the flags' values: each key the table sets replaces the
/// flag's; relative paths are read from `dir`, the file's directory.
fn file_spec(
    defaults: &TargetSpec,
    table: &FileTarget,
    path: &Path,
    dir: &Path,
) -> Result<TargetSpec, ConfigError> {
    let scope = Scope::File {
        path: path.to_owned(),
        target: Some(table.name.clone()),
    };
    fn over<T: Clone>(key: &'static str, value: Option<T>, default: &Given<T>) -> Given<T> {
        value.map_or_else(|| default.clone(), |v| Given::new(v, At::Key(key)))
    }
    // An optional key set to "" means none: it turns off what the flags give.
    fn some<T: Clone>(
        key: &'static str,
        value: Option<Option<T>>,
        default: &Given<Option<T>>,
    ) -> Given<Option<T>> {
        over(key, value, default)
    }
    let text = |t: &Option<String>| t.as_ref().map(|t| (!t.is_empty()).then(|| t.clone()));
    let file = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| (!p.as_os_str().is_empty()).then(|| dir.join(p)))
    };
    // Credentials go only to the server they were given for: a table's own keys, never the
    // flags'. TLS options of the flags apply to the table's target only if it speaks TLS.
    let own = |key: &'static str, value: Option<Option<PathBuf>>| Given::new(value.flatten(), At::Key(key));
    let tls = table
        .url
        .split_once("://")
        .is_some_and(|(scheme, _)| is_tls_scheme(scheme));
    let tls_file = |key: &'static str, value: &Option<PathBuf>, default: &Given<Option<PathBuf>>| {
        if tls {
            some(key, file(value), default)
        } else {
            own(key, file(value))
        }
    };
    let parsed =
        |key: &'static str, text: Option<String>, parse: fn(&str) -> Result<_, String>, default| match text {
            Some(text) => parse(&text)
                .map(|v| Given::new(v, At::Key(key)))
                .map_err(|e| ConfigError::at(&scope, &At::Key(key), e)),
            None => Ok(Given::clone(default)),
        };
    Ok(TargetSpec {
        name: table.name.clone(),
        url: Given::new(table.url.clone(), At::Key("url")),
        username: Given::new(text(&table.username).flatten(), At::Key("username")),
        password_file: own("password_file", file(&table.password_file)),
        sentinel_password_file: own("sentinel_password_file", file(&table.sentinel_password_file)),
        tls_ca_file: tls_file("tls_ca_file", &table.tls_ca_file, &defaults.tls_ca_file),
        tls_cert_file: tls_file("tls_cert_file", &table.tls_cert_file, &defaults.tls_cert_file),
        tls_key_file: tls_file("tls_key_file", &table.tls_key_file, &defaults.tls_key_file),
        tls_server_name: if tls {
            some(
                "tls_server_name",
                text(&table.tls_server_name),
                &defaults.tls_server_name,
            )
        } else {
            Given::new(text(&table.tls_server_name).flatten(), At::Key("tls_server_name"))
        },
        warn_latency: parsed(
            "warn_latency",
            table.warn_latency.clone(),
            parse_duration,
            &defaults.warn_latency,
        )?,
        state_checks: over("state_checks", table.state_checks, &defaults.state_checks),
        expect_role: over("expect_role", table.expect_role, &defaults.expect_role),
        warn_memory: match &table.warn_memory {
            Some(percent) => parse_percent(&percent.as_text())
                .map(|v| Given::new(v, At::Key("warn_memory")))
                .map_err(|e| ConfigError::at(&scope, &At::Key("warn_memory"), e))?,
            None => defaults.warn_memory.clone(),
        },
        max_replication_lag: parsed(
            "max_replication_lag",
            table.max_replication_lag.clone(),
            parse_duration,
            &defaults.max_replication_lag,
        )?,
        cluster_ready: over("cluster_ready", table.cluster_ready, &defaults.cluster_ready),
        check_writes: over("check_writes", table.check_writes, &defaults.check_writes),
        write_key: some("write_key", text(&table.write_key), &defaults.write_key),
        drain_key: some("drain_key", text(&table.drain_key), &defaults.drain_key),
        failure_threshold: over(
            "failure_threshold",
            table.failure_threshold,
            &defaults.failure_threshold,
        ),
        success_threshold: over(
            "success_threshold",
            table.success_threshold,
            &defaults.success_threshold,
        ),
        readiness: over("readiness", table.readiness, &defaults.readiness),
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::connection::{reconnect_delay, reconnect_window};
    use fred::prelude::{Server, ServerConfig};

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::parse_args(std::iter::once("redis-healthd").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_flags(cli.serve.flags()).map_err(|e| e.to_string())
    }

    proptest::proptest! {
        #[test]
        fn any_duration_text_is_parsed_or_refused_never_zero(text in "\\PC{0,24}|[0-9]{1,6} ?(ms|s|m|h|us|ns)") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(!d.is_zero());
            }
        }

        #[test]
        fn any_url_flag_is_accepted_or_refused_naming_the_flag(url in "\\PC{0,80}|(redis|rediss|http|valkey)://[ -~]{0,60}") {
            // `=`: a value that starts with `-` is still the URL, not a flag.
            if let Err(e) = parse(&[&format!("--redis-url={url}")]) {
                proptest::prop_assert!(e.starts_with("--redis-url"), "{}", e);
            }
        }
    }

    #[test]
    fn a_write_key_with_a_hash_tag_is_refused_for_a_cluster_only() {
        let cluster = [
            "--redis-url",
            "redis-cluster://127.0.0.1:6380",
            "--check-writes",
            "--write-key",
        ];
        let error = parse(&[&cluster[..], &["app{x}"]].concat()).unwrap_err();
        assert!(
            error.starts_with("--write-key: \"app{x}\" has a hash tag ({x}): in a cluster each primary"),
            "{error}"
        );
        // No tag as Redis reads it: `{}` is empty, `{x` never closes.
        for key in ["app{}", "app{x", "app}x{"] {
            parse(&[&cluster[..], &[key]].concat()).unwrap();
        }
        parse(&["--check-writes", "--write-key", "app{x}"]).unwrap();
        assert_eq!(hash_tag("a{b}{c}"), Some("b"));
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.interval, Duration::from_secs(2));
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.max_age, Duration::from_secs(6));
        assert_eq!(config.listen, "[::]:8558".parse().unwrap());
        assert_eq!(config.targets[0].redis.redacted(), "redis://127.0.0.1:6379");
        let interval = config.interval;
        assert_eq!(reconnect_delay(interval), Duration::from_millis(100));
        assert_eq!(reconnect_window(interval), Duration::from_millis(2500));
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
        assert!(err.starts_with("--expect-role: replica cannot hold"), "{err}");
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
        assert_eq!(err, "--tls-server-name: needs a rediss:// URL, not redis://h");
        let err = parse(&["--redis-url", "rediss://h", "--tls-cert-file", "/etc/hostname"])
            .err()
            .unwrap();
        assert!(
            err.starts_with("--tls-cert-file: needs a private key file"),
            "{err}"
        );
    }

    #[test]
    fn password_file_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
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
        let missing = dir.path().join("missing");
        let err = parse(&["--redis-password-file", missing.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(err.starts_with("--redis-password-file: cannot read"), "{err}");
    }

    #[test]
    fn a_file_target_turns_off_inherited_keys_and_blames_the_flag_it_inherited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.toml");
        std::fs::write(
            &path,
            "[[target]]\nname = \"cache\"\nurl = \"redis://h\"\ndrain_key = \"\"\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        // An empty key turns off what the flags give.
        let config = parse(&["--config", path, "--drain-key", "drain"]).unwrap();
        assert_eq!(config.targets[0].checks.drain_key, None);
        std::fs::write(path, "[[target]]\nname = \"cache\"\nurl = \"redis://h\"\n").unwrap();
        let err = parse(&["--config", path, "--write-key", ""]).err().unwrap();
        assert_eq!(
            err,
            format!("--config {path}: target \"cache\": --write-key: must not be empty")
        );
        let err = parse(&["--target", "cache=redis://h", "--tls-server-name", "h"])
            .err()
            .unwrap();
        assert_eq!(
            err,
            "--target cache: --tls-server-name: needs a rediss:// URL, not redis://h"
        );
    }
}
