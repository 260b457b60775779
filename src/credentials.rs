//! The Redis password from `--redis-password-file`, read again at every (re)connection, so a
//! rotated secret (a Kubernetes Secret volume is updated in place) is used without a restart.
//! `Debug` shows the path, never the password.

use std::path::{Path, PathBuf};

use fred::prelude::{Error, ErrorKind, Server};
use fred::types::config::CredentialProvider;

/// Credentials fred fetches before each `AUTH`: the username as configured, the password as
/// the file holds it now.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    path: PathBuf,
    username: Option<String>,
}

impl PasswordFile {
    /// Checks the file can be read now (a bad path is a configuration error at start).
    pub fn new(path: &Path, username: Option<String>) -> Result<Self, PasswordFileError> {
        read(path)?;
        Ok(Self {
            path: path.to_owned(),
            username,
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for PasswordFile {
    async fn fetch(&self, _server: Option<&Server>) -> Result<(Option<String>, Option<String>), Error> {
        // A few bytes, once per connection: not worth a blocking-pool hop.
        let password =
            read(&self.path).map_err(|e| Error::new(ErrorKind::Auth, format!("password file: {e}")))?;
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
