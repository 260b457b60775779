//! Parsers of the text Redis answers with, no I/O: an `INFO` reply ([`Info`]) and the
//! `cluster_state` of `CLUSTER INFO` ([`cluster_state_problem`]). Both take any text and never
//! panic (property-tested): a field that is missing or unreadable is `None`, not an error.

/// The fields of `INFO server replication persistence memory keyspace` the state checks read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Changes when Redis restarts.
    pub run_id: Option<String>,
    pub uptime_in_seconds: Option<u64>,
    /// `redis_mode` (`server_mode` on Valkey): `standalone`, `cluster` or `sentinel`.
    pub mode: Option<String>,
    /// Which server answered: `valkey 8.1.8` (`server_name` and `valkey_version`; Valkey also
    /// says `redis_version:7.2.4` for compatibility), else `redis 7.0.15`.
    pub server: Option<String>,
    pub role: Option<Role>,
    /// `master_host:master_port` of a replica.
    pub master: Option<String>,
    /// `master_link_status` of a replica (`up` or `down`).
    pub master_link_status: Option<String>,
    pub master_link_down_since_seconds: Option<i64>,
    /// Seconds since the master was last heard from; -1 without a link.
    pub master_last_io_seconds_ago: Option<i64>,
    pub master_sync_in_progress: bool,
    pub used_memory: Option<u64>,
    /// Replication and AOF buffers: Redis leaves them out when it compares with `maxmemory`.
    pub mem_not_counted_for_evict: Option<u64>,
    /// 0 means no limit.
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    /// Keys with an expiry, summed over the databases of `# Keyspace` (`None` when the reply
    /// has no such section): a `volatile-*` policy can evict only those.
    pub expires: Option<u64>,
    /// While Redis loads its dataset (`loading:1`): how far (`loading_loaded_perc`) and the
    /// time it expects to take yet (`loading_eta_seconds`).
    pub loading: Option<Loading>,
    /// `(field, value)` of the persistence status fields, in the order Redis lists them.
    pub persistence: Vec<(&'static str, String)>,
}

/// How far a load is, from INFO persistence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loading {
    pub loaded_percent: Option<f64>,
    pub eta_seconds: Option<u64>,
}

impl Eq for Loading {}

impl Loading {
    /// `47.3% loaded, about 12 s left`, or as much of it as Redis said.
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.loaded_percent.map(|p| format!("{p:.1}% loaded")),
            self.eta_seconds
                .map(|s| format!("about {s} s left by its estimate")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// The `role` field: Redis says `slave`, the document says `replica`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// The persistence fields whose `err` means a save or an append-only write failed.
pub const PERSISTENCE_FIELDS: [&str; 3] = [
    "rdb_last_bgsave_status",
    "aof_last_write_status",
    "aof_last_bgrewrite_status",
];

/// Longest field value kept (a value is quoted in outputs; Redis's are short).
const MAX_VALUE: usize = 64;

impl Info {
    /// Reads an `INFO` reply: `field:value` lines, `# Section` headers and blank lines
    /// (CRLF or LF); anything else is skipped.
    pub fn parse(text: &str) -> Self {
        let mut info = Info::default();
        let mut master_host = None;
        let mut master_port = None;
        let (mut server_name, mut redis_version, mut valkey_version) = (None, None, None);
        for line in text.lines() {
            if line.trim() == "# Keyspace" {
                info.expires.get_or_insert(0);
            }
            let Some((field, value)) = line.trim().split_once(':') else {
                continue;
            };
            if field.starts_with("db") && field[2..].bytes().all(|b| b.is_ascii_digit()) {
                // db0:keys=3,expires=1,avg_ttl=0
                let expires = value
                    .split(',')
                    .find_map(|pair| pair.strip_prefix("expires="))
                    .and_then(|n| n.parse::<u64>().ok());
                *info.expires.get_or_insert(0) += expires.unwrap_or(0);
                continue;
            }
            // The first MAX_VALUE characters; copied only for the fields kept.
            let value = value
                .char_indices()
                .nth(MAX_VALUE)
                .map_or(value, |(end, _)| &value[..end]);
            match field {
                "run_id" => info.run_id = Some(value.to_owned()),
                "uptime_in_seconds" => info.uptime_in_seconds = value.parse().ok(),
                "redis_mode" | "server_mode" => info.mode = Some(value.to_owned()),
                "server_name" => server_name = Some(value.to_owned()),
                "redis_version" => redis_version = Some(value.to_owned()),
                "valkey_version" => valkey_version = Some(value.to_owned()),
                "role" => {
                    info.role = match value {
                        "master" => Some(Role::Master),
                        "slave" | "replica" => Some(Role::Replica),
                        _ => None,
                    }
                }
                "master_host" => master_host = Some(value.to_owned()),
                "master_port" => master_port = Some(value.to_owned()),
                "master_link_status" => info.master_link_status = Some(value.to_owned()),
                "master_link_down_since_seconds" => info.master_link_down_since_seconds = value.parse().ok(),
                "master_last_io_seconds_ago" => info.master_last_io_seconds_ago = value.parse().ok(),
                "master_sync_in_progress" => info.master_sync_in_progress = value == "1",
                "used_memory" => info.used_memory = value.parse().ok(),
                "mem_not_counted_for_evict" => info.mem_not_counted_for_evict = value.parse().ok(),
                "maxmemory" => info.maxmemory = value.parse().ok(),
                "maxmemory_policy" => info.maxmemory_policy = Some(value.to_owned()),
                "loading" => {
                    if value == "1" {
                        info.loading.get_or_insert_with(Loading::default);
                    }
                }
                "loading_loaded_perc" => {
                    info.loading.get_or_insert_with(Loading::default).loaded_percent =
                        value.parse().ok().filter(|p: &f64| p.is_finite())
                }
                "loading_eta_seconds" => {
                    info.loading.get_or_insert_with(Loading::default).eta_seconds = value.parse().ok()
                }
                _ => {
                    if let Some(name) = PERSISTENCE_FIELDS.iter().find(|name| **name == field) {
                        info.persistence.push((name, value.to_owned()));
                    }
                }
            }
        }
        info.server = match (server_name.as_deref(), valkey_version, redis_version) {
            (Some("valkey"), Some(version), _) => Some(format!("valkey {version}")),
            (_, _, Some(version)) => Some(format!("redis {version}")),
            _ => None,
        };
        info.master = match (master_host, master_port) {
            (Some(host), Some(port)) if host.contains(':') => Some(format!("[{host}]:{port}")),
            (Some(host), Some(port)) => Some(format!("{host}:{port}")),
            (Some(host), None) => Some(host),
            _ => None,
        };
        info
    }
}

/// What is wrong with the cluster according to a node's `CLUSTER INFO`, if anything:
/// `cluster_state` other than `ok`, with the slot counts that explain it.
pub fn cluster_state_problem(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
    };
    match field("cluster_state") {
        Some("ok") => None,
        Some(state) => {
            let details: Vec<String> = ["cluster_slots_ok", "cluster_slots_pfail", "cluster_slots_fail"]
                .iter()
                .filter_map(|name| Some(format!("{name}:{}", field(name)?)))
                .collect();
            Some(format!(
                "cluster_state:{} ({})",
                state.chars().take(32).collect::<String>(),
                details.join(", ")
            ))
        }
        None => Some("CLUSTER INFO has no cluster_state".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `INFO server replication persistence memory keyspace` reply of a replica (Redis
    /// 7.0.15), trimmed.
    const REPLICA: &str =
        "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nrun_id:d0c50833e71e4b3fb20cb886fea3f032af7c365b\r\n\
        uptime_in_seconds:12\r\n\r\n# Memory\r\nused_memory:916616\r\nused_memory_human:895.13K\r\n\
        mem_not_counted_for_evict:1024\r\nmaxmemory:1048576\r\nmaxmemory_human:1.00M\r\nmaxmemory_policy:noeviction\r\n\r\n\
        # Persistence\r\nloading:0\r\nrdb_last_bgsave_status:err\r\naof_last_bgrewrite_status:ok\r\n\
        aof_last_write_status:ok\r\n\r\n# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\n\
        master_port:6379\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\nmaster_link_down_since_seconds:12\r\n\r\n# Keyspace\r\n\
        db0:keys=3,expires=1,avg_ttl=2000\r\ndb2:keys=5,expires=2,avg_ttl=9\r\n";

    #[test]
    fn a_replica_reply_is_read_field_by_field() {
        let info = Info::parse(REPLICA);
        assert_eq!(
            info,
            Info {
                run_id: Some("d0c50833e71e4b3fb20cb886fea3f032af7c365b".into()),
                uptime_in_seconds: Some(12),
                mode: Some("standalone".into()),
                server: Some("redis 7.0.15".into()),
                role: Some(Role::Replica),
                master: Some("10.0.0.7:6379".into()),
                master_link_status: Some("down".into()),
                master_link_down_since_seconds: Some(12),
                master_last_io_seconds_ago: Some(-1),
                master_sync_in_progress: false,
                used_memory: Some(916_616),
                mem_not_counted_for_evict: Some(1024),
                maxmemory: Some(1_048_576),
                maxmemory_policy: Some("noeviction".into()),
                expires: Some(3),
                loading: None,
                persistence: vec![
                    ("rdb_last_bgsave_status", "err".into()),
                    ("aof_last_bgrewrite_status", "ok".into()),
                    ("aof_last_write_status", "ok".into()),
                ],
            }
        );
        let master = Info::parse("role:master\nmaster_host:::1\n");
        assert_eq!(master.role, Some(Role::Master));
        assert_eq!(
            Info::parse("master_host:::1\r\nmaster_port:7000")
                .master
                .as_deref(),
            Some("[::1]:7000")
        );
        assert_eq!(Info::parse("ERR unknown command"), Info::default());
        // An empty keyspace section: no key has an expiry. No section: unknown.
        assert_eq!(Info::parse("# Keyspace\r\n").expires, Some(0));
        assert_eq!(Info::parse("role:master\r\n").expires, None);
        let valkey =
            Info::parse("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n");
        assert_eq!(valkey.server.as_deref(), Some("valkey 8.1.8"));
    }

    #[test]
    fn cluster_state_other_than_ok_is_a_problem_with_its_slot_counts() {
        let ok = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(cluster_state_problem(ok), None);
        let failing = "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10922\r\n\
                       cluster_slots_pfail:0\r\ncluster_slots_fail:5462\r\ncluster_known_nodes:3\r\n";
        assert_eq!(
            cluster_state_problem(failing).as_deref(),
            Some(
                "cluster_state:fail (cluster_slots_ok:10922, cluster_slots_pfail:0, cluster_slots_fail:5462)"
            )
        );
        assert_eq!(
            cluster_state_problem("ERR unexpected").as_deref(),
            Some("CLUSTER INFO has no cluster_state")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_info_text_is_read_without_panicking(text in "\\PC{0,400}|([a-z_]{1,30}:[ -~]{0,40}\r?\n){0,20}") {
            let info = Info::parse(&text);
            for value in [&info.run_id, &info.master_link_status, &info.maxmemory_policy].into_iter().flatten() {
                proptest::prop_assert!(value.chars().count() <= MAX_VALUE);
            }
            proptest::prop_assert!(info.persistence.len() <= text.lines().count());
        }

        #[test]
        fn any_cluster_info_text_is_read_without_panicking(info in "\\PC{0,200}") {
            if let Some(problem) = cluster_state_problem(&info) {
                proptest::prop_assert!(problem.len() < 400);
            }
        }
    }
}
