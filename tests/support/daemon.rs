//! The daemon in-process on port 0 (its own thread and runtime), or as the built binary.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_healthd::cli::Cli;
use redis_healthd::config::Config;

use super::{get, wait_for, wait_until, Reply, FAST};

/// The daemon in-process against `redis_url` with the FAST timing plus `extra` flags.
pub fn start_fast(redis_url: &str, extra: &[&str]) -> Daemon {
    let mut flags = vec!["--redis-url", redis_url];
    flags.extend_from_slice(&FAST);
    flags.extend_from_slice(extra);
    Daemon::start(&flags)
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
        let config = Config::from_flags(cli.serve.flags()).expect("flags are valid");
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
        Self::spawn_listening("127.0.0.1:0", flags, env)
    }

    /// [`spawn`](Self::spawn) with `--listen listen`; `addr` is the address the daemon logs.
    pub fn spawn_listening(listen: &str, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let args: Vec<&str> = ["--listen", listen].iter().chain(flags).copied().collect();
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
        if std::thread::panicking() {
            // A failed test shows what the daemon said: a flake on a CI machine is then read
            // from its output, not guessed at.
            eprintln!("--- the daemon's log ---\n{}--- end ---", self.log());
        }
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
