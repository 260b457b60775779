//! The Redis password from `--redis-password-file`, read again at every (re)connection, so a
//! rotated secret (a Kubernetes Secret volume is updated in place) is used without a restart.
//! The read at a reconnection runs off the runtime thread and is bounded: a file that hangs
//! (a stuck NFS or CSI mount) fails that connection attempt with the reason, and every
//! endpoint goes on answering. `Debug` shows the path, never the password.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

use fred::prelude::{Error, ErrorKind, Server};
use fred::types::config::CredentialProvider;

/// Credentials fred fetches before each `AUTH`: the username as configured, the password as
/// the file holds it now.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    path: PathBuf,
    username: Option<String>,
    /// A read still under way (stuck): the next fetch waits on it instead of starting another,
    /// so a hung file never piles up blocked threads.
    in_flight: Arc<Mutex<Option<Read>>>,
}

type Read = JoinHandle<Result<String, PasswordFileError>>;

/// How long a read of the password file may take: a local file answers in microseconds, so a
/// read still blocked after this is a stuck mount.
const READ_BUDGET: Duration = Duration::from_millis(100);

impl PasswordFile {
    /// Checks the file can be read now (a bad path is a configuration error at start).
    pub fn new(path: &Path, username: Option<String>) -> Result<Self, PasswordFileError> {
        read(path)?;
        Ok(Self {
            path: path.to_owned(),
            username,
            in_flight: Arc::default(),
        })
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
        let password = password.map_err(|reason| Error::new(ErrorKind::Auth, reason))?;
        Ok((self.username.clone(), Some(password)))
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
