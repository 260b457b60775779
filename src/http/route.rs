//! Routing: one flat `match` on the path, one small handler per endpoint, content
//! negotiation for the status page and the metrics. Every answer comes from the latest
//! snapshot's ready bytes.

use bytes::Bytes;
use http_body_util::Full;
use std::sync::LazyLock;

use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::access::Seen;
use super::State;
use crate::kube::{render_excluded, render_one, render_verbose, Query};
use crate::metrics::wants_openmetrics;
use crate::view::Endpoint;
use crate::web_config::WebSettings;

const HEALTH_JSON: HeaderValue = HeaderValue::from_static("application/health+json");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
/// Envoy's active health checking marks a host that sends this header degraded.
const ENVOY_DEGRADED: HeaderName = HeaderName::from_static("x-envoy-degraded");
const WARN: HeaderValue = HeaderValue::from_static("warn");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const BASIC_CHALLENGE: HeaderValue =
    HeaderValue::from_static("Basic realm=\"redis-healthd\", charset=\"UTF-8\"");
/// The status page's policy, computed once (a hash of its style).
static PAGE_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&crate::page::content_security_policy())
        .unwrap_or(HeaderValue::from_static("default-src 'none'"))
});
const GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");
const NOT_FOUND_BODY: &str = r#"{"error":"not found","endpoints":["/","/livez","/livez/<check>","/readyz","/readyz/<check>","/startupz","/health","/healthz","/metrics"]}"#;
const NOT_ALLOWED_BODY: &str = r#"{"error":"method not allowed","allow":["GET","HEAD"]}"#;

/// Answers one request from the latest snapshot, as far as `seen` lets it see: one flat
/// match on the path, then the method (GET and HEAD only) for the paths that exist. Without
/// credentials where they are asked for, only the probes' status (a 401 for anything else);
/// over the rate limit, a 429.
pub fn route<B>(request: &Request<B>, state: &State, seen: Seen) -> Response<Full<Bytes>> {
    if seen == Seen::Limited {
        return too_many_requests();
    }
    let page = page_of(request);
    if seen == Seen::ProbesOnly {
        // Nothing about what exists either: an unknown path is a 401 too.
        return match page {
            Some(Page::Probe(endpoint @ (Endpoint::Live | Endpoint::Ready | Endpoint::Started), _))
                if request.uri().query().is_none() =>
            {
                match allowed(request) {
                    Some(refused) => refused,
                    None => status_only(endpoint, state),
                }
            }
            _ => unauthorized(),
        };
    }
    let Some(page) = page else {
        return not_found();
    };
    if let Some(refused) = allowed(request) {
        return refused;
    }
    match page {
        Page::Probe(endpoint, name) => probe(endpoint, name, request.uri().query(), state),
        Page::Metrics => scrape(accept(request), state),
        Page::Status => {
            let mut response = reply(StatusCode::OK, HTML, state.view(|view| view.page()));
            response
                .headers_mut()
                .insert(CONTENT_SECURITY_POLICY, PAGE_POLICY.clone());
            response
        }
        Page::OneCheck(endpoint, check) => one_check(endpoint, check, state),
    }
}

const METRICS_PATH: &str = "/metrics";

/// What the path asks for: one flat match; `None` for a path that does not exist.
fn page_of<B>(request: &Request<B>) -> Option<Page<'_>> {
    let path = request.uri().path();
    Some(match path {
        "/livez" => Page::Probe(Endpoint::Live, "livez"),
        "/readyz" => Page::Probe(Endpoint::Ready, "readyz"),
        "/startupz" => Page::Probe(Endpoint::Started, "startupz"),
        "/health" => Page::Probe(Endpoint::Health, "health"),
        // Liveness, as the habit of wiring `livenessProbe` to `/healthz` expects: a Redis
        // outage must never restart the daemon, whatever path the probe was given.
        "/healthz" => Page::Probe(Endpoint::Live, "healthz"),
        METRICS_PATH => Page::Metrics,
        "/" if prefers_html(accept(request)) => Page::Status,
        _ => match (path.strip_prefix("/readyz/"), path.strip_prefix("/livez/")) {
            (Some(check), _) => Page::OneCheck(Endpoint::Ready, check),
            (_, Some(check)) => Page::OneCheck(Endpoint::Live, check),
            _ => return None,
        },
    })
}

/// `None` for GET and HEAD; the 405 for any other method.
fn allowed<B>(request: &Request<B>) -> Option<Response<Full<Bytes>>> {
    (!matches!(*request.method(), Method::GET | Method::HEAD)).then(method_not_allowed)
}

/// A probe's answer without details, for a request without valid credentials: the status
/// code and `{"status":...}`, nothing about Redis.
fn status_only(endpoint: Endpoint, state: &State) -> Response<Full<Bytes>> {
    let (ok, degraded) = state.view(|view| (view.answer(endpoint).0, view.degraded()));
    let body = match (ok, degraded && endpoint == Endpoint::Ready) {
        (true, false) => r#"{"status":"pass"}"#,
        (true, true) => r#"{"status":"warn"}"#,
        (false, _) => r#"{"status":"fail"}"#,
    };
    reply(status_code(ok), HEALTH_JSON, Bytes::from_static(body.as_bytes()))
}

/// 401 with the Basic challenge.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = reply(
        StatusCode::UNAUTHORIZED,
        JSON,
        Bytes::from_static(br#"{"error":"unauthorized: basic auth is required for this path"}"#),
    );
    response.headers_mut().insert(WWW_AUTHENTICATE, BASIC_CHALLENGE);
    response
}

fn too_many_requests() -> Response<Full<Bytes>> {
    reply(
        StatusCode::TOO_MANY_REQUESTS,
        JSON,
        Bytes::from_static(br#"{"error":"too many requests"}"#),
    )
}

/// The web configuration's `http_server_config.headers` on top of an answer.
pub fn decorate(mut response: Response<Full<Bytes>>, settings: &WebSettings) -> Response<Full<Bytes>> {
    for (name, value) in &settings.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The `Accept` header, read only where content is negotiated (probes never send one).
fn accept<B>(request: &Request<B>) -> Option<&str> {
    request.headers().get(ACCEPT).and_then(|v| v.to_str().ok())
}

/// What a path asks for.
enum Page<'a> {
    /// A probe endpoint, by its name in the kube-style text.
    Probe(Endpoint, &'static str),
    Metrics,
    /// The HTML status page (`/` for a browser).
    Status,
    /// One condition of an endpoint, by name.
    OneCheck(Endpoint, &'a str),
}

/// A probe endpoint: the pre-rendered body (probes send no query), or with `?verbose` or
/// `?exclude` the kube-style text or summary (`/startupz` ignores both).
fn probe(endpoint: Endpoint, name: &str, query: Option<&str>, state: &State) -> Response<Full<Bytes>> {
    let query = query.map(Query::parse).unwrap_or_default();
    if !query.is_kube() || endpoint == Endpoint::Started {
        let ((ok, body), degraded) = state.view(|view| (view.answer(endpoint), view.degraded()));
        let mut response = reply(status_code(ok), HEALTH_JSON, body);
        if degraded && matches!(endpoint, Endpoint::Ready | Endpoint::Health) {
            response.headers_mut().insert(ENVOY_DEGRADED, WARN);
        }
        return response;
    }
    let conditions = state.view(|view| view.conditions(endpoint));
    if query.verbose {
        let (ok, text) = render_verbose(name, &conditions, &query);
        reply(status_code(ok), TEXT, Bytes::from(text))
    } else {
        let (ok, body) = render_excluded(&state.fixed.description, &conditions, &query);
        reply(status_code(ok), HEALTH_JSON, body)
    }
}

/// `/readyz/<name>`, `/livez/<name>`: that check alone, 200 or 503 with a line of text; an
/// unknown name is a 404.
fn one_check(endpoint: Endpoint, check: &str, state: &State) -> Response<Full<Bytes>> {
    let name = percent_encoding::percent_decode_str(check).decode_utf8_lossy();
    let conditions = state.view(|view| view.conditions(endpoint));
    if let Some((ok, line)) = render_one(&conditions, &name) {
        return reply(status_code(ok), TEXT, Bytes::from(line + "\n"));
    }
    let path = if endpoint == Endpoint::Live {
        "livez"
    } else {
        "readyz"
    };
    let known: Vec<&str> = conditions.iter().map(|c| c.name).collect();
    // Liveness holds only the daemon's own checks: Redis being down must never restart it.
    // Redis checks are the ones named `<target>:<check>`.
    let hint = if endpoint == Endpoint::Live && name.contains(':') {
        format!(" (Redis checks are readiness checks, never liveness ones: see /readyz/{name})")
    } else {
        String::new()
    };
    let text = format!(
        "no check named {name:?} in /{path}{hint}; it has: {}\n",
        known.join(", ")
    );
    reply(StatusCode::NOT_FOUND, TEXT, Bytes::from(text))
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

/// True for a scrape of `/metrics` while the `process_*` figures are older than a scrape may
/// reuse: the caller reads them again first (off the runtime thread, bounded).
pub fn scrapes_stale_process<B>(request: &Request<B>, state: &State) -> bool {
    request.uri().path() == METRICS_PATH && state.metrics.process_is_stale()
}

/// `/metrics`: encoded from atomics and the latest reading of `/proc/self` (reused for up to a
/// second); never touches Redis.
fn scrape(accept: Option<&str>, state: &State) -> Response<Full<Bytes>> {
    let ready = state.view(|view| view.answer(Endpoint::Ready).0);
    let (body, content_type) = state.metrics.encode(wants_openmetrics(accept), ready);
    reply(StatusCode::OK, HeaderValue::from_static(content_type), body)
}

fn not_found() -> Response<Full<Bytes>> {
    reply(
        StatusCode::NOT_FOUND,
        JSON,
        Bytes::from_static(NOT_FOUND_BODY.as_bytes()),
    )
}

/// 405 with `Allow`, for anything but GET and HEAD.
fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        JSON,
        Bytes::from_static(NOT_ALLOWED_BODY.as_bytes()),
    );
    response.headers_mut().insert(ALLOW, GET_HEAD);
    response
}

fn reply(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CACHE_CONTROL, NO_STORE);
    headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{
        Component, ComponentState, NamedCheck, ObservedValue, Outcome, Reading, Status, Verdict,
    };
    use crate::metrics::Metrics;
    use crate::snapshot::{FixedBodies, Snapshot};
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};
    use tokio::sync::watch;

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
                        server: None,
                        state: ComponentState {
                            status: *status,
                            latest: *status,
                            healthy: Some(*status != Status::Fail),
                            outcome: Outcome {
                                at: SystemTime::now(),
                                result: Ok(Reading::pass(ObservedValue::RoundTrip(Duration::from_millis(1)))),
                            },
                            consecutive_failures: 0,
                            last_success: Some(SystemTime::now()),
                            output: output.map(str::to_owned),
                            tolerated: false,
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
            crate::http::Access::open(),
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
        route(&request, state, Seen::Everything)
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
    fn a_warn_verdict_tells_envoy_the_host_is_degraded() {
        let state = state_with(Status::Warn);
        for path in ["/readyz", "/health"] {
            let response = get(path, Method::GET, &state);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["x-envoy-degraded"], "warn", "{path}");
        }
        for path in ["/livez", "/healthz"] {
            assert!(get(path, Method::GET, &state)
                .headers()
                .get("x-envoy-degraded")
                .is_none());
        }
        let state = state_with(Status::Pass);
        assert!(get("/readyz", Method::GET, &state)
            .headers()
            .get("x-envoy-degraded")
            .is_none());
        state.start_draining();
        let state = state_with(Status::Warn);
        state.start_draining();
        assert!(get("/readyz", Method::GET, &state)
            .headers()
            .get("x-envoy-degraded")
            .is_none());
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
        // `/healthz` is liveness: whatever path a liveness probe is given, Redis down never
        // restarts the daemon.
        assert_eq!(get("/healthz", Method::GET, &state).status(), StatusCode::OK);
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
        let response = route(&request, &state, Seen::Everything);
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
            let response = route(&request.body(()).unwrap(), &state, Seen::Everything);
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
