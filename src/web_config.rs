//! `--web.config.file`: who may reach the HTTP side, in the Prometheus exporters' own format
//! (exporter-toolkit's web configuration, as node_exporter and blackbox_exporter read it):
//! `tls_server_config` (HTTPS, optional client certificates), `http_server_config.headers`,
//! `basic_auth_users` (bcrypt hashes) and `rate_limit`. Unknown keys are refused, naming the
//! key. [`Sources::read`] reads the file and every file it names; [`Sources::build`] turns them
//! into [`WebSettings`], so that a reload can tell a change from the bytes alone. Relative paths
//! are read from the file's directory, as exporter-toolkit does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use serde::Deserialize;

use crate::web_tls::{server_config, ServerFiles, TlsServer};

/// Why a web configuration cannot be used: the file, the key, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}{}{problem}", path.display(), if key.is_empty() { "" } else { ": " })]
pub struct WebConfigError {
    pub path: PathBuf,
    /// The key at fault (`tls_server_config.cert_file`), empty for the file as a whole.
    pub key: String,
    pub problem: String,
}

/// What the web configuration asks for, ready to serve with. No `Debug` of the hashes.
#[derive(Clone)]
pub struct WebSettings {
    /// HTTPS, when `tls_server_config` is given.
    pub tls: Option<Arc<ServerConfig>>,
    /// User → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// `http_server_config.headers`, added to every answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `rate_limit`: one request per `interval`, bursts of `burst`; `None`: no limit.
    pub rate_limit: Option<(Duration, u32)>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebSettings {
    /// Whether a request must be checked (users or a rate limit) before it is answered.
    pub fn checks_requests(&self) -> bool {
        !self.users.is_empty() || self.rate_limit.is_some()
    }

    /// One line for `--check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            Some(_) => "HTTPS",
            None => "plain HTTP",
        };
        let users = match self.users.len() {
            0 => "no basic auth".to_owned(),
            n => format!("basic auth for {n} user(s)"),
        };
        format!("{tls}, {users}, {} extra header(s)", self.headers.len())
    }
}

/// The web configuration as read at start: its path, what it read and the settings built.
#[derive(Clone, Debug)]
pub struct Web {
    pub path: PathBuf,
    pub sources: Sources,
    pub settings: WebSettings,
}

impl Web {
    /// Reads and checks the file and the files it names.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let sources = Sources::read(path)?;
        let settings = sources.build()?;
        Ok(Self {
            path: path.to_owned(),
            sources,
            settings,
        })
    }
}

/// The file's own keys, as exporter-toolkit defines them.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebFile {
    tls_server_config: Option<TlsServer>,
    http_server_config: Option<HttpServer>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateLimit>,
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpServer {
    /// Accepted for compatibility; this server speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    interval: Option<String>,
    burst: Option<u32>,
}

/// The headers exporter-toolkit lets a web configuration set.
const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// The web configuration file and every file it names, as bytes (what a reload compares),
/// and the file as parsed. `Debug` names the files only: the key file is a secret.
#[derive(Clone)]
pub struct Sources {
    path: PathBuf,
    yaml: Vec<u8>,
    file: WebFile,
    files: ServerFiles,
}

impl PartialEq for Sources {
    fn eq(&self, other: &Self) -> bool {
        // The parsed file follows from the bytes.
        self.path == other.path && self.yaml == other.yaml && self.files == other.files
    }
}

impl Eq for Sources {}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("path", &self.path)
            .field("files", &self.files.paths())
            .finish()
    }
}

impl Sources {
    /// Reads the file and the files it names (blocking: call off the runtime thread).
    pub fn read(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |key: &str, problem: String| WebConfigError {
            path: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let yaml = std::fs::read(path).map_err(|e| fail("", format!("cannot read it: {e}")))?;
        let file = parse(path, &yaml)?;
        let files = match &file.tls_server_config {
            Some(tls) => ServerFiles::read(tls, path.parent().unwrap_or(Path::new(".")))
                .map_err(|(key, problem)| fail(key, problem))?,
            None => ServerFiles::default(),
        };
        Ok(Self {
            path: path.to_owned(),
            yaml,
            file,
            files,
        })
    }

    /// The settings these bytes describe.
    pub fn build(&self) -> Result<WebSettings, WebConfigError> {
        let fail = |key: &str, problem: String| WebConfigError {
            path: self.path.clone(),
            key: key.to_owned(),
            problem,
        };
        let file = self.file.clone();
        let tls = match &file.tls_server_config {
            None => None,
            Some(tls) => Some(Arc::new(server_config(tls, &self.files, &fail)?)),
        };
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            // The cost field of `$2y$10$...`: an unparsable hash would fail every login.
            if bcrypt_cost(hash).is_none() {
                return Err(fail(
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')".into(),
                ));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in file
            .http_server_config
            .and_then(|h| h.headers)
            .unwrap_or_default()
        {
            let key = format!("http_server_config.headers.{name}");
            let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
                return Err(fail(
                    &key,
                    format!("not a header that can be set; these can: {}", HEADERS.join(", ")),
                ));
            };
            if value.is_empty() {
                continue;
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| fail(&key, "is not a valid header value".into()))?;
            headers.push((HeaderName::from_static(lowercase(known)), value));
        }
        let rate_limit = match file.rate_limit {
            None => None,
            Some(limit) => {
                let interval = match limit.interval.as_deref().map(str::trim) {
                    None | Some("0") | Some("") => Duration::ZERO,
                    Some(text) => humantime::parse_duration(text)
                        .map_err(|e| fail("rate_limit.interval", format!("{e} (expected e.g. 1s, 100ms)")))?,
                };
                (!interval.is_zero()).then_some((interval, limit.burst.unwrap_or(1).max(1)))
            }
        };
        Ok(WebSettings {
            tls,
            users,
            headers,
            rate_limit,
        })
    }
}

/// Whether the web configuration at `path` asks for HTTPS (`check` follows it).
pub fn serves_tls(path: &Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|yaml| parse(path, &yaml).is_ok_and(|file| file.tls_server_config.is_some()))
}

/// The YAML, with the key of the first problem; an empty file is an empty configuration.
fn parse(path: &Path, yaml: &[u8]) -> Result<WebFile, WebConfigError> {
    if yaml.iter().all(u8::is_ascii_whitespace) {
        return Ok(WebFile::default());
    }
    yaml_serde::from_slice(yaml).map_err(|e| {
        let (key, problem) = key_of(&e.to_string());
        WebConfigError {
            path: path.to_owned(),
            key,
            problem,
        }
    })
}

/// yaml_serde's error as (key, problem): it begins with the dotted path of the mapping at fault
/// (`tls_server_config: unknown field `cert_fil`, ...`, `rate_limit.burst: invalid type: ...`),
/// and an unknown field is named in the problem: the key is then that field under the path.
fn key_of(text: &str) -> (String, String) {
    let (path, problem) = match text.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => (path, rest),
        _ => ("", text),
    };
    let field = problem
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let key = match (path, field) {
        ("", Some(field)) => field.to_owned(),
        (path, Some(field)) => format!("{path}.{field}"),
        (path, None) => path.to_owned(),
    };
    (key, problem.to_owned())
}

fn lowercase(header: &'static str) -> &'static str {
    match header {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

/// The cost of a bcrypt hash (`$2y$10$...` → 10), if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    let (empty, version, cost, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let known = matches!(version, "2a" | "2b" | "2x" | "2y");
    (empty.is_empty() && known && rest.len() == 53)
        .then(|| cost.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of `yaml` as if read from `/etc/web.yml`, naming no files that exist.
    fn build(yaml: &str) -> Result<WebSettings, WebConfigError> {
        let path = PathBuf::from("/etc/web.yml");
        Sources {
            file: parse(&path, yaml.as_bytes())?,
            path,
            yaml: yaml.as_bytes().to_vec(),
            files: ServerFiles::default(),
        }
        .build()
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        let e = build("tls_server_config:\n  cert_fil: a.pem\n").unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert_fil");
        assert!(
            e.to_string()
                .starts_with("/etc/web.yml: tls_server_config.cert_fil: unknown field `cert_fil`"),
            "{e}"
        );
        let e = build("basic_auth_user:\n  a: b\n").unwrap_err();
        assert_eq!(e.key, "basic_auth_user");
        let e = build("http_server_config:\n  headers:\n    X-Powered-By: me\n").unwrap_err();
        assert_eq!(e.key, "http_server_config.headers.X-Powered-By");
    }

    #[test]
    fn users_headers_and_rate_limit_are_read() {
        let hash = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let settings = build(&format!(
            "basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  http2: false\n  headers:\n    \
             X-Frame-Options: deny\n    Strict-Transport-Security: \"\"\nrate_limit:\n  interval: 100ms\n  burst: 5\n"
        ))
        .unwrap();
        assert_eq!(settings.users.get("prometheus").map(String::as_str), Some(hash));
        assert_eq!(settings.headers.len(), 1, "a blank header is unset");
        assert_eq!(settings.rate_limit, Some((Duration::from_millis(100), 5)));
        assert!(!format!("{settings:?}").contains(hash));
        let e = build("basic_auth_users:\n  prometheus: plain-text\n").unwrap_err();
        assert_eq!(e.key, "basic_auth_users.prometheus");
        assert!(!e.to_string().contains("plain-text"), "{e}");
        assert!(build("").unwrap().users.is_empty());
    }

    #[test]
    fn tls_without_files_says_what_is_missing() {
        let e = build("tls_server_config:\n  key_file: k.pem\n").unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert_file");
        let e = build("tls_server_config:\n  min_version: TLS99\n  cert: x\n  key: y\n").unwrap_err();
        assert!(e.key.starts_with("tls_server_config."), "{e}");
    }
}
