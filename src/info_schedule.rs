//! Which `INFO` sections one connection's check asks, no I/O. Every section each round costs
//! Redis more than the PING it rides with, so:
//! - the first round on a connection asks every section the state checks read
//!   ([`EVERY_SECTION`]), and so does a round whose replication changed (a failover changes
//!   more than the role);
//! - every [`CHANGING_ROUNDS`]th round asks the sections that can change while the
//!   connection lasts ([`CHANGING`]: replication, persistence, memory; memory and persistence
//!   are seen within that many intervals), with the keyspace only where its expiries can judge
//!   `redis:memory` (a `volatile-*` policy under a `maxmemory`; a round that first sees one
//!   asks every section at once). The server section (version, mode, `run_id`) is the
//!   process's own, and a new process is a new connection;
//! - a round while a state check is not passing asks what can change, so its recovery shows
//!   at the next round;
//! - between, `INFO replication` (role, link, lag: seen within one interval) where it can
//!   change a verdict: where a role is required (`--expect-role`, Sentinel, a cluster) and on a
//!   replica (its link and lag judge `redis:replication`). A master that may have any role is
//!   PINGed alone, and its role is read within that many intervals (a change there alters no
//!   verdict).
//!
//! A reply with some sections is read with the others of the latest reply that had them.

use crate::info::{Info, Role};

/// Every section the state checks read.
pub const EVERY_SECTION: [&str; 5] = ["server", "replication", "persistence", "memory", "keyspace"];

/// The sections that can change while a connection lasts, keyspace aside.
pub const CHANGING: [&str; 3] = ["replication", "persistence", "memory"];

/// [`CHANGING`] and the keyspace, where its expiries judge `redis:memory`.
const CHANGING_WITH_KEYSPACE: [&str; 4] = ["replication", "persistence", "memory", "keyspace"];

/// The section asked every round where it can change a verdict.
pub const EACH_ROUND: [&str; 1] = ["replication"];

/// What can change is asked at least once in this many rounds: memory and persistence
/// problems (and the role of a master that may have any) are seen within this many intervals.
pub const CHANGING_ROUNDS: u32 = 5;

/// What one connection has asked since it was made.
#[derive(Debug, Default)]
pub struct InfoSchedule {
    /// Every section as last read on this connection, and what followed.
    latest: Option<Latest>,
    /// A state check did not pass at the latest round: ask what can change until it does.
    closely: bool,
}

/// Every section as last read: the reply with all of them, each part since replaced by a
/// later reply that had it.
#[derive(Debug)]
struct Latest {
    text: String,
    /// Rounds since what can change was asked.
    rounds: u32,
    /// It says the server is a master: with no role required, nothing else is asked until
    /// the next round of what can change.
    master: bool,
    /// Its memory section has a `volatile-*` policy under a `maxmemory`: the keys' expiries
    /// judge `redis:memory`, so the keyspace is asked with what can change.
    keyspace_judges: bool,
}

impl Latest {
    /// Reads the two sections the schedule itself needs (the check reads the whole text).
    fn new(text: String) -> Self {
        let role = Info::parse(section(&text, "Replication")).role;
        let memory = Info::parse(section(&text, "Memory"));
        let volatile = memory
            .maxmemory_policy
            .as_deref()
            .is_some_and(|p| p.starts_with("volatile-"));
        Self {
            master: role == Some(Role::Master),
            keyspace_judges: volatile && memory.maxmemory.unwrap_or(0) > 0,
            text,
            rounds: 0,
        }
    }
}

/// What to do with a reply that holds some of the sections.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// The reply to read: the latest one with every section, these sections replaced.
    Text(String),
    /// The replication changed since the latest reply (or there is none), or the keyspace
    /// now judges `redis:memory` and was not asked: ask every section now.
    AskAll,
}

impl InfoSchedule {
    /// Forgets the replies of the previous connection (a new connection may be a new server).
    pub fn reset(&mut self) {
        self.latest = None;
    }

    /// Asks what can change while `on` (a state check of the latest round did not pass).
    pub fn watch_closely(&mut self, on: bool) {
        self.closely = on;
    }

    /// The sections to ask this round (none: PING alone). `role_required`: a role other than
    /// the required one fails `redis:role`, so the role is asked every round.
    pub fn sections(&self, role_required: bool) -> &'static [&'static str] {
        let Some(latest) = &self.latest else {
            return &EVERY_SECTION;
        };
        if self.closely || latest.rounds + 1 >= CHANGING_ROUNDS {
            if latest.keyspace_judges {
                &CHANGING_WITH_KEYSPACE
            } else {
                &CHANGING
            }
        } else if latest.master && !role_required {
            &[]
        } else {
            &EACH_ROUND
        }
    }

    /// Records a reply with every section.
    pub fn record_full(&mut self, text: &str) {
        self.latest = Some(Latest::new(text.to_owned()));
    }

    /// The reply to read for a round that asked no section: the latest one, if any.
    pub fn unasked(&mut self) -> Option<String> {
        let latest = self.latest.as_mut()?;
        latest.rounds += 1;
        Some(latest.text.clone())
    }

    /// Reads a reply with some of the sections against the latest one with every section.
    pub fn merge(&mut self, reply: &str) -> Merged {
        let Some(latest) = &mut self.latest else {
            return Merged::AskAll;
        };
        // The sections a partial round may ask, each found once in the reply (headers match
        // whatever their case).
        let asked: Vec<(&str, &str)> = CHANGING_WITH_KEYSPACE
            .into_iter()
            .filter_map(|name| section_bounds(reply, name).map(|(start, end)| (name, &reply[start..end])))
            .collect();
        let part = |name: &str| {
            asked
                .iter()
                .find(|(asked, _)| *asked == name)
                .map(|(_, part)| *part)
        };
        let (before, after) = (
            Info::parse(section(&latest.text, "Replication")),
            Info::parse(part("replication").unwrap_or_default()),
        );
        let same = before.role == after.role
            && before.master == after.master
            && before.master_link_status == after.master_link_status
            && before.master_sync_in_progress == after.master_sync_in_progress;
        if !same {
            return Merged::AskAll;
        }
        let mut text = latest.text.clone();
        for (name, new) in &asked {
            text = replace_section(&text, name, new);
        }
        if part("memory").is_none() {
            latest.rounds += 1;
            latest.text = text.clone();
            return Merged::Text(text);
        }
        let next = Latest::new(text);
        if next.keyspace_judges && part("keyspace").is_none() {
            return Merged::AskAll;
        }
        let text = next.text.clone();
        *latest = next;
        Merged::Text(text)
    }
}

/// The lines of `# name` up to the next section header (empty when there is none).
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let (start, end) = section_bounds(text, name).unwrap_or((0, 0));
    &text[start..end]
}

/// Where `# name` starts and where the next header starts (or the text ends), as byte offsets.
fn section_bounds(text: &str, name: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let header = line.trim().strip_prefix("# ");
        match (start, header) {
            (None, Some(found)) if found.eq_ignore_ascii_case(name) => start = Some(offset),
            (Some(start), Some(_)) => return Some((start, offset)),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|start| (start, text.len()))
}

/// `text` with its `# name` section replaced by `with` (appended where it has none).
fn replace_section(text: &str, name: &str, with: &str) -> String {
    let with = with.trim_end();
    match section_bounds(text, name) {
        Some((start, end)) => format!("{}{with}\r\n\r\n{}", &text[..start], &text[end..]),
        None => format!("{}\r\n{with}\r\n", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str =
        "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Replication\r\nrole:master\r\n\
        connected_slaves:0\r\n\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n\r\n# Keyspace\r\n\
        db0:keys=3,expires=1,avg_ttl=0\r\n";

    /// The reply of `full`'s server to `sections`, one `INFO` each, its replica count changed
    /// (a field no verdict reads).
    fn reply(full: &str, sections: &[&str]) -> String {
        let parts: Vec<&str> = sections.iter().map(|name| section(full, name)).collect();
        parts
            .join("\r\n")
            .replace("connected_slaves:0", "connected_slaves:1")
    }

    /// The sections asked in `rounds` rounds on one connection to a server whose full reply
    /// is `full`, with or without a required role.
    fn asked(full: &str, role_required: bool, rounds: usize) -> Vec<usize> {
        let mut schedule = InfoSchedule::default();
        let mut asked = Vec::new();
        for _ in 0..rounds {
            let sections = schedule.sections(role_required);
            asked.push(sections.len());
            if sections == EVERY_SECTION {
                schedule.record_full(full);
            } else if sections.is_empty() {
                assert!(schedule.unasked().is_some());
            } else {
                let merged = schedule.merge(&reply(full, sections));
                let Merged::Text(text) = merged else {
                    panic!("nothing changed that matters: {merged:?}");
                };
                assert_eq!(Info::parse(&text), Info::parse(full), "{sections:?}");
            }
        }
        asked
    }

    #[test]
    fn a_connection_asks_everything_first_then_what_can_change_every_fifth_round() {
        let replica = replace_section(
            FULL,
            "Replication",
            "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\n",
        );
        let no_role = replace_section(FULL, "Replication", "# Replication\r\n");
        let volatile = replace_section(
            FULL,
            "Memory",
            "# Memory\r\nused_memory:1000\r\nmaxmemory:4000\r\nmaxmemory_policy:volatile-lru\r\n",
        );
        let volatile_unlimited = volatile.replace("maxmemory:4000", "maxmemory:0");
        for (full, role_required, expected) in [
            (FULL, true, [5, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3]),
            (FULL, false, [5, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3]),
            (&replica, false, [5, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3]),
            (&replica, true, [5, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3]),
            (&no_role, false, [5, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3]),
            // The keys' expiries judge redis:memory only under a volatile-* policy with a limit.
            (&volatile, false, [5, 0, 0, 0, 0, 4, 0, 0, 0, 0, 4]),
            (&volatile_unlimited, false, [5, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3]),
        ] {
            assert_eq!(
                asked(full, role_required, 11),
                expected,
                "{full:?}, role required: {role_required}"
            );
        }
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        schedule.reset();
        assert_eq!(
            schedule.sections(false),
            EVERY_SECTION,
            "a new connection asks everything"
        );
        assert_eq!(schedule.unasked(), None);
    }

    #[test]
    fn a_policy_whose_keyspace_judges_and_was_not_asked_asks_every_section_at_once() {
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        let limited = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Memory\r\n\
                       used_memory:1000\r\nmaxmemory:4000\r\nmaxmemory_policy:volatile-ttl\r\n";
        assert_eq!(schedule.merge(limited), Merged::AskAll);
        let allkeys = limited.replace("volatile-ttl", "allkeys-lru");
        let Merged::Text(text) = schedule.merge(&allkeys) else {
            panic!("allkeys-lru evicts whatever the keyspace");
        };
        let info = Info::parse(&text);
        assert_eq!(
            (info.maxmemory, info.expires, info.run_id.as_deref()),
            (Some(4000), Some(1), Some("abc")),
            "the memory section replaced, the keyspace and the server's kept"
        );
        assert_eq!(
            schedule.sections(false),
            [""; 0],
            "a round of what can change restarts the count"
        );
    }

    #[test]
    fn a_state_not_passing_is_asked_every_round() {
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        schedule.watch_closely(true);
        assert_eq!(schedule.sections(false), CHANGING);
        assert_eq!(schedule.sections(true), CHANGING);
        schedule.watch_closely(false);
        assert_eq!(schedule.sections(true), EACH_ROUND);
        assert_eq!(schedule.sections(false), [""; 0]);
    }

    #[test]
    fn a_replication_reply_is_read_with_the_other_sections_of_the_full_one() {
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        let Merged::Text(text) = schedule.merge("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n")
        else {
            panic!("nothing changed that matters");
        };
        assert!(
            text.contains("connected_slaves:2") && !text.contains("connected_slaves:0"),
            "{text}"
        );
        let info = Info::parse(&text);
        assert_eq!(info.used_memory, Some(1000));
        assert_eq!(info.expires, Some(1), "the keyspace is counted once");
        assert_eq!(info.run_id.as_deref(), Some("abc"));
        assert_eq!(info.role, Some(Role::Master));
    }

    #[test]
    fn a_changed_role_or_link_asks_every_section_at_once() {
        let mut schedule = InfoSchedule::default();
        assert_eq!(
            schedule.merge("role:master\r\n"),
            Merged::AskAll,
            "no full reply yet"
        );
        schedule.record_full(FULL);
        let demoted = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\n\
                       master_link_status:up\r\n";
        assert_eq!(schedule.merge(demoted), Merged::AskAll);
        schedule.record_full(&replace_section(FULL, "Replication", demoted));
        let down = demoted.replace("link_status:up", "link_status:down");
        assert_eq!(schedule.merge(&down), Merged::AskAll);
    }

    #[test]
    fn sections_are_found_by_their_headers() {
        assert_eq!(
            section(FULL, "memory"),
            "# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n\r\n"
        );
        assert_eq!(
            section(FULL, "Keyspace"),
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"
        );
        assert_eq!(section(FULL, "Cluster"), "");
        assert_eq!(
            replace_section(
                "# Server\r\nrun_id:abc\r\n",
                "Replication",
                "# Replication\r\nrole:master"
            ),
            "# Server\r\nrun_id:abc\r\n# Replication\r\nrole:master\r\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_pair_of_replies_merges_without_panicking(
            full in "(# (Server|Replication|Persistence|Memory|Keyspace)\r\n[a-z_:0-9\r\n-]{0,60}){0,6}\\PC{0,60}",
            part in "(# (Replication|Persistence|Memory|Keyspace)\r\n[a-z_:0-9\r\n-]{0,60}){0,4}\\PC{0,30}",
        ) {
            let mut schedule = InfoSchedule::default();
            schedule.record_full(&full);
            if let Merged::Text(text) = schedule.merge(&part) {
                // Each of the four sections a reply may replace adds at most its own text and
                // two line ends.
                proptest::prop_assert!(text.len() <= full.len() + part.len() + 16);
            }
        }
    }
}
