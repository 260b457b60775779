//! Who may see what, by the `--web.config.file` settings in force ([`Access`]): the rate
//! limit, then basic auth. Without `basic_auth_users` everyone sees everything. With them, a
//! request without valid credentials still gets the probe answers (`/livez`, `/healthz`,
//! `/readyz`, `/startupz`: status code and status, no details), since the kubelet sends none; everything
//! else (`?verbose`, the per-check paths, `/health`, the page, `/metrics`) is a 401.
//!
//! bcrypt is slow by design (tens of milliseconds at cost 10), so verified credentials are
//! remembered (by a SHA-256 of user and password, never the password itself) until the users
//! change, and checks run off the runtime thread, one at a time. [`watch`] re-reads the file
//! and the files it names every second, off the runtime thread, and swaps in a changed set;
//! a bad change keeps the last good set, logged once and counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::header::{HeaderMap, AUTHORIZATION};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::web_config::{Sources, WebSettings};

/// What a request may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Everything,
    /// No valid credentials where they are asked for: the probes' status only.
    ProbesOnly,
    /// Over the rate limit: 429.
    Limited,
}

/// The web settings in force, and what deciding by them needs.
pub struct Access {
    settings: watch::Receiver<Arc<WebSettings>>,
    verified: Mutex<Verified>,
    /// One bcrypt check at a time: a flood of wrong passwords costs one core at most.
    checking: Semaphore,
    bucket: Mutex<Bucket>,
}

/// Credentials already checked against the users of one settings generation.
#[derive(Default)]
struct Verified {
    /// The settings they were checked against (by address: a reload is a new `Arc`).
    of: usize,
    results: HashMap<[u8; 32], bool>,
}

/// At most this many remembered credentials; past it the memory starts afresh.
const REMEMBERED: usize = 1024;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Access {
    /// Everything open: no web configuration.
    pub fn open() -> Self {
        let (_, settings) = watch::channel(Arc::new(WebSettings {
            tls: None,
            users: Default::default(),
            headers: Vec::new(),
            rate_limit: None,
        }));
        Self::new(settings)
    }

    pub fn new(settings: watch::Receiver<Arc<WebSettings>>) -> Self {
        Self {
            settings,
            verified: Mutex::default(),
            checking: Semaphore::new(1),
            bucket: Mutex::new(Bucket {
                tokens: f64::MAX,
                at: Instant::now(),
            }),
        }
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<WebSettings> {
        self.settings.borrow().clone()
    }

    /// What a request with these headers may see, by `settings` (the ones in force).
    pub async fn admit(&self, settings: &Arc<WebSettings>, headers: &HeaderMap) -> Seen {
        if let Some((interval, burst)) = settings.rate_limit {
            if !self.take_token(interval, burst) {
                return Seen::Limited;
            }
        }
        if settings.users.is_empty() {
            return Seen::Everything;
        }
        let Some((user, password)) = basic_credentials(headers) else {
            return Seen::ProbesOnly;
        };
        if self.verify(settings, &user, &password).await {
            Seen::Everything
        } else {
            Seen::ProbesOnly
        }
    }

    fn take_token(&self, interval: Duration, burst: u32) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() / interval.as_secs_f64();
        bucket.tokens = (bucket.tokens.min(f64::from(burst)) + refill).min(f64::from(burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `user` and `password` match, remembered per settings generation.
    async fn verify(&self, settings: &Arc<WebSettings>, user: &str, password: &str) -> bool {
        let key = {
            let mut context = ring::digest::Context::new(&ring::digest::SHA256);
            context.update(user.as_bytes());
            context.update(&[0]);
            context.update(password.as_bytes());
            let mut key = [0u8; 32];
            key.copy_from_slice(context.finish().as_ref());
            key
        };
        let generation = Arc::as_ptr(settings) as usize;
        if let Some(known) = self.remembered(generation, &key) {
            return known;
        }
        let Ok(_slot) = self.checking.acquire().await else {
            return false;
        };
        // Another request may have checked the same credentials while this one waited.
        if let Some(known) = self.remembered(generation, &key) {
            return known;
        }
        // An unknown user is checked against a configured user's hash and refused whatever the
        // result: as long as a wrong password, so the time does not tell which users exist.
        let (known, hash) = match settings.users.get(user) {
            Some(hash) => (true, hash.clone()),
            None => (false, settings.users.values().next().cloned().unwrap_or_default()),
        };
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && known;
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.of != generation || verified.results.len() >= REMEMBERED {
            *verified = Verified {
                of: generation,
                results: HashMap::new(),
            };
        }
        verified.results.insert(key, matches);
        matches
    }

    fn remembered(&self, generation: usize, key: &[u8; 32]) -> Option<bool> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        (verified.of == generation)
            .then(|| verified.results.get(key).copied())
            .flatten()
    }
}

/// `Authorization: Basic <base64 of user:password>` (RFC 7617), if well formed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The counter label of the web configuration's failed reloads: no target name has a dot.
pub const RELOAD_LABEL: &str = "web.config.file";

/// Re-reads the web configuration every second (off the runtime thread, each read bounded)
/// and publishes each good change; a bad one keeps the last good settings, is logged once and
/// counted in `reload_errors`. Returns when `stop` turns true.
pub async fn watch(
    path: PathBuf,
    mut current: Sources,
    settings: watch::Sender<Arc<WebSettings>>,
    reload_errors: Counter,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing: Option<String> = None;
    let mut bad: Option<Sources> = None;
    let mut in_flight: Option<tokio::task::JoinHandle<Result<Sources, crate::web_config::WebConfigError>>> =
        None;
    loop {
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            _ = tokio::time::sleep(RELOAD_EVERY) => {}
        }
        // A read still stuck (a hung mount) is awaited again rather than joined by another:
        // one blocked thread at most, whatever the file does.
        let mut read = in_flight.take().unwrap_or_else(|| {
            let read_path = path.clone();
            tokio::task::spawn_blocking(move || Sources::read(&read_path))
        });
        let outcome = match tokio::time::timeout(RELOAD_EVERY, &mut read).await {
            Ok(Ok(Ok(sources))) if sources == current => {
                if failing.take().is_some() {
                    info!(file = %path.display(), "web configuration readable again: unchanged");
                }
                bad = None;
                continue;
            }
            Ok(Ok(Ok(sources))) if bad.as_ref() == Some(&sources) => continue,
            Ok(Ok(Ok(sources))) => match sources.build() {
                Ok(built) => Ok((sources, built)),
                Err(e) => {
                    bad = Some(sources);
                    Err(e.to_string())
                }
            },
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("the read failed: {e}")),
            Err(_) => {
                in_flight = Some(read);
                Err(format!(
                    "reading {} took longer than {}",
                    path.display(),
                    humantime::format_duration(RELOAD_EVERY)
                ))
            }
        };
        match outcome {
            Ok((sources, built)) => {
                info!(file = %path.display(), web = %built.summary(), "web configuration reloaded");
                failing = None;
                current = sources;
                settings.send_replace(Arc::new(built));
            }
            Err(reason) => {
                if failing.as_deref() != Some(reason.as_str()) {
                    reload_errors.inc();
                    warn!(reason = %reason, "web configuration not reloaded: keeping the last good one");
                    failing = Some(reason);
                }
            }
        }
    }
}

/// How often the web configuration is read again.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_users(users: &[(&str, &str)]) -> Access {
        let (_tx, rx) = watch::channel(Arc::new(WebSettings {
            tls: None,
            users: users
                .iter()
                .map(|(u, h)| (u.to_string(), h.to_string()))
                .collect(),
            headers: Vec::new(),
            rate_limit: None,
        }));
        // The sender may go: the receiver keeps the last value.
        Access::new(rx)
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_right_password_sees_everything_and_is_remembered() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let access = with_users(&[("prometheus", &hash)]);
        assert_eq!(
            access.admit(&access.settings(), &HeaderMap::new()).await,
            Seen::ProbesOnly
        );
        assert_eq!(
            access
                .admit(&access.settings(), &basic("prometheus", "wrong"))
                .await,
            Seen::ProbesOnly
        );
        assert_eq!(
            access.admit(&access.settings(), &basic("nobody", "s3cret")).await,
            Seen::ProbesOnly
        );
        assert_eq!(
            access
                .admit(&access.settings(), &basic("prometheus", "s3cret"))
                .await,
            Seen::Everything
        );
        let remembered = access.verified.lock().unwrap().results.len();
        assert_eq!(remembered, 3);
        assert_eq!(
            access
                .admit(&access.settings(), &basic("prometheus", "s3cret"))
                .await,
            Seen::Everything
        );
        assert_eq!(
            access.verified.lock().unwrap().results.len(),
            3,
            "no second bcrypt check"
        );
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let access = Access::open();
        let taken = (0..10)
            .filter(|_| access.take_token(Duration::from_secs(60), 3))
            .count();
        assert_eq!(taken, 3);
    }
}
