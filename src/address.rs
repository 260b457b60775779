//! Where a Redis target is and how to log in: the URL (checked, and redacted for every
//! output), the username, the password file and the TLS files, made into the fred client
//! configuration. `Debug` and `Display` never show a secret.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use fred::prelude::{Server, ServerConfig};
use url::Url;

use crate::credentials::{sentinels_of, Credentials, PasswordFile, PasswordFileError, Secret};
use crate::tls::{Reloader, TargetLabel, TlsError, TlsFiles, TlsMetrics};

/// Why an address cannot be used; its variants say which value is at fault. Never holds a
/// password: URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The URL itself.
    #[error("{0}")]
    Url(String),
    /// TLS options with a plain-text URL (the redacted URL).
    #[error("TLS options need a rediss:// URL, not {0}")]
    TlsNeedsRediss(String),
    #[error(transparent)]
    Tls(TlsError),
    #[error(transparent)]
    PasswordFile(PasswordFileError),
    #[error(transparent)]
    SentinelPasswordFile(PasswordFileError),
    /// A Sentinel password file with a URL that names no Sentinel (the redacted URL).
    #[error("needs a redis-sentinel:// URL, not {0}")]
    SentinelFileNeedsSentinel(String),
}

/// Where Redis is and how to log in; `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RedisAddress {
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

/// Every URL scheme accepted, and what it says about how Redis is found.
const SCHEMES: [(&str, Topology); 10] = [
    ("redis", Topology::Standalone),
    ("rediss", Topology::Standalone),
    ("valkey", Topology::Standalone),
    ("valkeys", Topology::Standalone),
    ("redis+unix", Topology::Standalone),
    ("valkey+unix", Topology::Standalone),
    ("redis-sentinel", Topology::Sentinel),
    ("rediss-sentinel", Topology::Sentinel),
    ("redis-cluster", Topology::Cluster),
    ("rediss-cluster", Topology::Cluster),
];

/// How the URL says Redis is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server (TCP or a Unix socket).
    Standalone,
    /// The master named by Sentinel.
    Sentinel,
    /// Every primary of a Redis Cluster, found from seed nodes.
    Cluster,
}

impl RedisAddress {
    /// Checks the scheme and prepares the redacted form; `username` and `password_file`
    /// override the URL's credentials.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password_file: Option<&Path>,
        sentinel_password_file: Option<&Path>,
        tls: &TlsFiles,
        tls_server_name: Option<&str>,
        tls_metrics: (&TlsMetrics, &'static str),
    ) -> Result<Self, AddressError> {
        let parsed = Url::parse(url).map_err(|e| {
            AddressError::Url(format!(
                "not a valid URL ({e}); expected redis://[user[:password]@]host[:port][/db]"
            ))
        })?;
        let redacted = redact(&parsed);
        // What errors quote: where the text holds an `@`, nothing before the last one (a
        // password written raw may have been read as a host, a path or a query).
        let quoted = match url.rsplit_once('@') {
            Some((_, host)) => format!("{}://***@{host}", parsed.scheme()),
            None => redacted.clone(),
        };
        let unix = matches!(parsed.scheme(), "redis+unix" | "valkey+unix");
        let tls_url = is_tls_scheme(parsed.scheme());
        let Some(&(_, topology)) = SCHEMES.iter().find(|(name, _)| *name == parsed.scheme()) else {
            let names: Vec<String> = SCHEMES.iter().map(|(name, _)| format!("{name}://")).collect();
            return Err(AddressError::Url(format!(
                "unsupported scheme {:?} in {quoted}; expected one of {}",
                parsed.scheme(),
                names.join(", ")
            )));
        };
        if unix && matches!(parsed.path(), "" | "/") {
            return Err(AddressError::Url(format!("no socket path in {quoted}")));
        }
        if !unix && parsed.host_str().is_none_or(str::is_empty) {
            return Err(AddressError::Url(format!("no host in {quoted}")));
        }
        // fred's error texts name the bad part, never the password.
        let mut client = fred::prelude::Config::from_url(url)
            .map_err(|e| AddressError::Url(format!("{} in {quoted}", e.details())))?;
        if let Some(username) = username {
            client.username = Some(username.to_owned());
        }
        if !tls_url && (tls.any() || tls_server_name.is_some()) {
            return Err(AddressError::TlsNeedsRediss(quoted));
        }
        let tls_files = if tls_url {
            let (metrics, target) = tls_metrics;
            let (config, reloader) = tls
                // Behind Sentinel, fred reaches the master by the address Sentinel gives, with
                // no server name: the verifier applies --tls-server-name to it as well.
                .client_config(
                    metrics.clone(),
                    target,
                    tls_server_name.filter(|_| topology == Topology::Sentinel),
                )
                .map_err(AddressError::Tls)?;
            client.tls = Some(config);
            Some(reloader)
        } else {
            None
        };
        if tls_url && tls_server_name.is_none() {
            bare_ipv6_names(&mut client.server);
        }
        if let Some(name) = tls_server_name {
            match &mut client.server {
                ServerConfig::Centralized { server } => server.tls_server_name = Some(name.into()),
                ServerConfig::Clustered { hosts, .. } | ServerConfig::Sentinel { hosts, .. } => {
                    for host in hosts {
                        host.tls_server_name = Some(name.into());
                    }
                }
                _ => {}
            }
        }
        let (metrics, target) = tls_metrics;
        let reload_errors = metrics
            .reload_errors
            .get_or_create(&TargetLabel { target })
            .clone();
        let password_file = password_file
            .map(|path| PasswordFile::new(path, client.username.clone(), reload_errors.clone()))
            .transpose()
            .map_err(AddressError::PasswordFile)?;
        // Behind Sentinel: the Sentinels' credentials, from the URL or their own file.
        let sentinels = match (sentinels_of(&client.server), sentinel_password_file) {
            (Some((nodes, username, password)), None) => {
                Some((nodes, Secret::Fixed { username, password }, false))
            }
            (Some((nodes, username, _)), Some(path)) => {
                let file = PasswordFile::new(path, username, reload_errors)
                    .map_err(AddressError::SentinelPasswordFile)?;
                Some((nodes, Secret::File(file), true))
            }
            (None, Some(_)) => return Err(AddressError::SentinelFileNeedsSentinel(quoted)),
            (None, None) => None,
        };
        // With a file on either side, fred asks this provider before every AUTH, so a rotated
        // file takes effect on the next connection; without one fred sends the URL's own.
        if password_file.is_some() || sentinels.as_ref().is_some_and(|s| s.2) {
            let data = match &password_file {
                Some(file) => Secret::File(file.clone()),
                None => Secret::Fixed {
                    username: client.username.clone(),
                    password: client.password.clone(),
                },
            };
            let sentinels = sentinels.map(|(nodes, secret, _)| (nodes, secret));
            client.credential_provider = Some(Arc::new(Credentials { data, sentinels }));
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

    /// Reads the TLS files again off the runtime thread (waiting at most `budget`), keeping
    /// the last good set if one is bad; the handshakes that follow use what this read.
    pub async fn reload_tls(&self, budget: std::time::Duration) {
        if let Some(files) = &self.tls_files {
            files.reload_off_thread(budget).await;
        }
    }

    /// Starts reading the TLS files again off the runtime thread, without waiting: for the
    /// next handshake (once per interval, and when a connection drops).
    pub fn reload_tls_in_background(&self) {
        if let Some(files) = &self.tls_files {
            files.reload_in_background();
        }
    }

    /// The Redis client's configuration (holds the password: never print it).
    pub fn client_config(&self) -> &fred::prelude::Config {
        &self.client
    }

    /// True when a username is set but no password (neither in the URL nor from a file): fred
    /// then sends no AUTH, and the checks would run as the `default` user.
    pub fn username_without_password(&self) -> bool {
        self.client.username.is_some() && self.client.password.is_none() && self.password_file.is_none()
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

    /// How the URL says Redis is found.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The client configuration for one node of a cluster: credentials and TLS of the URL,
    /// `--tls-server-name` if given.
    pub fn node_config(&self, node: &Server) -> fred::prelude::Config {
        let mut server = node.clone();
        if let ServerConfig::Clustered { hosts, .. } = &self.client.server {
            // `CLUSTER SLOTS` names the primaries by IP: over TLS they are verified against
            // --tls-server-name, else against the name the seeds were given by (a certificate
            // for the cluster's DNS name holds no IP).
            server.tls_server_name = hosts.first().and_then(|seed| {
                seed.tls_server_name.clone().or_else(|| {
                    let by_name = seed.host.parse::<std::net::IpAddr>().is_err();
                    (self.tls && by_name && node.host.parse::<std::net::IpAddr>().is_ok())
                        .then(|| seed.host.clone())
                })
            });
        }
        let mut config = self.client.clone();
        config.server = ServerConfig::Centralized { server };
        config
    }
}

impl fmt::Debug for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAddress")
            .field("url", &self.redacted)
            .field("username", &self.client.username)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl fmt::Display for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A URL's IPv6 host keeps its brackets in fred (`[::1]`), which rustls cannot take as a
/// server name: verify such a server by its address, as for IPv4.
fn bare_ipv6_names(server: &mut ServerConfig) {
    let hosts: Vec<&mut Server> = match server {
        ServerConfig::Centralized { server } => vec![server],
        ServerConfig::Clustered { hosts, .. } => hosts.iter_mut().collect(),
        _ => Vec::new(),
    };
    for host in hosts {
        if let Some(ip) = host.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            if host.tls_server_name.is_none() && ip.parse::<std::net::Ipv6Addr>().is_ok() {
                host.tls_server_name = Some(ip.into());
            }
        }
    }
}

/// True for the schemes that speak TLS to every server.
pub fn is_tls_scheme(scheme: &str) -> bool {
    matches!(
        scheme,
        "rediss" | "valkeys" | "rediss-sentinel" | "rediss-cluster"
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn address(url: &str, username: Option<&str>) -> Result<RedisAddress, AddressError> {
        RedisAddress::new(
            url,
            username,
            None,
            None,
            &TlsFiles::default(),
            None,
            (&TlsMetrics::default(), "redis"),
        )
    }

    proptest::proptest! {
        #[test]
        fn any_url_text_is_accepted_or_refused_without_panicking_or_leaking(
            url in "\\PC{0,80}|(redis|rediss|http|valkey)://[ -~]{0,60}",
        ) {
            if let Err(e) = address(&url, None) {
                proptest::prop_assert!(matches!(e, AddressError::Url(_)), "{}", e);
            }
        }
    }

    #[test]
    fn every_scheme_listed_in_the_error_is_accepted() {
        let Err(AddressError::Url(e)) = address("http://127.0.0.1:6379", None) else {
            panic!("http:// accepted");
        };
        for (scheme, _) in SCHEMES {
            assert!(e.contains(&format!("{scheme}://")), "{e}");
            let url = match scheme {
                s if s.ends_with("+unix") => format!("{scheme}:///run/redis.sock"),
                s if s.ends_with("-sentinel") => {
                    format!("{scheme}://127.0.0.1:26379?sentinelServiceName=mymaster")
                }
                _ => format!("{scheme}://127.0.0.1:6379"),
            };
            let parsed = address(&url, None);
            assert!(parsed.is_ok(), "{url}: {:?}", parsed.err());
        }
    }

    #[test]
    fn redaction_hides_passwords_in_userinfo_and_query() {
        let target = address("redis://user:p%40ss@host:6379/2?sentinelPassword=x1", None).unwrap();
        assert_eq!(
            target.redacted(),
            "redis://user:***@host:6379/2?sentinelPassword=***"
        );
        let target = address("redis://:hunter2@host", Some("app")).unwrap();
        let debug = format!("{target:?}");
        assert!(!debug.contains("hunter2") && debug.contains("app"), "{debug}");
        assert_eq!(target.to_string(), "redis://:***@host");
    }

    #[test]
    fn tls_options_need_a_tls_url() {
        let e = RedisAddress::new(
            "redis://:hunter2@h",
            None,
            None,
            None,
            &TlsFiles::default(),
            Some("h"),
            (&TlsMetrics::default(), "redis"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS options need a rediss:// URL, not redis://***@h"
        );
    }
}
