//! Configuration errors that know where the faulty value came from (a flag, an environment
//! variable, a `--config` file's target and key) and say it in those terms, in one line:
//! `--tls-ca-file: cannot read /etc/ca.pem: ...`, `REDIS_HEALTHD_TIMEOUT (3s) must not be ...`,
//! `--config /etc/healthd.toml: target "cache": password_file: cannot read ...`. `main` turns
//! any of them into exit code 2.

use std::fmt;
use std::path::PathBuf;

use crate::address::AddressError;
use crate::config_file::FileError;
use crate::credentials::PasswordFileError;
use crate::tls::TlsError;

/// Where a value was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// On the command line, or the flag's default: `--tls-ca-file`.
    Flag(String),
    /// From the environment: `REDIS_HEALTHD_TLS_CA_FILE`.
    Env(String),
    /// A key of a `[[target]]` table: `tls_ca_file`.
    Key(&'static str),
    /// Part of the target's own description, named by its [`Scope`] (the URL of
    /// `--target NAME=URL`).
    Inline,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Flag(name) | At::Env(name) => f.write_str(name),
            At::Key(key) => f.write_str(key),
            At::Inline => Ok(()),
        }
    }
}

/// A value and where it was given.
#[derive(Clone, Debug, PartialEq)]
pub struct Given<T> {
    pub value: T,
    pub at: At,
}

impl<T> Given<T> {
    pub fn new(value: T, at: At) -> Self {
        Self { value, at }
    }
}

impl<T> Given<Option<T>> {
    /// The value, if one was given, with where it was given.
    pub fn as_given(&self) -> Option<Given<&T>> {
        self.value.as_ref().map(|value| Given {
            value,
            at: self.at.clone(),
        })
    }
}

/// What an error is about: the settings as a whole, a `--target`, or a config file (one of
/// its targets, or the file itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The global settings, or the one target `--redis-url` describes.
    Global,
    /// A `--target NAME=URL` (or an entry of its environment twin).
    Target { given_as: At, name: String },
    /// A `--config` file, or one of its `[[target]]` tables.
    File { path: PathBuf, target: Option<String> },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => Ok(()),
            Scope::Target { given_as, name } => write!(f, "{given_as} {name}"),
            Scope::File { path, target: None } => write!(f, "--config {}", path.display()),
            Scope::File {
                path,
                target: Some(name),
            } => write!(f, "--config {}: target {name:?}", path.display()),
        }
    }
}

/// What is wrong with the value.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A rule of this daemon, in words.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    /// The config file does not parse (it names its own target and key).
    #[error(transparent)]
    File(#[from] FileError),
    /// The web configuration file (it names its own path and key).
    #[error(transparent)]
    WebConfig(#[from] crate::web_config::WebConfigError),
}

/// A configuration problem: one line naming where the value came from; the process exits
/// with code 2 (`probe`: 3).
#[derive(Debug)]
pub struct ConfigError {
    // Boxed: errors are rare, and a small `Result` keeps every `?` on the way cheap.
    pub scope: Box<Scope>,
    /// The value at fault; `None` when the problem names its values itself (a conflict).
    pub at: Option<At>,
    pub problem: Box<Problem>,
}

impl ConfigError {
    /// The value given `at` in `scope` is wrong: `problem` says why.
    pub fn at(scope: &Scope, at: &At, problem: impl Into<Problem>) -> Self {
        Self {
            scope: Box::new(scope.clone()),
            at: Some(at.clone()),
            problem: Box::new(problem.into()),
        }
    }

    /// A problem in `scope` whose sentence names the values it is about.
    pub fn conflict(scope: &Scope, sentence: String) -> Self {
        Self {
            scope: Box::new(scope.clone()),
            at: None,
            problem: Box::new(Problem::Invalid(sentence)),
        }
    }
}

impl From<String> for Problem {
    fn from(text: String) -> Self {
        Problem::Invalid(text)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(3);
        if *self.scope != Scope::Global {
            parts.push(self.scope.to_string());
        }
        if let Some(at) = self.at.as_ref().filter(|at| **at != At::Inline) {
            parts.push(at.to_string());
        }
        parts.push(self.problem.to_string());
        f.write_str(&parts.join(": "))
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.problem)
    }
}

/// The parts of a target's address that an [`AddressError`] can be about, each where it was
/// given.
pub struct AddressKeys<'a> {
    pub url: &'a At,
    pub password_file: &'a At,
    pub sentinel_password_file: &'a At,
    pub tls_ca_file: &'a At,
    pub tls_cert_file: &'a At,
    pub tls_key_file: &'a At,
    /// The first TLS option given (what a plain `redis://` URL cannot take).
    pub first_tls: Option<&'a At>,
}

impl ConfigError {
    /// An address error, blamed on the value it is about.
    pub fn address(scope: &Scope, keys: &AddressKeys<'_>, error: AddressError) -> Self {
        use crate::tls::TlsFile;
        match error {
            AddressError::Url(text) => Self::at(scope, keys.url, text),
            AddressError::TlsNeedsRediss(url) => Self::at(
                scope,
                keys.first_tls.unwrap_or(keys.url),
                format!("needs a rediss:// URL, not {url}"),
            ),
            AddressError::PasswordFile(e) => Self::at(scope, keys.password_file, e),
            AddressError::SentinelPasswordFile(e) => Self::at(scope, keys.sentinel_password_file, e),
            AddressError::SentinelFileNeedsSentinel(url) => Self::at(
                scope,
                keys.sentinel_password_file,
                format!("needs a redis-sentinel:// URL, not {url}"),
            ),
            AddressError::Tls(e) => {
                let at = match e.file() {
                    Some(TlsFile::Ca) => keys.tls_ca_file,
                    Some(TlsFile::Cert) => keys.tls_cert_file,
                    Some(TlsFile::Key) => keys.tls_key_file,
                    None => keys.url,
                };
                Self::at(scope, at, e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_where_the_value_came_from() {
        let flag = ConfigError::at(
            &Scope::Global,
            &At::Flag("--interval".into()),
            "must be greater than zero".to_owned(),
        );
        assert_eq!(flag.to_string(), "--interval: must be greater than zero");
        let env = ConfigError::at(
            &Scope::Global,
            &At::Env("REDIS_PASSWORD_FILE".into()),
            "x is empty".to_owned(),
        );
        assert_eq!(env.to_string(), "REDIS_PASSWORD_FILE: x is empty");
        let file = Scope::File {
            path: "/etc/h.toml".into(),
            target: Some("cache".into()),
        };
        let key = ConfigError::at(&file, &At::Key("drain_key"), "must not be empty".to_owned());
        assert_eq!(
            key.to_string(),
            "--config /etc/h.toml: target \"cache\": drain_key: must not be empty"
        );
        let inherited = ConfigError::at(
            &file,
            &At::Flag("--tls-ca-file".into()),
            "needs a rediss:// URL".to_owned(),
        );
        assert_eq!(
            inherited.to_string(),
            "--config /etc/h.toml: target \"cache\": --tls-ca-file: needs a rediss:// URL"
        );
        let target = Scope::Target {
            given_as: At::Flag("--target".into()),
            name: "cache".into(),
        };
        let inline = ConfigError::at(&target, &At::Inline, "no host in redis://".to_owned());
        assert_eq!(inline.to_string(), "--target cache: no host in redis://");
        let conflict = ConfigError::conflict(&Scope::Global, "--a and --b cannot be used together".into());
        assert_eq!(conflict.to_string(), "--a and --b cannot be used together");
    }
}
