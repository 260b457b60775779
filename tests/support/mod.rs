//! Test support: real `redis-server` processes on free loopback ports, the daemon in-process on
//! port 0 or as the built binary, a tiny HTTP/1 client, and waits with deadlines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_healthd::config::{Cli, Config};

/// The check timing most tests run the daemon with, and the bounds it implies (README,
/// Reliability): detect ≤ interval + timeout, recover ≤ interval + reconnect delay.
pub const INTERVAL: Duration = Duration::from_millis(500);
pub const TIMEOUT: Duration = Duration::from_millis(200);
/// Recovery past the last reconnect wait (which is at most INTERVAL, jitter included): the
/// connection, the check it triggers, and the round trips of both.
pub const RECONNECT: Duration = Duration::from_millis(60);
/// Scheduling slack on a shared 2-core machine.
pub const SLACK: Duration = Duration::from_millis(400);
pub const DETECT: Duration = Duration::from_millis(500 + 200 + 400);
pub const RECOVER: Duration = Duration::from_millis(500 + 60 + 400);
/// The flags for that timing.
pub const FAST: [&str; 4] = ["--interval", "500ms", "--timeout", "200ms"];

/// The daemon in-process against `redis_url` with the FAST timing plus `extra` flags.
pub fn start_fast(redis_url: &str, extra: &[&str]) -> Daemon {
    let mut flags = vec!["--redis-url", redis_url];
    flags.extend_from_slice(&FAST);
    flags.extend_from_slice(extra);
    Daemon::start(&flags)
}

/// The health document's top-level `output` (empty when passing).
pub fn output(addr: SocketAddr) -> String {
    get(addr, "/health").json()["output"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The first entry of the named check in the health document (`Null` when absent).
pub fn entry(addr: SocketAddr, check: &str) -> serde_json::Value {
    get(addr, "/health").json()["checks"][check][0].clone()
}

/// The `(status, output)` of the first entry of a named check ("" for a missing field).
pub fn check_state(addr: SocketAddr, check: &str) -> (String, String) {
    let entry = entry(addr, check);
    let text = |field: &str| entry[field].as_str().unwrap_or_default().to_string();
    (text("status"), text("output"))
}

/// Waits until the named check's first entry has `status` and an output containing `text`;
/// returns how long that took and the output.
pub fn wait_for_check(
    addr: SocketAddr,
    check: &str,
    status: &str,
    text: &str,
    limit: Duration,
) -> (Duration, String) {
    let mut last = (String::new(), String::new());
    let took = wait_until(limit, &format!("{check} {status} with {text:?}"), || {
        last = check_state(addr, check);
        last.0 == status && last.1.contains(text)
    });
    (took, last.1)
}

/// Waits until the health document's `output` contains `text`; returns that output.
pub fn wait_for_output(addr: SocketAddr, text: &str, limit: Duration) -> String {
    let mut last = String::new();
    wait_until(limit, &format!("{text:?} in the output"), || {
        last = output(addr);
        last.contains(text)
    });
    last
}

/// The value of the `/metrics` line that starts with `line_start`.
pub fn metric(addr: SocketAddr, line_start: &str) -> f64 {
    let body = get(addr, "/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{body}"))
}

/// A port nothing listens on right now (the OS picks it; we release it at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A real redis-server on 127.0.0.1, killed and reaped on drop.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `redis-server` with extra arguments and waits until it accepts connections.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            port,
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis is running").id()
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server` or run scripts/test")
            });
        self.child = Some(child);
        let port = self.port;
        wait_until(
            Duration::from_secs(10),
            "redis-server accepts connections",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// A server that answers `LOADING` for several seconds: 50,000 keys saved, then a restart
    /// on the same port with a per-key load delay.
    pub fn loading() -> Self {
        let mut redis = Self::start_with(&["--enable-debug-command", "local"]);
        assert_eq!(redis.cli(&["DEBUG", "POPULATE", "50000"]), "OK");
        assert_eq!(redis.cli(&["SAVE"]), "OK");
        redis.kill();
        // Serve clients every 1 KiB loaded (the default 2 MiB would stall replies past the
        // timeout).
        let mut loading = Self {
            port: redis.port,
            args: [
                "--key-load-delay",
                "40",
                "--loading-process-events-interval-bytes",
                "1024",
            ]
            .map(String::from)
            .to_vec(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        std::fs::copy(redis.dir().join("dump.rdb"), loading.dir().join("dump.rdb")).expect("copy the dump");
        loading.spawn();
        loading
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Runs one command through redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_as(None, args)
    }

    /// [`cli`](Self::cli), logged in with `password` when Redis requires one.
    pub fn cli_as(&self, password: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        let out = command
            .args(args)
            .output()
            .expect("run redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A field of `INFO` (e.g. `total_connections_received`), or of `cmdstat_ping`'s `calls`.
    pub fn info_number(&self, args: &[&str], field: &str) -> u64 {
        let mut command = vec!["INFO"];
        command.extend_from_slice(args);
        let info = self.cli(&command);
        info.lines()
            .find_map(|line| {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix(&format!("{field}:")) {
                    let value = rest.split(',').next()?;
                    let value = value.strip_prefix("calls=").unwrap_or(value);
                    value.parse().ok()
                } else {
                    None
                }
            })
            .unwrap_or(0)
    }

    pub fn ping_calls(&self) -> u64 {
        self.info_number(&["commandstats"], "cmdstat_ping")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process still dies on SIGKILL; CONT anyway so nothing lingers.
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
/// Returns how long it took.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends a raw request and reads the reply until the server closes (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    try_request(addr, method, path).unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

/// [`request`], with failures (connect, read, no status line) as errors.
pub fn try_request(addr: SocketAddr, method: &str, path: &str) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {raw:?}"))?;
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

/// Waits until `path` on `addr` answers `status`; returns how long that took.
pub fn wait_for(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> Duration {
    wait_until(limit, &format!("{path} to answer {status}"), || {
        get(addr, path).status == status
    })
}

/// The daemon running in-process on 127.0.0.1:0 in its own thread and runtime; shut down on drop.
pub struct Daemon {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    /// Starts the daemon with these flags (as on the command line) plus `--listen 127.0.0.1:0`.
    pub fn start(flags: &[&str]) -> Self {
        let args = std::iter::once("redis-healthd").chain(flags.iter().copied());
        let cli = Cli::parse_args(args).expect("flags parse");
        let config = Config::from_args(&cli.serve).expect("flags are valid");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let shutdown = async {
                    let _ = stopped.await;
                };
                redis_healthd::run(config, listener, shutdown, Default::default()).await
            })
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        get(self.addr, path)
    }

    pub fn status(&self, path: &str) -> u16 {
        self.get(path).status
    }

    /// Waits until `path` answers `status`; returns how long that took.
    pub fn wait_for(&self, path: &str, status: u16, limit: Duration) -> Duration {
        wait_for(self.addr, path, status, limit)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let outcome = thread.join();
            if !std::thread::panicking() {
                outcome
                    .expect("daemon thread panicked")
                    .expect("daemon returned an error");
            }
        }
    }
}

/// The built binary as a child process, its stderr collected; killed on drop.
pub struct DaemonProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_redis-healthd")
}

/// The built binary with these arguments and environment (RUST_LOG only if given), stdin
/// closed, stdout and stderr piped.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl DaemonProcess {
    /// Spawns `redis-healthd --listen 127.0.0.1:0 <flags>` and waits for its "serving" log line.
    pub fn spawn(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let args: Vec<&str> = ["--listen", "127.0.0.1:0"].iter().chain(flags).copied().collect();
        let mut child = command(&args, env).spawn().expect("spawn redis-healthd");
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut addr = None;
        wait_until(Duration::from_secs(10), "the daemon's serving line", || {
            let log = log.lock().unwrap();
            addr = log.lines().find_map(|line| {
                // `listen=ADDR` in text logs, `"listen":"ADDR"` in JSON logs.
                let rest = line.split("listen").nth(1)?.trim_start_matches(['=', '"', ':']);
                rest.split(|c: char| c.is_whitespace() || c == '"')
                    .next()?
                    .parse()
                    .ok()
            });
            addr.is_some()
        });
        Self {
            child,
            addr: addr.unwrap(),
            log,
        }
    }

    /// [`spawn`](Self::spawn) against `redis_url` with the FAST timing, waiting until ready.
    pub fn spawn_fast(redis_url: &str) -> Self {
        let mut flags = vec!["--redis-url", redis_url];
        flags.extend_from_slice(&FAST);
        let daemon = Self::spawn(&flags, &[]);
        wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
        daemon
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(limit, "the daemon to exit", || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = Some(status.code());
                true
            }
            _ => false,
        });
        code.flatten()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (killed after 20 s: a command expected to exit must not
/// hang the suite): (exit code, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut child = command(args, env).spawn().expect("run redis-healthd");
    let started = Instant::now();
    while child.try_wait().expect("wait for redis-healthd").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-healthd {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("collect redis-healthd output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Writes `contents` to a new file in `dir`.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

/// A TCP proxy in front of Redis that can be frozen: it then stops forwarding in both
/// directions but keeps every connection open, like a blackholed network path.
pub struct FreezableProxy {
    pub addr: SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    pub fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let frozen = flag.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if frozen.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, frozen }
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Open file descriptors and resident memory (KiB) of a process.
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Threads that GET `path` in a loop until dropped, counting requests that failed outright
/// (no HTTP answer, or a status other than 200 and 503).
pub struct Hammer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl Hammer {
    pub fn start(addr: SocketAddr, path: &'static str, threads: usize) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut sent, mut failures) = (0u64, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        sent += 1;
                        match try_request(addr, "GET", path) {
                            Ok(reply) if reply.status == 200 || reply.status == 503 => {}
                            Ok(reply) => failures.push(format!("status {}", reply.status)),
                            Err(e) => failures.push(e),
                        }
                    }
                    (sent, failures)
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops the threads: (requests sent, failures).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
            .into_iter()
            .fold((0, Vec::new()), |(sent, mut failures), t| {
                let (s, f) = t.join().unwrap();
                failures.extend(f);
                (sent + s, failures)
            })
    }
}

/// A CA, a server certificate for `redis.test` and 127.0.0.1, a client certificate, and an
/// unrelated ("rogue") CA, all in a temp dir.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Self {
        let certs = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        certs.sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj /CN=rogue-ca 2>/dev/null
            printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\\n' > server.ext
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=redis.test 2>/dev/null
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=redis-healthd 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null");
        certs
    }

    /// Runs a shell script in the certificates' directory (to make more of them).
    pub fn sh(&self, script: &str) {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A certificate's notAfter as Unix time, read by openssl.
    pub fn not_after(&self, name: &str) -> f64 {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(format!(
                "date -u -d \"$(openssl x509 -noout -enddate -in {name} | cut -d= -f2)\" +%s"
            ))
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}
