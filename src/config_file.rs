//! The `--config` file: TOML, one `[[target]]` table per Redis target. A pure parser (serde
//! with `deny_unknown_fields` over the `toml` crate, no I/O): every error names the target (by
//! its `name`, else its position) and the key. Values are checked further by the same code
//! as the daemon's flags ([`crate::config::target`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::checks::{ClusterReady, ExpectRole};
use crate::names::{check_target_name, is_target_name};

/// One `[[target]]` table. Only `name` and `url` are required; every other key overrides the
/// flag of the same meaning for this target.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    pub name: String,
    pub url: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Behind Sentinel: the Sentinels' own password.
    pub sentinel_password_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub state_checks: Option<bool>,
    pub check_writes: Option<bool>,
    pub write_key: Option<String>,
    pub expect_role: Option<ExpectRole>,
    pub drain_key: Option<String>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    /// A humantime duration (`250ms`).
    pub warn_latency: Option<String>,
    /// `90%`, `"90"` or `90`.
    pub warn_memory: Option<Percent>,
    /// A humantime duration (`30s`).
    pub max_replication_lag: Option<String>,
    /// `all` or `majority` (a cluster target).
    pub cluster_ready: Option<ClusterReady>,
    /// False: the target's failures never fail `/readyz` or `/startupz`.
    pub readiness: Option<bool>,
}

/// A percentage written as a number or as text.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Percent {
    Number(f64),
    Text(String),
}

impl Percent {
    /// As the `--warn-memory` flag would read it.
    pub fn as_text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    target: Vec<toml::Value>,
}

/// What is wrong with the file: where (the target, the key) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FileError {
    /// `"cache"`, or `#2` (the second `[[target]]`) when it has no usable name.
    pub target: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(target) = &self.target {
            write!(f, "target {target}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// The target tables of a config file, in order. Names are checked for shape and
/// uniqueness here; the other values where the flags are.
pub fn parse(text: &str) -> Result<Vec<FileTarget>, FileError> {
    let file: File = toml::from_str(text).map_err(|e| FileError {
        target: None,
        key: None,
        // toml's message is several lines (a snippet with a caret): keep it on one.
        message: one_line(e.message(), e.span().map(|span| line_of(text, span.start))),
    })?;
    if file.target.is_empty() {
        return Err(FileError {
            target: None,
            key: None,
            message: "no [[target]] table: give each Redis a [[target]] with name and url".into(),
        });
    }
    let mut targets: Vec<FileTarget> = Vec::with_capacity(file.target.len());
    for (index, value) in file.target.into_iter().enumerate() {
        let label = value
            .get("name")
            .and_then(toml::Value::as_str)
            .filter(|name| is_target_name(name))
            .map_or_else(|| format!("#{}", index + 1), |name| format!("{name:?}"));
        let target: FileTarget = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = one_line(&e.into_inner().to_string(), None);
            // toml's own text may end by naming the key again.
            let message = message
                .strip_suffix(&format!(" in `{key}`"))
                .map_or_else(|| message.clone(), str::to_owned);
            FileError {
                target: Some(label.clone()),
                key: (key != ".").then_some(key),
                message,
            }
        })?;
        if let Err(message) = check_target_name(&target.name) {
            return Err(FileError {
                target: Some(label),
                key: Some("name".into()),
                message,
            });
        }
        if targets.iter().any(|t| t.name == target.name) {
            return Err(FileError {
                target: Some(label),
                key: Some("name".into()),
                message: "another [[target]] has this name".into(),
            });
        }
        targets.push(target);
    }
    Ok(targets)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

fn one_line(message: &str, line: Option<usize>) -> String {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_in_one_line(text in "\\PC{0,200}|(\\[\\[target\\]\\]\n(name|url|readiness|warn_memory|bogus) = (\"[a-z:/0-9.%]{0,12}\"|[0-9]{1,3}|true)\n){0,4}") {
            match parse(&text) {
                Ok(targets) => proptest::prop_assert!(!targets.is_empty()),
                Err(e) => proptest::prop_assert!(!e.to_string().contains('\n'), "{}", e),
            }
        }
    }

    #[test]
    fn targets_with_their_options() {
        let targets = parse(
            r#"
            [[target]]
            name = "cache"
            url = "redis://127.0.0.1:6379"
            readiness = false
            warn_memory = 80

            [[target]]
            name = "queue"
            url = "rediss://q:6380"
            check_writes = true
            expect_role = "master"
            warn_latency = "50ms"
            warn_memory = "95%"
            "#,
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].readiness, Some(false));
        assert_eq!(targets[0].warn_memory, Some(Percent::Number(80.0)));
        assert_eq!(targets[1].expect_role, Some(ExpectRole::Master));
        assert_eq!(
            targets[1].warn_memory.as_ref().map(Percent::as_text).as_deref(),
            Some("95%")
        );
    }

    #[test]
    fn errors_name_the_target_and_the_key() {
        let error = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            error("[[target]]\nname = \"cache\"\nurl = \"redis://h\"\nfailure_treshold = 3\n"),
            "target \"cache\": failure_treshold: unknown field `failure_treshold`, expected one of `name`, `url`, \
             `username`, `password_file`, `sentinel_password_file`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`, \
             `tls_server_name`, `state_checks`, `check_writes`, `write_key`, `expect_role`, \
             `drain_key`, `failure_threshold`, `success_threshold`, `warn_latency`, \
             `warn_memory`, `max_replication_lag`, `cluster_ready`, `readiness`"
        );
        assert_eq!(
            error("[[target]]\nname = \"cache\"\nurl = \"redis://h\"\nfailure_threshold = \"3\"\n"),
            "target \"cache\": failure_threshold: invalid type: string \"3\", expected u32"
        );
        assert_eq!(
            error("[[target]]\nname = \"cache\"\nurl = \"redis://h\"\nexpect_role = \"primary\"\n"),
            "target \"cache\": expect_role: unknown variant `primary`, expected one of `master`, `replica`, `any`"
        );
        assert_eq!(
            error("[[target]]\nname = \"cache\"\n"),
            "target \"cache\": missing field `url`"
        );
        assert_eq!(
            error("[[target]]\nname = \"Cache!\"\nurl = \"redis://h\"\n"),
            "target #1: name: \"Cache!\" is not a target name: use 1 to 64 of a-z, 0-9, _ and -"
        );
        assert_eq!(
            error("[[target]]\nname = \"a\"\nurl = \"redis://h\"\n[[target]]\nname = \"a\"\nurl = \"redis://g\"\n"),
            "target \"a\": name: another [[target]] has this name"
        );
        assert!(
            error("[[target]\n").starts_with("line 1: "),
            "{}",
            error("[[target]\n")
        );
        assert!(error("redis_url = \"x\"\n").contains("unknown field `redis_url`"));
        assert!(error("").starts_with("no [[target]] table"));
    }
}
