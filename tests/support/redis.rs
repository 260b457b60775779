//! Real `redis-server` processes on free loopback ports, killed and reaped on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A port nothing listens on right now (the OS picks it; we release it at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A real redis-server on 127.0.0.1, killed and reaped on drop.
pub struct RedisServer {
    pub port: u16,
    /// `redis-server` from the PATH (Debian's), or another server's binary.
    binary: PathBuf,
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
        Self::start_binary_on(Path::new("redis-server"), port, extra)
    }

    /// Another server's binary (Redis 6.2, Valkey 8: see `support::servers`).
    pub fn start_binary(binary: &Path, extra: &[&str]) -> Self {
        Self::start_binary_on(binary, free_port(), extra)
    }

    fn start_binary_on(binary: &Path, port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            port,
            binary: binary.to_owned(),
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
        let child = Command::new(&self.binary)
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
                panic!("cannot start {} ({e}); install it with `apt-get install redis-server` or run scripts/test", self.binary.display())
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
        Self::loading_binary(Path::new("redis-server"))
    }

    /// [`loading`](Self::loading) with another server's binary (7.0 or later: the debug
    /// command and the load settings).
    pub fn loading_binary(binary: &Path) -> Self {
        let mut redis = Self::start_binary(binary, &["--enable-debug-command", "local"]);
        assert_eq!(redis.cli(&["DEBUG", "POPULATE", "50000"]), "OK");
        assert_eq!(redis.cli(&["SAVE"]), "OK");
        redis.kill();
        // Serve clients every 1 KiB loaded (the default 2 MiB would stall replies past the
        // timeout).
        let mut loading = Self {
            port: redis.port,
            binary: binary.to_owned(),
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

    /// The ids of the normal clients that have sent a command, redis-cli's own `CLIENT LIST`
    /// left out: a daemon's established connections. A bare connection (the daemon's check
    /// that the server accepts connections, a handshake under way) has sent none, and would
    /// be gone, or an attempt broken, by the time a kill by type reached it.
    pub fn established_clients(&self) -> Vec<String> {
        self.cli(&["CLIENT", "LIST", "TYPE", "normal"])
            .lines()
            .filter_map(|line| {
                let field = |name: &str| line.split(' ').find_map(|f| f.strip_prefix(name));
                match field("cmd=") {
                    None | Some("NULL" | "client|list" | "client") => None,
                    Some(_) => field("id=").map(str::to_owned),
                }
            })
            .collect()
    }

    /// Kills the [established](Self::established_clients) connections by id; how many it
    /// killed.
    pub fn kill_established_clients(&self) -> usize {
        self.established_clients()
            .iter()
            .filter(|id| self.cli(&["CLIENT", "KILL", "ID", id]) == "1")
            .count()
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
