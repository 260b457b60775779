//! The kube-apiserver's health text: the conditions an endpoint answers by, `?verbose` (one
//! `[+]name ok` / `[-]name failed: reason` line each), `?exclude=NAME`, and one condition alone
//! by its path (`/readyz/redis:role`). Pure functions of the conditions.

use bytes::Bytes;

use crate::document::render_summary;
use crate::health::Status;

/// The condition every endpoint but `/startupz` answers by: a check completed within max-age.
pub const PROBE_LOOP: &str = "probe-loop";

/// The condition readiness and the document also answer by: no shutdown under way.
pub const SHUTDOWN: &str = "shutdown";

/// One line of the kube-style text: a named check, or a condition of the endpoint itself
/// (`probe-loop`: a check completed within max-age; `shutdown`: none under way).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub name: &'static str,
    pub status: Status,
    /// Why it is not `pass`.
    pub reason: Option<String>,
}

impl Condition {
    pub fn holds(&self) -> bool {
        self.status != Status::Fail
    }

    pub fn met(name: &'static str, failure: Option<&str>) -> Self {
        Self {
            name,
            status: if failure.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            reason: failure.map(str::to_owned),
        }
    }

    /// `ok`, `ok (warn: reason)` or `failed: reason`.
    pub fn describe(&self) -> String {
        match (self.status, &self.reason) {
            (Status::Fail, reason) => format!("failed: {}", reason.as_deref().unwrap_or("failing")),
            (Status::Warn, Some(reason)) => format!("ok (warn: {reason})"),
            _ => "ok".to_owned(),
        }
    }
}

/// The kube-style query parameters: `?verbose` (any value) and repeatable `?exclude=NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub verbose: bool,
    pub exclude: Vec<String>,
}

impl Query {
    /// Reads a query string (percent-decoded; unknown parameters are ignored).
    pub fn parse(query: &str) -> Self {
        let mut parsed = Query::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "verbose" => parsed.verbose = true,
                "exclude" => parsed.exclude.push(value.into_owned()),
                _ => {}
            }
        }
        parsed
    }

    /// True when the answer is not the pre-rendered body.
    pub fn is_kube(&self) -> bool {
        self.verbose || !self.exclude.is_empty()
    }

    fn excludes(&self, name: &str) -> bool {
        self.exclude.iter().any(|excluded| excluded == name)
    }

    /// kube's warning for each excluded name that matches no condition.
    fn unmatched<'a>(&'a self, conditions: &'a [Condition]) -> impl Iterator<Item = String> + 'a {
        self.exclude
            .iter()
            .filter(|name| !conditions.iter().any(|c| c.name == name.as_str()))
            .map(|name| format!("warn: some health checks cannot be excluded: no matches for {name:?}"))
    }
}

/// The kube-style text (`?verbose`): a line per condition, `[+]name ok`, `[+]name excluded:
/// ok` or `[-]name failed: reason`, a warning per exclusion that matches nothing, and
/// `<endpoint> check passed` or `failed`. `true` when every condition not excluded holds.
pub fn render_verbose(endpoint: &str, conditions: &[Condition], query: &Query) -> (bool, String) {
    let mut text = String::new();
    let mut passed = true;
    for condition in conditions {
        if query.excludes(condition.name) {
            text.push_str(&format!("[+]{} excluded: ok\n", condition.name));
        } else {
            passed &= condition.holds();
            let sign = if condition.holds() { '+' } else { '-' };
            text.push_str(&format!("[{sign}]{} {}\n", condition.name, condition.describe()));
        }
    }
    for warning in query.unmatched(conditions) {
        text.push_str(&warning);
        text.push('\n');
    }
    let verdict = if passed { "passed" } else { "failed" };
    text.push_str(&format!("{endpoint} check {verdict}\n"));
    (passed, text)
}

/// The summary document over the conditions not excluded (`?exclude` without `?verbose`).
pub fn render_excluded(description: &str, conditions: &[Condition], query: &Query) -> (bool, Bytes) {
    let counted: Vec<&Condition> = conditions.iter().filter(|c| !query.excludes(c.name)).collect();
    let status = counted.iter().map(|c| c.status).max().unwrap_or(Status::Pass);
    let mut reasons: Vec<String> = counted
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.name, c.reason.as_ref()?)))
        .collect();
    reasons.extend(query.unmatched(conditions));
    let output = (!reasons.is_empty()).then(|| reasons.join("; "));
    (
        status != Status::Fail,
        render_summary(status, description, output),
    )
}

/// One condition alone (`/readyz/<name>`): `Some((holds, "ok" | "failed: reason"))`, `None`
/// when no condition has that name.
pub fn render_one(conditions: &[Condition], name: &str) -> Option<(bool, String)> {
    let condition = conditions.iter().find(|c| c.name == name)?;
    // A wedged loop makes every check's last state untrustworthy.
    let loop_stalled = conditions.iter().find(|c| c.name == PROBE_LOOP && !c.holds());
    Some(match loop_stalled {
        Some(stalled) if condition.holds() => (false, stalled.describe()),
        _ => (condition.holds(), condition.describe()),
    })
}
