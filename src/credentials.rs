//! The Redis password from `--redis-password-file`, read again at every (re)connection, so a
//! rotated secret (a Kubernetes Secret volume is updated in place) is used without a restart.
//! The read at a reconnection runs off the runtime thread and is bounded: a file that hangs
//! (a stuck NFS or CSI mount) fails that connection attempt with the reason, and every
//! endpoint goes on answering. A read that fails (a Secret being rewritten, a stuck mount)
//! falls back to the last good password, like the TLS files keep their last good set: logged
//! once, counted in `redis_healthd_config_reload_errors_total`. `Debug` shows the path, never
//! the password.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use fred::prelude::{Error, Server, ServerConfig};
use fred::types::config::CredentialProvider;
use prometheus_client::metrics::counter::Counter;
use tracing::{info, warn};

/// Credentials fred fetches before each `AUTH`: the username as configured, the password as
/// the file holds it now.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    path: PathBuf,
    username: Option<String>,
    /// A read still under way (stuck): the next fetch waits on it instead of starting another,
    /// so a hung file never piles up blocked threads.
    in_flight: Arc<Mutex<Option<Read>>>,
    /// The password of the latest good read, and the reason of the failed read that last fell
    /// back on it (logged once).
    last: Arc<Mutex<Last>>,
    /// `redis_healthd_config_reload_errors_total` of the target.
    reload_errors: Counter,
}

/// Where one side's credentials come from: the URL's (fixed), or a password file read at every
/// connection.
#[derive(Clone)]
pub enum Secret {
    Fixed {
        username: Option<String>,
        password: Option<String>,
    },
    File(PasswordFile),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Fixed { username, .. } => f
                .debug_struct("Fixed")
                .field("username", username)
                .finish_non_exhaustive(),
            Secret::File(file) => f.debug_tuple("File").field(file).finish(),
        }
    }
}

/// Servers by `(host, port)`.
pub type Nodes = Vec<(String, u16)>;

/// The Sentinel nodes' addresses, and the Sentinels' own username and password in the URL
/// (`sentinelUsername`, `sentinelPassword`); `None` when the URL names no Sentinel.
pub fn sentinels_of(server: &ServerConfig) -> Option<(Nodes, Option<String>, Option<String>)> {
    match server {
        ServerConfig::Sentinel {
            hosts,
            username,
            password,
            ..
        } => Some((
            hosts.iter().map(|h| (h.host.to_string(), h.port)).collect(),
            username.clone(),
            password.clone(),
        )),
        _ => None,
    }
}

/// The credentials fred fetches before each `AUTH`: the data node's and, behind Sentinel, the
/// Sentinels' own (`sentinelUsername`/`sentinelPassword` of the URL, or
/// `--sentinel-password-file`), told apart by the Sentinel nodes' addresses.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub data: Secret,
    pub sentinels: Option<(Nodes, Secret)>,
}

#[async_trait::async_trait]
impl CredentialProvider for Credentials {
    async fn fetch(&self, server: Option<&Server>) -> Result<(Option<String>, Option<String>), Error> {
        let secret = match (&self.sentinels, server) {
            (Some((nodes, sentinel)), Some(server))
                if nodes.contains(&(server.host.to_string(), server.port)) =>
            {
                sentinel
            }
            _ => &self.data,
        };
        match secret {
            Secret::Fixed { username, password } => Ok((username.clone(), password.clone())),
            Secret::File(file) => file.fetch(server).await,
        }
    }
}

#[derive(Default)]
struct Last {
    good: String,
    failing: Option<String>,
}

impl std::fmt::Debug for Last {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Last")
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

type Read = JoinHandle<Result<String, PasswordFileError>>;

/// How long a read of the password file may take: a local file answers in microseconds, so a
/// read still blocked after this is a stuck mount.
const READ_BUDGET: Duration = Duration::from_millis(100);

impl PasswordFile {
    /// Checks the file can be read now (a bad path is a configuration error at start).
    pub fn new(
        path: &Path,
        username: Option<String>,
        reload_errors: Counter,
    ) -> Result<Self, PasswordFileError> {
        let good = read(path)?;
        Ok(Self {
            path: path.to_owned(),
            username,
            in_flight: Arc::default(),
            last: Arc::new(Mutex::new(Last { good, failing: None })),
            reload_errors,
        })
    }

    /// The password to send after a read: this one, or the last good one when it failed.
    fn settle(&self, read: Result<String, String>) -> String {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(password) => {
                if last.failing.take().is_some() {
                    info!(file = %self.path.display(), "password file readable again");
                }
                last.good = password;
            }
            Err(reason) => {
                self.reload_errors.inc();
                if last.failing.as_deref() != Some(reason.as_str()) {
                    warn!(reason = %reason, "password file not read: using the last good password");
                    last.failing = Some(reason);
                }
            }
        }
        last.good.clone()
    }
}

#[async_trait::async_trait]
impl CredentialProvider for PasswordFile {
    async fn fetch(&self, _server: Option<&Server>) -> Result<(Option<String>, Option<String>), Error> {
        let taken = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut reading = taken.unwrap_or_else(|| {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || read(&path))
        });
        let password = match tokio::time::timeout(READ_BUDGET, &mut reading).await {
            Ok(Ok(read)) => read.map_err(|e| format!("password file: {e}")),
            Ok(Err(e)) => Err(format!("password file: the read failed: {e}")),
            Err(_) => {
                *self.in_flight.lock().unwrap_or_else(PoisonError::into_inner) = Some(reading);
                Err(format!(
                    "password file: reading {} took longer than {}",
                    self.path.display(),
                    humantime::format_duration(READ_BUDGET)
                ))
            }
        };
        Ok((self.username.clone(), Some(self.settle(password))))
    }
}

/// Why the password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
}

/// The file's contents without one trailing newline; empty or unreadable is an error.
pub fn read(path: &Path) -> Result<String, PasswordFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(PasswordFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(password.to_owned())
}
