//! `--check-config`: the configuration as the daemon would run it, validated by the same code
//! and printed, without connecting to Redis or binding a port (like `nginx -t`, `haproxy -c`,
//! `promtool check config`). An invalid one never gets here: it exits 2 with the daemon's own
//! message.

use std::fmt::Write;
use std::net::SocketAddr;

use crate::address::Topology;
use crate::checks::{ClusterReady, ExpectRole};
use crate::config::{Config, LogFormat, Target};

/// What the daemon would run: one line for the daemon, one per target. No secret: URLs are
/// redacted and a password file is named, never read out.
pub fn summary(config: &Config) -> String {
    let mut out = String::from("configuration ok (nothing connected to, no port bound)\n");
    let agent = config.agent_listen.map_or_else(|| "off".to_owned(), listen);
    let _ = writeln!(
        out,
        "daemon: listen {}, agent-check {agent}, interval {}, timeout {}, max age {}, {} logs",
        listen(config.listen),
        humantime::format_duration(config.interval),
        humantime::format_duration(config.timeout),
        humantime::format_duration(config.max_age),
        match config.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "JSON",
        },
    );
    if let Some(web) = &config.web {
        let _ = writeln!(out, "web: {} ({})", web.settings.summary(), web.path.display());
    }
    for target in &config.targets {
        let _ = writeln!(out, "{}", target_line(target));
    }
    for notice in &config.notices {
        let _ = writeln!(out, "notice: {notice}");
    }
    out
}

/// `[::]:8558` says where it listens in words too.
fn listen(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() && addr.is_ipv6() {
        format!("{addr} (every address, IPv4 and IPv6)")
    } else {
        addr.to_string()
    }
}

fn target_line(target: &Target) -> String {
    let plan = &target.checks;
    let names = &plan.names;
    let mut checks = vec![names.response_time];
    if plan.state {
        checks.extend([names.role, names.replication, names.memory, names.persistence]);
    }
    if plan.write_key.is_some() {
        checks.push(names.writable);
    }
    if plan.drain_key.is_some() {
        checks.push(names.drain);
    }
    let topology = match target.redis.topology() {
        Topology::Standalone => "one server",
        Topology::Sentinel => "the master Sentinel names",
        Topology::Cluster if plan.cluster_ready == ClusterReady::Majority => {
            "every cluster primary, ready while more than half pass"
        }
        Topology::Cluster => "every cluster primary",
    };
    let role = match plan.expect_role {
        ExpectRole::Any => String::new(),
        ExpectRole::Master => ", must be a master".to_owned(),
        ExpectRole::Replica => ", must be a replica".to_owned(),
    };
    let password = if target.redis.has_password_file() {
        ", password from a file"
    } else {
        ""
    };
    format!(
        "target {}: {} ({topology}{role}{password}); checks {}; thresholds: fails after {}, \
         passes after {}; {}",
        target.name,
        target.redis.redacted(),
        checks.join(", "),
        target.thresholds.failure,
        target.thresholds.success,
        if target.readiness {
            "gates readiness"
        } else {
            "informational (never fails /readyz)"
        },
    )
}
