//! The HTTP side: the accept loop (HTTP/1 only, header-read timeout, bounded graceful drain),
//! and [`route`], which answers every request from the latest snapshot's ready bytes without
//! touching Redis or awaiting anything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::admission::{Admission, Evicted, Ticket};
use crate::metrics::{wants_openmetrics, Metrics};
use crate::snapshot::{
    render_excluded, render_one, render_verbose, Endpoint, FixedBodies, Query, Snapshot, View,
};

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
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
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

    /// The latest snapshot as of now, for one request.
    fn view<R>(&self, answer: impl FnOnce(&View<'_>) -> R) -> R {
        let snapshot = self.snapshots.borrow().clone();
        let draining = self.draining.load(Ordering::Relaxed);
        answer(&View::new(
            &snapshot,
            &self.fixed,
            Instant::now(),
            self.max_age,
            draining,
        ))
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
/// At most `max_connections` are open at once, a quarter of them per peer address. A new
/// connection is always taken: to make room, the one that has sat longest without a request
/// in progress is closed, the same peer's first ([`Admission`]). A flood from one address
/// then only cuts its own connections, and a probe from anywhere else is served at once.
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
        .max_buf_size(MAX_BUF_SIZE)
        // Copy each body into the head's buffer and send one write: measured with 50 targets
        // (a 1.6 KiB /readyz body), vectored writes cost 4.60 µs of CPU per request against
        // 4.43 µs flattened (the baseline: 4.30 µs).
        .writev(false);
    let graceful = GracefulShutdown::new();
    let admission = Admission::new(max_connections);
    let clock = admission.clock();
    let admission = Arc::new(Mutex::new(admission));
    let mut accept_errors = Throttled::default();
    let mut shed = Throttled::default();
    loop {
        let (stream, peer) = tokio::select! {
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
        let (ticket, evicted) = lock(&admission).admit(peer.ip());
        if evicted != Evicted::Nobody {
            if let Some(suppressed) = shed.hit() {
                warn!(
                    max_connections,
                    peer = %peer.ip(),
                    suppressed,
                    "connection limit reached; closing the connections idle longest"
                );
            }
        }
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let Ticket { id, idle_since } = ticket;
        let clock = clock.clone();
        let service = service_fn(move |request| {
            let response = route(&request, &state);
            idle_since.store(clock.load(Ordering::Relaxed), Ordering::Relaxed);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let served = admission.clone();
        // An evicted connection's task is aborted, which drops (closes) the connection.
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts of idle keep-alive connections land here: not worth a warning.
                debug!(error = %e, "connection closed with an error");
            }
            lock(&served).leave(id);
        });
        lock(&admission).attach(id, task.abort_handle());
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("drain timed out; closing the remaining connections");
    }
}

/// The admission lock; never held across an await, so a poisoned one is still consistent.
fn lock(admission: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    admission.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    let path = request.uri().path();
    let (endpoint, name) = match path {
        "/livez" => (Endpoint::Live, "livez"),
        "/readyz" => (Endpoint::Ready, "readyz"),
        "/startupz" => (Endpoint::Started, "startupz"),
        "/health" => (Endpoint::Health, "health"),
        "/healthz" => (Endpoint::Health, "healthz"),
        "/metrics" => return scrape(request, state),
        "/" if prefers_html(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok())) => {
            return refuse_method(request)
                .unwrap_or_else(|| reply(StatusCode::OK, HTML, state.view(|view| view.page())));
        }
        _ => {
            return match [("/readyz/", Endpoint::Ready), ("/livez/", Endpoint::Live)]
                .into_iter()
                .find_map(|(prefix, endpoint)| Some((endpoint, path.strip_prefix(prefix)?)))
            {
                Some((endpoint, check)) => {
                    refuse_method(request).unwrap_or_else(|| one_check(endpoint, check, state))
                }
                None => reply(
                    StatusCode::NOT_FOUND,
                    JSON,
                    Bytes::from_static(NOT_FOUND_BODY.as_bytes()),
                ),
            };
        }
    };
    if let Some(refusal) = refuse_method(request) {
        return refusal;
    }
    // Probes send no query: they go straight to the pre-rendered bodies.
    let query = request.uri().query().map(Query::parse).unwrap_or_default();
    if query.is_kube() && endpoint != Endpoint::Started {
        let conditions = state.view(|view| view.conditions(endpoint));
        let (ok, content_type, body) = if query.verbose {
            let (ok, text) = render_verbose(name, &conditions, &query);
            (ok, TEXT, Bytes::from(text))
        } else {
            let (ok, body) = render_excluded(&state.fixed.description, &conditions, &query);
            (ok, HEALTH_JSON, body)
        };
        return reply(status_code(ok), content_type, body);
    }
    let (ok, body) = state.view(|view| view.answer(endpoint));
    reply(status_code(ok), HEALTH_JSON, body)
}

/// `/readyz/<name>`, `/livez/<name>`: that check alone, 200 or 503 with a line of text; an
/// unknown name is a 404.
fn one_check(endpoint: Endpoint, check: &str, state: &State) -> Response<Full<Bytes>> {
    let name = percent_encoding::percent_decode_str(check).decode_utf8_lossy();
    match render_one(&state.view(|view| view.conditions(endpoint)), &name) {
        Some((ok, line)) => reply(status_code(ok), TEXT, Bytes::from(line + "\n")),
        None => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from(format!("no check named {name:?}\n")),
        ),
    }
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// True when an `Accept` header prefers HTML (a browser) to JSON; a missing header, `*/*` or
/// `application/json` (curl, scripts) is not.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let quality = |wanted: &[&str]| {
        accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|range| {
                let mut params = range.split(';').map(str::trim);
                let media = params.next()?;
                if !wanted.iter().any(|w| media.eq_ignore_ascii_case(w)) {
                    return None;
                }
                let q = params
                    .find_map(|p| p.strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.parse::<f32>().ok())?;
                Some(q)
            })
            .fold(0.0f32, f32::max)
    };
    let html = quality(&["text/html", "application/xhtml+xml"]);
    html > 0.0 && html >= quality(&["application/json", "application/health+json"])
}

/// `/metrics`: encoded from atomics and `/proc/self` (reused for up to a second); never
/// touches Redis.
fn scrape<B>(request: &Request<B>, state: &State) -> Response<Full<Bytes>> {
    if let Some(refusal) = refuse_method(request) {
        return refusal;
    }
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let ready = state.view(|view| view.answer(Endpoint::Ready).0);
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

    /// A state whose verdict has these checks, one component each: (name, status, output).
    fn state_of(checks: &[(&'static str, Status, Option<&str>)]) -> State {
        let verdict = Verdict {
            checks: checks
                .iter()
                .map(|(name, status, output)| NamedCheck {
                    readiness: true,
                    name,
                    components: vec![Component {
                        id: "redis://127.0.0.1:6379".into(),
                        kind: "datastore",
                        state: ComponentState {
                            status: *status,
                            latest: *status,
                            healthy: Some(*status != Status::Fail),
                            outcome: Outcome {
                                at: SystemTime::now(),
                                result: Ok(Reading::pass(Observed::RoundTrip(Duration::from_millis(1)))),
                            },
                            consecutive_failures: 0,
                            last_success: Some(SystemTime::now()),
                            output: output.map(str::to_owned),
                        },
                    }],
                })
                .collect(),
        };
        let snapshot = Snapshot::new(Instant::now(), verdict, "d", false, &Default::default());
        let (_tx, rx) = watch::channel(Arc::new(snapshot));
        let max_age = Duration::from_secs(3);
        State::new(
            rx,
            FixedBodies::new("d", max_age),
            max_age,
            Arc::new(Metrics::new(max_age, &["redis"])),
        )
    }

    fn state_with(status: Status) -> State {
        state_of(&[("redis:responseTime", status, None)])
    }

    fn body(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = futures_util::FutureExt::now_or_never(response.into_body().collect())
            .expect("a full body is ready")
            .expect("infallible")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
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
    fn routes_ignore_unknown_query_parameters() {
        let state = state_with(Status::Pass);
        for path in [
            "/livez",
            "/readyz?x",
            "/startupz?verbose",
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

    #[test]
    fn verbose_lists_every_check_with_its_reason() {
        let state = state_of(&[
            ("redis:responseTime", Status::Pass, None),
            (
                "redis:memory",
                Status::Warn,
                Some("used_memory 0.9 MiB is 95.0% of maxmemory 1 MiB"),
            ),
            (
                "redis:role",
                Status::Fail,
                Some("role is replica of 10.0.0.7:6379, expected master"),
            ),
        ]);
        let response = get("/readyz?verbose", Method::GET, &state);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            body(response),
            "[+]probe-loop ok\n[+]shutdown ok\n[+]redis:responseTime ok\n\
             [+]redis:memory ok (warn: used_memory 0.9 MiB is 95.0% of maxmemory 1 MiB)\n\
             [-]redis:role failed: role is replica of 10.0.0.7:6379, expected master\nreadyz check failed\n"
        );
        let response = get(
            "/readyz?verbose=1&exclude=redis%3Arole&exclude=nope",
            Method::GET,
            &state,
        );
        assert_eq!(response.status(), StatusCode::OK);
        let text = body(response);
        assert!(text.contains("[+]redis:role excluded: ok\n"), "{text}");
        assert!(
            text.ends_with(
                "warn: some health checks cannot be excluded: no matches for \"nope\"\nreadyz check passed\n"
            ),
            "{text}"
        );
        // Liveness never lists Redis.
        let text = body(get("/livez?verbose", Method::GET, &state));
        assert_eq!(text, "[+]probe-loop ok\nlivez check passed\n");
        // ?exclude alone answers the summary document over what is left.
        let response = get("/health?exclude=redis:role", Method::GET, &state);
        assert_eq!(response.status(), StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body(response)).unwrap();
        assert_eq!(doc["status"], "warn");
        assert_eq!(
            doc["output"],
            "redis:memory: used_memory 0.9 MiB is 95.0% of maxmemory 1 MiB"
        );
        // Draining shows as its own condition.
        state.start_draining();
        let text = body(get("/readyz?verbose", Method::GET, &state));
        assert!(text.contains("[-]shutdown failed: shutting down\n"), "{text}");
    }

    #[test]
    fn a_check_alone_answers_by_its_path() {
        let state = state_of(&[
            ("redis:responseTime", Status::Pass, None),
            (
                "redis:role",
                Status::Fail,
                Some("role is master, expected replica"),
            ),
        ]);
        let response = get("/readyz/redis:responseTime", Method::GET, &state);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response), "ok\n");
        let response = get("/readyz/redis%3Arole", Method::GET, &state);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(response), "failed: role is master, expected replica\n");
        assert_eq!(
            get("/readyz/redis:nope", Method::GET, &state).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/livez/probe-loop", Method::GET, &state).status(),
            StatusCode::OK
        );
        assert_eq!(
            get("/livez/redis:role", Method::GET, &state).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/readyz/redis:role", Method::POST, &state).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn a_browser_gets_the_status_page_and_programs_the_json_index() {
        let state = state_with(Status::Pass);
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        let request = Request::builder()
            .uri("/")
            .header(ACCEPT, browser)
            .body(())
            .unwrap();
        let response = route(&request, &state);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let page = body(response);
        assert!(
            page.contains("Redis is healthy") && page.contains("redis:responseTime"),
            "{page}"
        );
        for accept in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("application/json, text/html;q=0.5"),
        ] {
            let mut request = Request::builder().uri("/");
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            let response = route(&request.body(()).unwrap(), &state);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{accept:?}");
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json", "{accept:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_query_or_accept_is_answered_without_panicking(query in "\\PC{0,80}", accept in "\\PC{0,80}") {
            let state = state_with(Status::Warn);
            let _ = prefers_html(Some(&accept));
            let parsed = Query::parse(&query);
            let (_, text) = render_verbose("readyz", &state.view(|view| view.conditions(Endpoint::Ready)), &parsed);
            proptest::prop_assert!(text.ends_with("readyz check passed\n"));
        }
    }
}
