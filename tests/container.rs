//! The image in a real container engine: the repository's Dockerfile built by podman (with
//! stand-in base images from Debian packages where podman has none: `scripts/container-image`
//! says which), run read-only as 65532; every shipped Kubernetes pod started as the kubelet
//! starts it; the compose file end to end through docker-compose and podman's API socket; and,
//! for all of them, a Redis outage longer than any probe's patience restarts nothing.
//!
//! podman has no systemd here and so runs no health-check timers: these tests run
//! `podman healthcheck run` at the health check's own interval, which is what the timer does.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::kubelet::{self, Backend, Probe, Rendered, Volumes};
use support::podman::{self, image, podman, redis_container, wait_for, Container, Network};

/// A probe's patience we cannot sit out in a test is acceptable only when no outage outlasts
/// it: ten years.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn get_ok(addr: SocketAddr, path: &str) -> bool {
    support::try_request(addr, "GET", path).is_ok_and(|r| r.status == 200)
}

#[test]
fn the_image_runs_read_only_as_65532_without_a_shell_on_both_stacks() {
    let image = image();
    let user = podman(&["image", "inspect", "--format", "{{.Config.User}}", image]);
    assert_eq!(user, "65532:65532");
    let check = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Healthcheck.Test}}",
        image,
    ]);
    assert_eq!(
        check,
        r#"["CMD","/usr/local/bin/redis-healthd","check","/livez"]"#
    );

    let shell = podman::podman_output(&["run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true"]);
    assert!(!shell.status.success(), "the image has a shell");
    let said = String::from_utf8_lossy(&shell.stderr);
    assert!(said.contains("no such file"), "{said}");

    let network = Network::dual_stack();
    let _redis = redis_container(&network, "redis", &["--save", ""]);
    let daemon = Container::run(
        "healthd",
        &[
            "--network",
            &network.name,
            "--read-only",
            "--cap-drop=ALL",
            "--env=REDIS_URL=redis://redis:6379",
            "--publish=127.0.0.1::8558",
            image,
        ],
    );
    let addr = daemon.published(8558);
    let took = wait_for(
        Duration::from_secs(20),
        "ready",
        || daemon.logs(),
        || get_ok(addr, "/readyz"),
    );
    println!("ready {took:?} after podman run returned");
    assert!(get_ok(addr, "/livez"));

    // Its process runs as 65532:65532, as the host sees it.
    let pid = daemon.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        assert!(line.split_whitespace().skip(1).all(|id| id == "65532"), "{line}");
    }
    // The default listen address is dual-stack: the pod's IPv4 and IPv6 addresses both answer,
    // as a kubelet probes them on a dual-stack or IPv6-only cluster ...
    let ips = daemon.addresses();
    assert!(
        ips.iter().any(|ip| ip.is_ipv4()) && ips.iter().any(|ip| ip.is_ipv6()),
        "{ips:?}"
    );
    for ip in ips {
        let pod = SocketAddr::new(ip, 8558);
        assert!(get_ok(pod, "/readyz"), "{pod}");
    }
    // ... and so do both loopbacks inside the container, which `check` uses.
    for url in ["http://127.0.0.1:8558/readyz", "http://[::1]:8558/readyz"] {
        let out = podman(&[
            "exec",
            &daemon.name,
            "/usr/local/bin/redis-healthd",
            "check",
            "--url",
            url,
        ]);
        assert!(out.starts_with("ok: 200 OK"), "{url}: {out}");
    }
    assert!(
        daemon.healthcheck(),
        "the image's own HEALTHCHECK: {}",
        daemon.logs()
    );
    assert_eq!(daemon.inspect("{{.State.Health.Status}}"), "healthy");
}

/// The image's HEALTHCHECK as engines use it with `--health-on-failure=restart` (podman's; Swarm
/// and autoheal do the same): Redis down for longer than `start-period + retries × interval`
/// restarts nothing. The same run with the compose file's readiness check does restart, which
/// shows the harness sees a restart when there is one.
#[test]
fn the_images_healthcheck_never_restarts_the_daemon_while_redis_is_down() {
    let image = image();
    // podman prints them as Go durations ("10s").
    let seconds = |field: &str| {
        humantime::parse_duration(&podman(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{.Config.Healthcheck.{field}}}}}"),
            image,
        ]))
        .unwrap()
    };
    let (interval, start_period) = (seconds("Interval"), seconds("StartPeriod"));
    let retries: u32 = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.Healthcheck.Retries}}",
        image,
    ])
    .parse()
    .unwrap();
    let network = Network::create();
    let redis = redis_container(&network, "redis", &["--save", ""]);
    let common = [
        "--network",
        &network.name,
        "--read-only",
        "--env=REDIS_URL=redis://redis:6379",
        "--health-on-failure=restart",
        "--publish=127.0.0.1::8558",
    ];
    let own = Container::run("own-check", &[&common[..], &[image]].concat());
    let compose_check = compose_healthcheck();
    let readiness = Container::run(
        "readiness-check",
        &[&common[..], &["--health-cmd", &compose_check, image]].concat(),
    );
    for c in [&own, &readiness] {
        let addr = c.published(8558);
        wait_for(
            Duration::from_secs(20),
            "ready",
            || c.logs(),
            || get_ok(addr, "/readyz"),
        );
        assert!(c.healthcheck(), "{}", c.logs());
    }
    let (own_started, readiness_started) = (own.started_at(), readiness.started_at());

    redis.stop();
    let outage = start_period + interval * (retries + 1);
    println!("Redis stopped; health checks every {interval:?} for {outage:?}");
    let started = Instant::now();
    let mut readiness_restarted = None;
    while started.elapsed() < outage {
        assert!(
            own.healthcheck(),
            "the image's check failed with Redis down: {}",
            own.logs()
        );
        if readiness_restarted.is_none() {
            readiness.healthcheck();
            if readiness.started_at() != readiness_started {
                readiness_restarted = Some(started.elapsed());
            }
        }
        std::thread::sleep(interval);
    }
    assert_eq!(own.started_at(), own_started, "the daemon was restarted");
    assert_eq!(own.inspect("{{.State.Health.Status}}"), "healthy");
    let restarted =
        readiness_restarted.expect("the readiness check, the control, never restarted its container");
    println!("control: the readiness check's container was restarted {restarted:?} into the outage; the image's own check kept it");
}

/// The compose file's health-check command, as `podman run --health-cmd` takes it (JSON).
fn compose_healthcheck() -> String {
    let compose = compose_file();
    let test = &compose["services"]["redis-healthd"]["healthcheck"]["test"];
    let words: Vec<&str> = test
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(words[0], "CMD", "{test}");
    serde_json::to_string(&words[1..]).unwrap()
}

fn compose_file() -> serde_json::Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker-compose.yml"))
            .unwrap();
    yaml_serde::from_str(&text).unwrap()
}

/// Every shipped manifest's pod, started as the kubelet starts it: it reads its Secrets, becomes
/// started and ready against real Redis servers, and then through an outage longer than any
/// probe's failureThreshold × periodSeconds nothing would restart it (liveness holds, readiness
/// fails as it should); a second copy started during the outage waits (startup probe failing,
/// the app held back) without ever being restarted, and starts once Redis is back.
#[test]
fn every_shipped_pod_reads_its_secrets_starts_and_outlives_an_outage() {
    image();
    let certs = support::Certs::make();
    // cert-manager's certificate for the web-tls overlay: held by the cluster, not the manifests.
    let outside: kubelet::Outside = HashMap::from([(
        "redis-healthd-tls".to_owned(),
        vec![
            (
                "tls.crt".to_owned(),
                std::fs::read(certs.path("server.pem")).unwrap(),
            ),
            (
                "tls.key".to_owned(),
                std::fs::read(certs.path("server.key")).unwrap(),
            ),
        ],
    )]);
    let overlays = kubelet::overlays();
    assert!(overlays.len() >= 4, "{overlays:?}");
    std::thread::scope(|scope| {
        let runs: Vec<_> = overlays
            .iter()
            .map(|overlay| {
                let (certs, outside) = (&certs, &outside);
                scope.spawn(move || run_pod(&Rendered::of(overlay), certs, outside))
            })
            .collect();
        let mut failed = Vec::new();
        for (overlay, run) in overlays.iter().zip(runs) {
            if let Err(panic) = run.join() {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{}: {why}", overlay.display()));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    });
}

fn run_pod(rendered: &Rendered, certs: &support::Certs, outside: &kubelet::Outside) {
    let name = &rendered.name;
    let sidecar = rendered.sidecar();
    let probes = kubelet::probes(sidecar);
    let probe = |kind: &str| probes.iter().find(|p| p.kind == kind).cloned();
    let (startup, readiness, liveness) = (
        probe("startupProbe"),
        probe("readinessProbe"),
        probe("livenessProbe"),
    );
    let liveness = liveness.unwrap_or_else(|| panic!("{name}: no liveness probe"));
    let readiness = readiness.unwrap_or_else(|| panic!("{name}: no readiness probe"));

    let volumes = Volumes::lay_out(rendered, outside);
    let backends: Vec<Backend> = kubelet::backends(sidecar, &volumes);
    let network = Network::create();
    let mut servers = kubelet::start_backends(&backends, &network, certs);
    // A cluster whose nodes trust the CA that signed the TLS Redis's certificate.
    let trust = backends
        .iter()
        .any(|b| b.tls)
        .then(|| (certs.path("ca.pem"), "/etc/ssl/certs/ca-certificates.crt"));
    let args = kubelet::run_args(rendered, &volumes, &network, trust.as_slice());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pod = Container::run("pod", &args);
    let addr = pod.published(liveness.port);

    // Started: the kubelet asks the startup probe first, then readiness.
    let first = startup.clone().unwrap_or_else(|| readiness.clone());
    let took = wait_for(
        Duration::from_secs(30),
        &format!("{name}: {} {}", first.kind, first.path),
        || pod.logs(),
        || kubelet::ask(&first, addr),
    );
    wait_for(
        Duration::from_secs(10),
        &format!("{name}: ready"),
        || pod.logs(),
        || kubelet::ask(&readiness, addr),
    );
    println!("{name}: started {took:?} after the container was created, then ready");
    let logs = pod.logs();
    assert!(!logs.contains("Permission denied"), "{name}: {logs}");

    // The outage: every Redis stopped.
    for server in &servers {
        server.stop();
    }
    let waiting = Container::run("pod-waiting", &args);
    let waiting_addr = waiting.published(liveness.port);
    let started_at = (pod.started_at(), waiting.started_at());
    let restarting: Vec<&Probe> = probes.iter().filter(|p| p.restarts()).collect();
    let mut sat_out = Vec::new();
    let mut outage = readiness.budget() + readiness.period;
    for p in &restarting {
        if p.budget() >= FOREVER {
            // Patience no outage outlasts (the startup probe waiting for Redis): run below,
            // for as long as the rest, and never failing it would be proof of nothing.
            continue;
        }
        assert!(
            p.budget() <= Duration::from_secs(120),
            "{name}: {} waits {:?}: too long to sit out here, and it would restart the daemon after it",
            p.kind,
            p.budget()
        );
        outage = outage.max(p.budget() + p.period);
        sat_out.push(p.kind);
    }
    println!("{name}: Redis stopped for {outage:?}; probes as the kubelet sends them");
    let mut kubelet_sees = Kubelet::default();
    let started = Instant::now();
    while started.elapsed() < outage {
        let now = started.elapsed();
        kubelet_sees.tick(now, &liveness, kubelet::ask(&liveness, addr));
        kubelet_sees.tick(now, &readiness, kubelet::ask(&readiness, addr));
        if let Some(startup) = &startup {
            let passed = kubelet::ask(startup, waiting_addr);
            assert!(!passed, "{name}: the copy started during the outage passed its startup probe: the app would start without Redis");
            kubelet_sees.tick(now, startup, passed);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !kubelet_sees.acted("livenessProbe"),
        "{name}: the kubelet would restart the daemon: {kubelet_sees:?}"
    );
    assert!(
        kubelet_sees.acted("readinessProbe"),
        "{name}: readiness never failed with Redis down: {kubelet_sees:?}"
    );
    if let Some(startup) = &startup {
        let failed = kubelet_sees.streak("startupProbe");
        assert!(
            failed < startup.failure_threshold && startup.budget() >= FOREVER,
            "{name}: the startup probe gives up after {:?} ({} failures, {failed} seen): an outage that long restarts the sidecar",
            startup.budget(),
            startup.failure_threshold
        );
    }
    assert_eq!(
        (pod.started_at(), waiting.started_at()),
        started_at,
        "{name}: a container was restarted"
    );
    assert_eq!(
        pod.inspect("{{.State.Running}}"),
        "true",
        "{name}: {}",
        pod.logs()
    );
    println!("{name}: through the outage liveness held ({} sat out: {sat_out:?}), readiness failed, the waiting copy stayed unstarted", sat_out.len());

    // Redis back: both become ready (the waiting one passes its startup probe first).
    for server in &mut servers {
        server.start();
    }
    for (copy, at) in [(&pod, addr), (&waiting, waiting_addr)] {
        if let Some(startup) = &startup {
            wait_for(
                Duration::from_secs(20),
                &format!("{name}: startup after the outage"),
                || copy.logs(),
                || kubelet::ask(startup, at),
            );
        }
        let back = wait_for(
            Duration::from_secs(20),
            &format!("{name}: ready after the outage"),
            || copy.logs(),
            || kubelet::ask(&readiness, at),
        );
        println!("{name}: ready again {back:?} after Redis was started");
    }
}

/// What the kubelet counts per probe: consecutive failures, asked at the probe's period.
#[derive(Default, Debug)]
struct Kubelet {
    /// kind → (next time to ask, current streak, worst streak, failureThreshold)
    probes: HashMap<&'static str, (Duration, u64, u64, u64)>,
}

impl Kubelet {
    fn tick(&mut self, now: Duration, probe: &Probe, passed: bool) {
        let entry = self
            .probes
            .entry(probe.kind)
            .or_insert((Duration::ZERO, 0, 0, probe.failure_threshold));
        if now < entry.0 {
            return;
        }
        entry.0 = now + probe.period;
        entry.1 = if passed { 0 } else { entry.1 + 1 };
        entry.2 = entry.2.max(entry.1);
    }

    /// True when the probe failed failureThreshold times in a row (restart, or unready).
    fn acted(&self, kind: &str) -> bool {
        self.probes.get(kind).is_some_and(|p| p.2 >= p.3)
    }

    fn streak(&self, kind: &str) -> u64 {
        self.probes.get(kind).map_or(0, |p| p.2)
    }
}

/// podman's Docker-compatible API on a socket of this test's, for docker-compose.
struct ApiService {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiService {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let child = podman::podman_command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until_exists(&socket);
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    fn compose(&self, project: &str, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(["--no-ansi", "-p", project, "-f"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker-compose.yml"))
            .args(args);
        command
    }
}

fn wait_until_exists(path: &Path) {
    wait_for(
        Duration::from_secs(10),
        "podman's API socket",
        String::new,
        || path.exists(),
    );
}

impl Drop for ApiService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deploy/docker-compose.yml` end to end through docker-compose 1.29 and podman's API socket
/// (the image built beforehand, `--no-build`): the app starts only once redis-healthd is
/// healthy; Redis stopped turns it unhealthy within the file's `retries × interval`, and back
/// healthy once Redis returns; nothing is restarted.
#[test]
fn the_compose_file_end_to_end() {
    image();
    let compose = compose_file();
    let check = &compose["services"]["redis-healthd"]["healthcheck"];
    let interval = humantime::parse_duration(check["interval"].as_str().unwrap()).unwrap();
    let retries = check["retries"].as_u64().unwrap() as u32;
    let api = ApiService::start();
    let project = podman::unique("compose").replace('-', "");
    let container = |service: &str| format!("{project}_{service}_1");
    let healthd = container("redis-healthd");
    let exists = |name: &str| {
        podman::podman_output(&["container", "exists", name])
            .status
            .success()
    };

    // podman's timer, which this machine lacks: one check per interval from the container's
    // creation on, on one schedule for the whole test.
    let timer = Timer::new(interval);
    let started = Instant::now();
    let mut up = api
        .compose(&project, &["up", "-d", "--no-build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _down = Down(&api, &project);
    // The app must not exist before redis-healthd is healthy.
    let app = container("app");
    let mut healthy_after = None;
    while healthy_after.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "redis-healthd never became healthy"
        );
        timer.tick();
        if !exists(&healthd) {
            continue;
        }
        assert!(
            !exists(&app),
            "the app was created before redis-healthd was healthy"
        );
        if podman::podman_output(&["healthcheck", "run", &healthd])
            .status
            .success()
        {
            healthy_after = Some(started.elapsed());
        }
    }
    let out = up.wait_with_output_timeout(Duration::from_secs(60));
    assert!(out.0, "docker-compose up: {}", out.1);
    wait_for(
        Duration::from_secs(30),
        "the app running",
        || out.1.clone(),
        || exists(&app) && podman(&["inspect", "--format", "{{.State.Running}}", &app]) == "true",
    );
    let app_running = started.elapsed();
    let app_logs = podman(&["logs", &app]);
    assert!(
        app_logs.contains("Redis is reachable: app starting"),
        "{app_logs}"
    );
    println!(
        "compose up → redis-healthd healthy {:?} (checks every {interval:?}), app running {app_running:?}",
        healthy_after.unwrap()
    );
    let healthd_started = podman(&["inspect", "--format", "{{.State.StartedAt}}", &healthd]);
    let status = || podman(&["inspect", "--format", "{{.State.Health.Status}}", &healthd]);

    // Redis stopped halfway between two checks: unhealthy within retries × interval.
    let redis = container("redis");
    timer.tick();
    podman::podman_output(&["healthcheck", "run", &healthd]);
    std::thread::sleep(interval / 2);
    podman(&["stop", "--time", "1", &redis]);
    let stopped = Instant::now();
    while status() != "unhealthy" {
        assert!(
            stopped.elapsed() <= interval * retries,
            "still {} after {:?}",
            status(),
            stopped.elapsed()
        );
        timer.tick();
        podman::podman_output(&["healthcheck", "run", &healthd]);
    }
    let unhealthy = stopped.elapsed();

    // Redis started halfway between two checks: healthy at the first check after it answers.
    timer.tick();
    podman::podman_output(&["healthcheck", "run", &healthd]);
    std::thread::sleep(interval / 2);
    podman(&["start", &redis]);
    let back = Instant::now();
    while status() != "healthy" {
        assert!(
            back.elapsed() <= interval * 2,
            "still {} after {:?}",
            status(),
            back.elapsed()
        );
        timer.tick();
        podman::podman_output(&["healthcheck", "run", &healthd]);
    }
    println!(
        "Redis stopped → unhealthy in {unhealthy:?} (retries × interval = {:?}); Redis started → healthy in {:?}",
        interval * retries,
        back.elapsed()
    );
    assert_eq!(
        podman(&["inspect", "--format", "{{.State.StartedAt}}", &healthd]),
        healthd_started,
        "compose restarted redis-healthd"
    );
}

/// A fixed schedule, as a timer's: `tick` sleeps until the next multiple of the period.
struct Timer {
    origin: Instant,
    period: Duration,
}

impl Timer {
    fn new(period: Duration) -> Self {
        Self {
            origin: Instant::now(),
            period,
        }
    }

    fn tick(&self) {
        let elapsed = self.origin.elapsed();
        let next = self.period * (elapsed.as_nanos() / self.period.as_nanos() + 1) as u32;
        std::thread::sleep(next - elapsed);
    }
}

/// `docker-compose down` for the project, however the test ends.
struct Down<'a>(&'a ApiService, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.compose(self.1, &["down", "-v", "--timeout", "1"]).output();
    }
}

trait WaitWithTimeout {
    /// (success, everything printed); kills the child after `limit`.
    fn wait_with_output_timeout(&mut self, limit: Duration) -> (bool, String);
}

impl WaitWithTimeout for Child {
    fn wait_with_output_timeout(&mut self, limit: Duration) -> (bool, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = self.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut said = String::new();
        use std::io::Read;
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        if let Some(mut err) = self.stderr.take() {
            let _ = err.read_to_string(&mut said);
        }
        (status.is_some_and(|s| s.success()), said)
    }
}
