//! Which `INFO` sections one connection's check asks, no I/O. Every section each round costs
//! Redis more than the PING it rides with, so a round asks `INFO replication` (role, link,
//! lag: seen within one interval) and every [`EVERY_SECTION_ROUNDS`]th round all the
//! sections the state checks read (memory, persistence, the keyspace's expiries, the server's
//! mode and version: seen within that many). The first round on a connection asks them all,
//! and so does every round while a state check is not passing (its recovery shows at the
//! next round) and a round whose replication changed (a failover changes more than the role).
//! A round that asked replication alone is read with the other sections of the latest full
//! reply.

use crate::info::Info;

/// Every section the state checks read.
pub const EVERY_SECTION: [&str; 5] = ["server", "replication", "persistence", "memory", "keyspace"];

/// The section asked every round.
pub const EACH_ROUND: [&str; 1] = ["replication"];

/// A full reply at least once in this many rounds: memory and persistence problems are seen
/// within this many intervals.
pub const EVERY_SECTION_ROUNDS: u32 = 5;

/// What one connection has asked since it was made.
#[derive(Debug, Default)]
pub struct InfoSchedule {
    /// The latest reply with every section, and the rounds since.
    full: Option<(String, u32)>,
    /// A state check did not pass at the latest round: ask every section until it does.
    closely: bool,
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

    /// The sections to ask this round.
    pub fn sections(&self) -> &'static [&'static str] {
        match &self.full {
            Some((_, rounds)) if !self.closely && rounds + 1 < EVERY_SECTION_ROUNDS => &EACH_ROUND,
            _ => &EVERY_SECTION,
        }
    }

    /// Records a reply with every section.
    pub fn record_full(&mut self, text: &str) {
        self.full = Some((text.to_owned(), 0));
    }

    /// Reads a reply with the replication section alone against the latest full reply.
    pub fn merge(&mut self, replication: &str) -> Merged {
        let Some((full, rounds)) = &mut self.full else {
            return Merged::AskAll;
        };
        let (before, after) = (
            Info::parse(section(full, "Replication")),
            Info::parse(replication),
        );
        let same = before.role == after.role
            && before.master == after.master
            && before.master_link_status == after.master_link_status
            && before.master_sync_in_progress == after.master_sync_in_progress;
        if !same {
            return Merged::AskAll;
        }
        *rounds += 1;
        Merged::Text(replace_section(full, "Replication", replication))
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
    use crate::info::Role;

    const FULL: &str =
        "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Replication\r\nrole:master\r\n\
        connected_slaves:0\r\n\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n\r\n# Keyspace\r\n\
        db0:keys=3,expires=1,avg_ttl=0\r\n";

    #[test]
    fn a_connection_asks_everything_first_then_replication_until_the_fifth_round() {
        let mut schedule = InfoSchedule::default();
        let mut asked = Vec::new();
        for _ in 0..11 {
            let sections = schedule.sections();
            asked.push(sections.len());
            if sections == EVERY_SECTION {
                schedule.record_full(FULL);
            } else {
                let merged = schedule.merge("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n");
                assert!(matches!(merged, Merged::Text(_)), "{merged:?}");
            }
        }
        assert_eq!(asked, [5, 1, 1, 1, 1, 5, 1, 1, 1, 1, 5]);
        schedule.reset();
        assert_eq!(
            schedule.sections(),
            EVERY_SECTION,
            "a new connection asks everything"
        );
    }

    #[test]
    fn a_state_not_passing_is_asked_every_round() {
        let mut schedule = InfoSchedule::default();
        schedule.record_full(FULL);
        schedule.watch_closely(true);
        assert_eq!(schedule.sections(), EVERY_SECTION);
        schedule.watch_closely(false);
        assert_eq!(schedule.sections(), EACH_ROUND);
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
