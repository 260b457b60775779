//! A tiny HTTP/1 client for the daemon's endpoints, readers of its documents and metrics,
//! and a load of parallel requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::wait_until;

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
    try_request_with(addr, method, path, &[])
}

/// A GET with these extra request headers.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    try_request_with(addr, "GET", path, headers).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// [`try_request`] with extra request headers.
pub fn try_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
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

/// GETs `/livez`, `/readyz` and `/metrics` on `addr` in turn for `period`, panicking on any
/// request that gets no HTTP answer, and passing each reply to `seen`; returns the slowest
/// answer.
pub fn sample_endpoints(addr: SocketAddr, period: Duration, mut seen: impl FnMut(&str, &Reply)) -> Duration {
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < period {
        for path in ["/livez", "/readyz", "/metrics"] {
            let asked = std::time::Instant::now();
            let reply = try_request(addr, "GET", path).unwrap_or_else(|e| panic!("{path}: {e}"));
            slowest = slowest.max(asked.elapsed());
            seen(path, &reply);
        }
    }
    slowest
}
