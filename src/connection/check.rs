//! What one check sends on a [`Connection`]: PING with what the plan adds (`INFO`'s sections,
//! `CLUSTER INFO`, `SET`, `EXISTS`), written so that Redis reads the check in one wake-up and
//! answers it in one write; the `INFO` sections the [`InfoSchedule`] picks.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fred::prelude::{ClientLike, ClusterInterface, Error, Value};
use fred::types::{ClusterHash, CustomCommand, InfoKind};
use futures_util::future::join_all;
use tracing::info;

use super::Connection;
use crate::checks::{Commands, InfoReply, Replies};
use crate::health::Failure;
use crate::info_schedule::{Merged, EVERY_SECTION};
use crate::loading;

impl Connection {
    /// PINGs once, with what `commands` adds sent alongside on the same connection, everything
    /// bounded by the check budget.
    ///
    /// fred writes a command without flushing while more are queued behind it, except PING
    /// and custom commands, which it always flushes: so `INFO` (one typed command per section)
    /// and `CLUSTER INFO` are queued first and PING flushes them with itself, one write for
    /// the whole check at the default flags. The opt-in `SET` and `EXISTS` follow.
    ///
    /// While the client knows the connection is down (a connection error since the last
    /// connect), the check fails at once with that error: fred would otherwise queue the PING
    /// until its next reconnect attempt and the crash would show only as a timeout.
    pub async fn check_once(&mut self, commands: &Commands) -> Replies {
        let at = SystemTime::now();
        if let Some(failure) = self.known_failure().await {
            // LOADING says how far the load is where INFO may be asked (boxed: a client's
            // connect and INFO futures would grow every check's future).
            let ask = commands.info && self.info_denied.is_none();
            let config = &self.recipe.client_config;
            let failure = Box::pin(loading::explain(failure, ask, config, self.budget)).await;
            return Replies::failed(at, failure);
        }
        let started = Instant::now();
        let client = self.client.with_options(&self.options);
        let sections = (commands.info && self.info_denied.is_none())
            .then(|| self.info_schedule.sections(commands.role_required));
        // tokio::join! polls its futures in this order the first time, and each fred command is
        // queued at its first poll: the order the commands are written in.
        let info = async {
            let sections = sections?;
            let asked = sections
                .iter()
                .map(|section| Box::pin(client.info::<String>(Some(kind(section)))));
            Some(join_all(asked).await)
        };
        let cluster_info = async {
            if commands.cluster_info {
                Some(Box::pin(client.cluster_info::<String>()).await)
            } else {
                None
            }
        };
        let ping = async {
            let reply = Box::pin(client.ping::<String>(None)).await;
            (reply, started.elapsed())
        };
        let write = async {
            let (key, ttl) = commands.write.as_ref()?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let set = CustomCommand::new_static("SET", ClusterHash::FirstKey, false);
            let args: Vec<Value> = vec![
                key.as_str().into(),
                now.as_millis().to_string().into(),
                "PX".into(),
                ttl.as_millis().to_string().into(),
            ];
            let reply = Box::pin(client.custom::<Value, _>(set, args)).await;
            Some(reply.map(|_| started.elapsed()))
        };
        let drain = async {
            let key = commands.drain.as_ref()?;
            let exists = CustomCommand::new_static("EXISTS", ClusterHash::FirstKey, false);
            let reply = Box::pin(client.custom::<i64, _>(exists, vec![Value::from(key.as_str())])).await;
            Some(reply.map(|n| n > 0))
        };
        // fred's own timeout ends each command; this outer one (twice the budget) is only a
        // backstop, so that no fault inside the client can ever wedge the check loop.
        let replies = tokio::time::timeout(self.budget * 2, async {
            tokio::join!(info, cluster_info, ping, write, drain)
        })
        .await;
        // The reason for a failed PING often arrives as a connection error at the same moment.
        self.drain_events();
        let Ok((info, cluster_info, (ping, elapsed), write, drain)) = replies else {
            return Replies::failed(at, Failure::Timeout(self.budget));
        };
        let ping = match ping {
            Ok(pong) if pong == "PONG" => Ok(elapsed),
            Ok(other) => Err(Failure::Error(format!(
                "unexpected reply to PING: {:?}",
                other.chars().take(64).collect::<String>()
            ))),
            Err(e) => Err(self.failure(&e)),
        };
        let info = match (info, sections) {
            // PING alone this round: the latest reply is still the one to read (the schedule
            // asks nothing only after a reply with every section on this connection).
            (_, Some([])) => match self.info_schedule.unasked() {
                Some(text) => InfoReply::Text(text),
                None => InfoReply::NotAsked,
            },
            (Some(replies), Some(sections)) => {
                let every_section = sections == EVERY_SECTION;
                let text = replies
                    .into_iter()
                    .collect::<Result<Vec<String>, Error>>()
                    .map(|texts| texts.join("\r\n"))
                    .map_err(|e| self.failure(&e).to_string());
                Box::pin(self.info_reply(text, every_section)).await
            }
            _ => match self.info_denied.clone() {
                Some(reason) if commands.info => InfoReply::Denied(reason),
                _ => InfoReply::NotAsked,
            },
        };
        Replies {
            at,
            ping,
            cluster_info: cluster_info.map(|reply| reply.map_err(|e| self.failure(&e).to_string())),
            info,
            write: write.map(|reply| reply.map_err(|e| self.failure(&e))),
            drain: drain.map(|reply| reply.map_err(|e| self.failure(&e))),
        }
    }

    /// Asks the sections that can change every round while `on` (a state check of the latest
    /// round did not pass).
    pub fn watch_closely(&mut self, on: bool) {
        self.info_schedule.watch_closely(on);
    }

    /// Every section the state checks read, asked at once (the replication changed, or the
    /// keyspace now judges `redis:memory`).
    async fn every_section(&self) -> Result<String, String> {
        let client = self.client.with_options(&self.options);
        let asked = EVERY_SECTION
            .iter()
            .map(|section| Box::pin(client.info::<String>(Some(kind(section)))));
        let replies = tokio::time::timeout(self.budget * 2, join_all(asked))
            .await
            .map_err(|_| Failure::Timeout(self.budget).to_string())?;
        replies
            .into_iter()
            .collect::<Result<Vec<String>, Error>>()
            .map(|texts| texts.join("\r\n"))
            .map_err(|e| self.failure(&e).to_string())
    }

    /// Reads an `INFO` reply: a `NOPERM` stops INFO until the next connection; a reply with
    /// some of the sections is read with the others of the latest one, or every section is
    /// asked at once when the replication changed (see [`crate::info_schedule::InfoSchedule::merge`]).
    async fn info_reply(&mut self, reply: Result<String, String>, every_section: bool) -> InfoReply {
        let reply = match reply {
            Ok(text) if !every_section => match self.info_schedule.merge(&text) {
                Merged::Text(merged) => Ok((merged, false)),
                Merged::AskAll => self.every_section().await.map(|text| (text, true)),
            },
            other => other.map(|text| (text, every_section)),
        };
        match reply {
            Ok((text, full)) => {
                if full {
                    self.info_schedule.record_full(&text);
                }
                InfoReply::Text(text)
            }
            Err(reason) if reason.starts_with("NOPERM") => {
                info!(reason = %reason, "INFO is not allowed for this user; state checks are off until the next connection");
                self.info_denied = Some(reason.clone());
                InfoReply::Denied(reason)
            }
            Err(reason) => InfoReply::Failed(reason),
        }
    }
}

/// fred's name for an `INFO` section.
fn kind(section: &str) -> InfoKind {
    match section {
        "server" => InfoKind::Server,
        "persistence" => InfoKind::Persistence,
        "memory" => InfoKind::Memory,
        "keyspace" => InfoKind::Keyspace,
        _ => InfoKind::Replication,
    }
}
