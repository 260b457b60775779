//! Check names, `<target>:<measurement>` (`redis:responseTime`, `cache:role`): the names every
//! document entry, kube-style line, per-check path and metric label uses. Depends on nothing.

/// The default target's name: with it, check names are `redis:<measurement>`.
pub const DEFAULT_TARGET: &str = "redis";

/// The PING round trip (and, for a cluster, `cluster_state`).
pub const RESPONSE_TIME: &str = "redis:responseTime";
/// `master` or `replica`, against `--expect-role`.
pub const ROLE: &str = "redis:role";
/// A replica's link to its master.
pub const REPLICATION: &str = "redis:replication";
/// Used memory against `maxmemory`.
pub const MEMORY: &str = "redis:memory";
/// The last RDB save and AOF write.
pub const PERSISTENCE: &str = "redis:persistence";
/// A `SET` of the write key (`--check-writes`).
pub const WRITABLE: &str = "redis:writable";
/// The drain key (`--drain-key`).
pub const DRAIN: &str = "redis:drain";

/// One target's check names, `<target>:<measurement>`, in the order the document and the
/// metrics list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Names {
    pub target: &'static str,
    pub response_time: &'static str,
    pub role: &'static str,
    pub replication: &'static str,
    pub memory: &'static str,
    pub persistence: &'static str,
    pub writable: &'static str,
    pub drain: &'static str,
}

impl Names {
    /// The default target's names (`redis:*`).
    pub const DEFAULT: Self = Self {
        target: DEFAULT_TARGET,
        response_time: RESPONSE_TIME,
        role: ROLE,
        replication: REPLICATION,
        memory: MEMORY,
        persistence: PERSISTENCE,
        writable: WRITABLE,
        drain: DRAIN,
    };

    /// The names for the target called `target`. They live as long as the process (targets
    /// are fixed at start), so they are leaked once: a few bytes per target, and every label,
    /// key and path can go on borrowing `&'static str`.
    pub fn for_target(target: &str) -> Self {
        if target == DEFAULT_TARGET {
            return Self::DEFAULT;
        }
        let name = |check: &str| -> &'static str {
            let measurement = measurement(check);
            Box::leak(format!("{target}:{measurement}").into_boxed_str())
        };
        Self {
            target: Box::leak(target.to_owned().into_boxed_str()),
            response_time: name(RESPONSE_TIME),
            role: name(ROLE),
            replication: name(REPLICATION),
            memory: name(MEMORY),
            persistence: name(PERSISTENCE),
            writable: name(WRITABLE),
            drain: name(DRAIN),
        }
    }

    /// Every name, in the order the document lists them.
    pub fn all(&self) -> [&'static str; 7] {
        [
            self.response_time,
            self.role,
            self.replication,
            self.memory,
            self.persistence,
            self.writable,
            self.drain,
        ]
    }
}

/// What a check name measures: the part after the target (`responseTime` in
/// `cache:responseTime`). Target names have no `:`, so the first one splits.
pub fn measurement(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, m)| m)
}

/// The target a check name belongs to: the part before the first `:` (`cache` in
/// `cache:responseTime`).
pub fn target_of(name: &str) -> &str {
    name.split_once(':').map_or(name, |(t, _)| t)
}

/// Whether `name` can name a target: `[a-z0-9_-]`, 1 to 64 bytes (it goes into check names,
/// label values and URL paths, and has no `:`).
pub fn is_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// [`is_target_name`], with the rule in words when it does not hold.
pub fn check_target_name(name: &str) -> Result<(), String> {
    if is_target_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a target name: use 1 to 64 of a-z, 0-9, _ and -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_its_checks() {
        assert_eq!(Names::for_target(DEFAULT_TARGET), Names::DEFAULT);
        let cache = Names::for_target("cache");
        assert_eq!(cache.target, "cache");
        assert_eq!(cache.all()[0], "cache:responseTime");
        assert_eq!(cache.drain, "cache:drain");
        assert_eq!(target_of(cache.drain), "cache");
        for (default, named) in Names::DEFAULT.all().iter().zip(cache.all()) {
            assert_eq!(measurement(default), measurement(named));
        }
    }

    #[test]
    fn target_names_are_short_lowercase_words() {
        assert!(is_target_name("cache-2_b"));
        for bad in ["", "Cache", "a:b", "a/b", &"x".repeat(65)] {
            assert!(!is_target_name(bad), "{bad:?}");
        }
    }
}
