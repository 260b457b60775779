//! A real Prometheus server on a free loopback port, and its query API.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::wait_until;

pub fn require(tool: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: install Debian's `prometheus` package (scripts/test does)"
    );
}

/// A real Prometheus server on a free loopback port, killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(scrape_configs: &str) -> Self {
        require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = crate::support::write_file(
            dir.path(),
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::support::free_port())
            .parse()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            addr,
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "prometheus ready", || {
            TcpStream::connect(addr).is_ok() && crate::support::get(addr, "/-/ready").status == 200
        });
        prometheus
    }

    /// How many series an instant query returns; panics if Prometheus rejects the query.
    pub fn series(&self, query: &str) -> usize {
        let doc = crate::support::get(self.addr, &format!("/api/v1/query?query={}", encode(query))).json();
        assert_eq!(doc["status"], "success", "{query}: {doc}");
        doc["data"]["result"].as_array().map_or(0, Vec::len)
    }

    /// The value of an instant query that returns one series, if it does.
    pub fn value(&self, query: &str) -> Option<f64> {
        let reply = crate::support::get(self.addr, &format!("/api/v1/query?query={}", encode(query)));
        let doc = reply.json();
        let result = doc["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
