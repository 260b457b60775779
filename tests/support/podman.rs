//! A real container engine: podman (rootful), configured by `scripts/containers.conf`, the
//! image built once per machine state by `scripts/container-image` (stand-in base images from
//! Debian packages where podman has none), and containers and networks removed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "redis-healthd:0.1.0";
pub const REDIS_IMAGE: &str = "redis:7-bookworm";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `podman` with this project's engine configuration (runc; rlimits this machine allows).
pub fn podman_command() -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", repo().join("scripts/containers.conf"));
    command
}

/// Runs podman; its output, whatever the exit status.
pub fn podman_output(args: &[&str]) -> Output {
    podman_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (is podman installed? scripts/test installs it)"))
}

/// Runs podman and returns its stdout, trimmed; panics with its stderr when it fails.
pub fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The redis-healthd image, built by `scripts/container-image` once per test process and, across
/// the test processes that run at once, under a file lock (the first builds, the others then
/// find every layer cached). What the script says about stand-ins is printed.
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let lock_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("container-image.lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        // Released when `lock` closes, after the build (File::lock needs Rust 1.89; the crate
        // supports 1.85).
        let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock {lock_path:?}");
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/container-image"))
            .output()
            .expect("scripts/container-image");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/container-image failed:\n{said}");
        println!("scripts/container-image ({:?}):\n{said}", started.elapsed());
        for base in [
            "rust:1.95-slim-bookworm",
            "gcr.io/distroless/static-debian12:nonroot",
            REDIS_IMAGE,
            "busybox:1.36",
        ] {
            let label = podman(&[
                "image",
                "inspect",
                "--format",
                "{{index .Labels \"org.redis-healthd.stand-in\"}}",
                base,
            ]);
            let label = label.trim_start_matches("<no value>");
            if !label.is_empty() {
                println!("STAND-IN {base}: {label}");
            }
        }
    });
    IMAGE
}

/// A unique name for this test process's objects.
pub fn unique(what: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("rhd-test-{}-{what}-{n}", std::process::id())
}

/// A podman network (its own namespace and bridge), removed on drop.
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create() -> Self {
        let name = unique("net");
        podman(&["network", "create", &name]);
        Self { name }
    }

    /// With an IPv6 subnet as well (podman picks a unique local one), as a dual-stack cluster's
    /// pod network.
    pub fn dual_stack() -> Self {
        let name = unique("net6");
        podman(&["network", "create", "--ipv6", &name]);
        Self { name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = podman_output(&["network", "rm", "-f", &self.name]);
    }
}

/// A running container, removed (with `-f`) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name <unique> <args...>`.
    pub fn run(what: &str, args: &[&str]) -> Self {
        let name = unique(what);
        let mut full = vec!["run", "-d", "--name", &name];
        full.extend_from_slice(args);
        podman(&full);
        Self { name }
    }

    pub fn inspect(&self, format: &str) -> String {
        podman(&["inspect", "--format", format, &self.name])
    }

    /// The loopback address podman published `port` on (`-p 127.0.0.1::port`).
    pub fn published(&self, port: u16) -> SocketAddr {
        let line = podman(&["port", &self.name, &format!("{port}/tcp")]);
        let first = line.lines().next().unwrap_or_default();
        first.parse().unwrap_or_else(|_| {
            panic!(
                "podman port {}: {line:?} (state {}): {}",
                self.name,
                self.inspect("{{.State.Status}} {{.State.ExitCode}}"),
                self.logs()
            )
        })
    }

    /// The container's IPv4 and IPv6 addresses on its network (the pod's IPs, which the
    /// kubelet probes).
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}")
            .split_whitespace()
            .map(|ip| ip.parse().unwrap())
            .collect()
    }

    /// What the container's process printed.
    pub fn logs(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// One run of the container's health check, as podman's timer would run it: true when
    /// healthy. Also applies `--health-on-failure`.
    pub fn healthcheck(&self) -> bool {
        podman_output(&["healthcheck", "run", &self.name])
            .status
            .success()
    }

    /// When the container's process last started: it changes when the engine restarts it.
    pub fn started_at(&self) -> String {
        self.inspect("{{.State.StartedAt}}")
    }

    pub fn stop(&self) {
        podman(&["stop", "--time", "1", &self.name]);
    }

    pub fn start(&self) {
        podman(&["start", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "-f", "--time", "1", &self.name]);
    }
}

/// A Redis container from the compose file's image on `network`, reachable there as `alias`.
pub fn redis_container(network: &Network, alias: &str, args: &[&str]) -> Container {
    let mut full = vec![
        "--network",
        &network.name,
        "--network-alias",
        alias,
        REDIS_IMAGE,
        "redis-server",
    ];
    full.extend_from_slice(args);
    Container::run("redis", &full)
}

/// Polls until `condition` holds, every 50 ms; panics with `what` (and `context()`) after
/// `limit`. Returns how long it took.
pub fn wait_for(
    limit: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if condition() {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
