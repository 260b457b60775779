//! The HTTP side: the accept loop (HTTP/1 only, header-read timeout, bounded graceful drain),
//! and [`route`], which answers every request from the latest snapshot's ready bytes without
//! touching Redis or awaiting anything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::metrics::{wants_openmetrics, Metrics};
use crate::snapshot::{answer, Endpoint, FixedBodies, Snapshot};

/// A client that has not sent its whole header by then is cut (slowloris); this also closes
/// idle keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections get this long to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a failed accept (EMFILE and the like), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Repeated warnings (accept errors, shed connections) are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Request head buffer: probes and scrapes send a few hundred bytes; hyper's floor is 8 KiB.
const MAX_BUF_SIZE: usize = 16 * 1024;

const HEALTH_JSON: HeaderValue = HeaderValue::from_static("application/health+json");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");
const NOT_FOUND_BODY: &str =
    r#"{"error":"not found","endpoints":["/livez","/readyz","/startupz","/health","/healthz","/metrics"]}"#;
const NOT_ALLOWED_BODY: &str = r#"{"error":"method not allowed","allow":["GET","HEAD"]}"#;

/// What the handlers read: the latest snapshot, the fixed bodies and the metrics.
pub struct State {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fixed: FixedBodies,
    max_age: Duration,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

impl State {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fixed: FixedBodies,
        max_age: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            snapshots,
            fixed,
            max_age,
            draining: AtomicBool::new(false),
            metrics,
        }
    }

    /// What an endpoint answers right now.
    fn answer(&self, endpoint: Endpoint) -> (bool, Bytes) {
        let snapshot = self.snapshots.borrow().clone();
        answer(
            endpoint,
            &snapshot,
            &self.fixed,
            Instant::now(),
            self.max_age,
            self.draining.load(Ordering::Relaxed),
        )
    }

    /// From now on readiness answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Binds the listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves until `stop` turns true, then stops accepting and drains open connections (bounded).
///
/// At most `max_connections` are served at once; a connection beyond that is closed as soon as
/// it is accepted, so a flood costs an accept and a close each, never a file descriptor held.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    // header_read_timeout needs a timer: without one hyper panics on the first connection.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut accept_errors = Throttled::default();
    let mut shed = Throttled::default();
    loop {
        let (stream, _peer) = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if let Some(suppressed) = accept_errors.hit() {
                        warn!(error = %e, suppressed, "accept failed; retrying shortly");
                    }
                    // EMFILE and the like: pause, or the loop spins on the same error.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            if let Some(suppressed) = shed.hit() {
                warn!(
                    max_connections,
                    suppressed, "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let response = route(&request, &state);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts of idle keep-alive connections land here: not worth a warning.
                debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("drain timed out; closing the remaining connections");
    }
}

/// A warning that repeats (a flood, an fd shortage) is logged at most once per
/// [`LOG_EVERY`], with how many were left out.
#[derive(Default)]
struct Throttled {
    next: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(suppressed since the last log)` when this occurrence should be logged.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.next {
            Some(next) if now < next => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next = Some(now + LOG_EVERY);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Answers one request from the latest snapshot: a plain match on the path.
pub fn route<B>(request: &Request<B>, state: &State) -> Response<Full<Bytes>> {
    let probe = match request.uri().path() {
        "/livez" => Endpoint::Live,
        "/readyz" => Endpoint::Ready,
        "/startupz" => Endpoint::Started,
        "/health" | "/healthz" => Endpoint::Health,
        "/metrics" => return scrape(request, state),
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                JSON,
                Bytes::from_static(NOT_FOUND_BODY.as_bytes()),
            )
        }
    };
    if let Some(refusal) = refuse_method(request) {
        return refusal;
    }
    let (ok, body) = state.answer(probe);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply(status, HEALTH_JSON, body)
}

/// `/metrics`: encoded from atomics and `/proc/self` (reused for up to a second); never
/// touches Redis.
fn scrape<B>(request: &Request<B>, state: &State) -> Response<Full<Bytes>> {
    if let Some(refusal) = refuse_method(request) {
        return refusal;
    }
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let ready = state.answer(Endpoint::Ready).0;
    let (body, content_type) = state.metrics.encode(wants_openmetrics(accept), ready);
    reply(StatusCode::OK, HeaderValue::from_static(content_type), body)
}

/// 405 with `Allow` for anything but GET and HEAD.
fn refuse_method<B>(request: &Request<B>) -> Option<Response<Full<Bytes>>> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let mut response = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        JSON,
        Bytes::from_static(NOT_ALLOWED_BODY.as_bytes()),
    );
    response.headers_mut().insert(ALLOW, GET_HEAD);
    Some(response)
}

fn reply(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CACHE_CONTROL, NO_STORE);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Component, ComponentState, NamedCheck, Observed, Outcome, Reading, Status, Verdict};
    use std::time::SystemTime;

    fn state_with(status: Status) -> State {
        let verdict = Verdict {
            checks: vec![NamedCheck {
                name: "redis:responseTime",
                components: vec![Component {
                    id: "redis://127.0.0.1:6379".into(),
                    kind: "datastore",
                    state: ComponentState {
                        status,
                        latest: status,
                        healthy: Some(status != Status::Fail),
                        outcome: Outcome {
                            at: SystemTime::now(),
                            result: Ok(Reading::pass(Observed::RoundTrip(Duration::from_millis(1)))),
                        },
                        consecutive_failures: 0,
                        last_success: Some(SystemTime::now()),
                        output: None,
                    },
                }],
            }],
        };
        let snapshot = Snapshot::new(Instant::now(), verdict, "d", false);
        let (_tx, rx) = watch::channel(Arc::new(snapshot));
        let max_age = Duration::from_secs(3);
        State::new(
            rx,
            FixedBodies::new("d", max_age),
            max_age,
            Arc::new(Metrics::new(max_age)),
        )
    }

    fn get(path: &str, method: Method, state: &State) -> Response<Full<Bytes>> {
        let request = Request::builder().method(method).uri(path).body(()).unwrap();
        route(&request, state)
    }

    #[test]
    fn repeated_warnings_are_throttled() {
        let mut throttled = Throttled::default();
        assert_eq!(throttled.hit(), Some(0));
        assert_eq!(throttled.hit(), None);
        assert_eq!(throttled.hit(), None);
        throttled.next = Some(Instant::now());
        assert_eq!(
            throttled.hit(),
            Some(2),
            "the next log says how many were left out"
        );
    }

    #[test]
    fn routes_ignore_query_strings() {
        let state = state_with(Status::Pass);
        for path in [
            "/livez",
            "/readyz?verbose",
            "/startupz",
            "/health",
            "/healthz?x=1&y",
        ] {
            let response = get(path, Method::GET, &state);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[CONTENT_TYPE], "application/health+json");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        }
    }

    #[test]
    fn unknown_paths_are_json_404s_and_other_methods_405() {
        let state = state_with(Status::Pass);
        let response = get("/nope", Method::GET, &state);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let response = get("/readyz", Method::POST, &state);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        assert_eq!(get("/readyz", Method::HEAD, &state).status(), StatusCode::OK);
    }

    #[test]
    fn failing_verdict_is_503_but_alive() {
        let state = state_with(Status::Fail);
        assert_eq!(
            get("/readyz", Method::GET, &state).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get("/health", Method::GET, &state).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get("/livez", Method::GET, &state).status(), StatusCode::OK);
        state.start_draining();
        assert_eq!(get("/livez", Method::GET, &state).status(), StatusCode::OK);
    }
}
