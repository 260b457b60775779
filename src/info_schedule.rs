//! Which `INFO` sections one connection's check asks, no I/O. Every section each round costs
//! Redis more than the PING it rides with, so a round asks `INFO replication` (role, link,
//! lag: seen within one interval) where it can change a verdict, and every
//! [`EVERY_SECTION_ROUNDS`]th round all the sections the state checks read (memory,
//! persistence, the keyspace's expiries, the server's mode and version: seen within that
//! many). The replication section can change a verdict where a role is required
//! (`--expect-role`, Sentinel, a cluster) and on a replica (its link and lag judge
//! `redis:replication`); a master that may have any role is PINGed alone between its full
//! rounds, and its role is read within that many intervals (a change there alters no verdict).
//! The first round on a connection asks every section, and so does every round while a state
//! check is not passing (its recovery shows at the next round) and a round whose replication
//! changed (a failover changes more than the role). A round that asked replication alone, or
//! nothing, is read with the other sections of the latest full reply.

use crate::info::{Info, Role};

/// Every section the state checks read.
pub const EVERY_SECTION: [&str; 5] = ["server", "replication", "persistence", "memory", "keyspace"];

/// The section asked every round where it can change a verdict.
pub const EACH_ROUND: [&str; 1] = ["replication"];

/// A full reply at least once in this many rounds: memory and persistence problems (and the
/// role of a master that may have any) are seen within this many intervals.
pub const EVERY_SECTION_ROUNDS: u32 = 5;

/// What one connection has asked since it was made.
#[derive(Debug, Default)]
pub struct InfoSchedule {
    /// The latest reply with every section, and what followed it.
    full: Option<Full>,
    /// A state check did not pass at the latest round: ask every section until it does.
    closely: bool,
}

/// The latest reply with every section.
#[derive(Debug)]
struct Full {
    text: String,
    /// Rounds since it was asked.
    rounds: u32,
    /// It says the server is a master: with no role required, nothing else is asked until
    /// the next full round.
    master: bool,
}

/// What to do with a reply that holds the replication section alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// The reply to read: the latest full one with this replication section.
    Text(String),
    /// The replication changed since the latest full reply (or there is none): ask every
    /// section now.
    AskAll,
}

impl InfoSchedule {
    /// Forgets the replies of the previous connection (a new connection may be a new server).
    pub fn reset(&mut self) {
        self.full = None;
    }

    /// Asks every section while `on` (a state check of the latest round did not pass).
    pub fn watch_closely(&mut self, on: bool) {
        self.closely = on;
    }

    /// The sections to ask this round (none: PING alone). `role_required`: a role other than
    /// the required one fails `redis:role`, so the role is asked every round.
    pub fn sections(&self, role_required: bool) -> &'static [&'static str] {
        match &self.full {
            Some(full) if !self.closely && full.rounds + 1 < EVERY_SECTION_ROUNDS => {
                if full.master && !role_required {
                    &[]
                } else {
                    &EACH_ROUND
                }
            }
            _ => &EVERY_SECTION,
        }
    }

    /// Records a reply with every section.
    pub fn record_full(&mut self, text: &str) {
        let role = Info::parse(section(text, "Replication")).role;
        self.full = Some(Full {
            text: text.to_owned(),
            rounds: 0,
            master: role == Some(Role::Master),
        });
    }

    /// The reply to read for a round that asked no section: the latest full one, if any.
    pub fn unasked(&mut self) -> Option<String> {
        let full = self.full.as_mut()?;
        full.rounds += 1;
        Some(full.text.clone())
    }

    /// Reads a reply with the replication section alone against the latest full reply.
    pub fn merge(&mut self, replication: &str) -> Merged {
        let Some(full) = &mut self.full else {
            return Merged::AskAll;
        };
        let (before, after) = (
            Info::parse(section(&full.text, "Replication")),
            Info::parse(replication),
        );
        let same = before.role == after.role
            && before.master == after.master
            && before.master_link_status == after.master_link_status
            && before.master_sync_in_progress == after.master_sync_in_progress;
        if !same {
            return Merged::AskAll;
        }
        full.rounds += 1;
        Merged::Text(replace_section(&full.text, "Replication", replication))
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
                assert_eq!(schedule.unasked().as_deref(), Some(full));
            } else {
                let replication =
                    section(full, "Replication").replace("connected_slaves:0", "connected_slaves:1");
                let merged = schedule.merge(&replication);
                assert!(matches!(merged, Merged::Text(_)), "{merged:?}");
            }
        }
        asked
    }

    #[test]
    fn a_connection_asks_everything_first_then_replication_where_it_judges_until_the_fifth_round() {
        let replica = replace_section(
            FULL,
            "Replication",
            "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\n",
        );
        let no_role = replace_section(FULL, "Replication", "# Replication\r\n");
        for (full, role_required, expected) in [
            (FULL, true, [5, 1, 1, 1, 1, 5, 1, 1, 1, 1, 5]),
            (FULL, false, [5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 5]),
            (&replica, false, [5, 1, 1, 1, 1, 5, 1, 1, 1, 1, 5]),
            (&replica, true, [5, 1, 1, 1, 1, 5, 1, 1, 1, 1, 5]),
            (&no_role, false, [5, 1, 1, 1, 1, 5, 1, 1, 1, 1, 5]),
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
    fn a_state_not_passing_is_asked_every_round() {
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        schedule.watch_closely(true);
        assert_eq!(schedule.sections(false), EVERY_SECTION);
        assert_eq!(schedule.sections(true), EVERY_SECTION);
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
        fn any_pair_of_replies_merges_without_panicking(full in "\\PC{0,300}", part in "\\PC{0,100}") {
            let mut schedule = InfoSchedule::default();
            schedule.record_full(&full);
            if let Merged::Text(text) = schedule.merge(&part) {
                proptest::prop_assert!(text.len() <= full.len() + part.len() + 8);
            }
        }
    }
}
