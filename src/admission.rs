//! Which HTTP connections the server keeps when it is full, so that a complete request always
//! wins over connections that are not sending one (a slowloris, idle keep-alives).
//!
//! Every open connection is recorded with its peer address and the moment it last finished a
//! request (or was accepted), on a logical clock that ticks once per accepted connection: a
//! request stamps its connection with one atomic load and store, no clock read. A new connection is always admitted; to make room, the server
//! closes the connection that has sat the longest without a request in progress: the same
//! peer's when that peer already holds its share (a quarter of `max`), anyone's when the
//! server holds `max` connections. A client that floods from one address therefore only ever
//! cuts its own connections, and a probe from another address always finds a slot. Memory and
//! descriptors stay bounded by `max`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::AbortHandle;

/// The open connections.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_peer: usize,
    /// Ticks once per admitted connection; requests stamp their connection with it.
    clock: Arc<AtomicU64>,
    next_id: u64,
    open: HashMap<u64, Open>,
    by_peer: HashMap<IpAddr, usize>,
}

/// One open connection.
#[derive(Debug)]
struct Open {
    peer: IpAddr,
    idle_since: Arc<AtomicU64>,
    /// Ends the connection's task, which drops (closes) the connection. Aborting costs the
    /// connection nothing while it lives, where a close signal would be polled at every wake.
    task: Option<AbortHandle>,
}

/// What an admitted connection keeps: its id (to attach its task and to leave with), and the
/// clock its requests stamp.
#[derive(Debug)]
pub struct Ticket {
    pub id: u64,
    /// The admission clock when the connection last finished a request head (or was admitted).
    pub idle_since: Arc<AtomicU64>,
}

/// Who had to make room for an admitted connection, and which connection that was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evicted {
    Nobody,
    /// The same peer's connection idle longest: the peer holds its share.
    SamePeer(u64),
    /// The connection idle longest of all: the server is full.
    Oldest(u64),
}

impl Admission {
    /// At most `max` connections, and a quarter of them (at least one) per peer address: the
    /// kubelet and Prometheus each come from their own address.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            per_peer: (max / 4).max(1),
            clock: Arc::default(),
            next_id: 0,
            open: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }

    /// The clock a connection's requests stamp it with ([`Ticket::idle_since`]).
    pub fn clock(&self) -> Arc<AtomicU64> {
        self.clock.clone()
    }

    /// Admits a connection from `peer`, closing another first if need be.
    pub fn admit(&mut self, peer: IpAddr) -> (Ticket, Evicted) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let evicted = if self.by_peer.get(&peer).copied().unwrap_or(0) >= self.per_peer {
            self.evict(|open| open.peer == peer)
                .map_or(Evicted::Nobody, Evicted::SamePeer)
        } else if self.open.len() >= self.max {
            self.evict(|_| true).map_or(Evicted::Nobody, Evicted::Oldest)
        } else {
            Evicted::Nobody
        };
        let id = self.next_id;
        self.next_id += 1;
        let idle_since = Arc::new(AtomicU64::new(now));
        self.open.insert(
            id,
            Open {
                peer,
                idle_since: idle_since.clone(),
                task: None,
            },
        );
        *self.by_peer.entry(peer).or_default() += 1;
        (Ticket { id, idle_since }, evicted)
    }

    /// Records the task serving connection `id` (gone already if it ended at once).
    pub fn attach(&mut self, id: u64, task: AbortHandle) {
        if let Some(open) = self.open.get_mut(&id) {
            open.task = Some(task);
        }
    }

    /// Forgets a connection that ended by itself (already gone if it was evicted).
    pub fn leave(&mut self, id: u64) {
        if let Some(open) = self.open.remove(&id) {
            self.forget_peer(open.peer);
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Closes the matching connection idle longest; returns its id.
    fn evict(&mut self, matching: impl Fn(&Open) -> bool) -> Option<u64> {
        let oldest = self
            .open
            .iter()
            .filter(|(_, open)| matching(open))
            .min_by_key(|(id, open)| (open.idle_since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)?;
        let open = self.open.remove(&oldest)?;
        if let Some(task) = open.task {
            task.abort();
        }
        self.forget_peer(open.peer);
        Some(oldest)
    }

    fn forget_peer(&mut self, peer: IpAddr) {
        if let Some(count) = self.by_peer.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.by_peer.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_flood_from_one_address_only_ever_cuts_its_own_connections() {
        let mut admission = Admission::new(8);
        let (probe, _) = admission.admit(ip(1));
        let mut flood = Vec::new();
        for n in 1..=100 {
            let (ticket, evicted) = admission.admit(ip(2));
            match evicted {
                Evicted::Nobody => assert!(n <= 2, "{n}"),
                Evicted::SamePeer(id) => assert_eq!(id, flood[n - 3], "the flood's oldest"),
                Evicted::Oldest(_) => panic!("the flood reached past its share"),
            }
            flood.push(ticket.id);
        }
        assert_eq!(admission.len(), 3, "the probe and the flood's share of 2");
        assert!(
            admission.open.contains_key(&probe.id),
            "the probe's connection was never closed"
        );
    }

    #[test]
    fn when_full_the_connection_idle_longest_makes_room() {
        let mut admission = Admission::new(4);
        let tickets: Vec<Ticket> = (1..=4).map(|n| admission.admit(ip(n)).0).collect();
        // The first one served a request just now: the second has sat idle longest.
        tickets[0]
            .idle_since
            .store(admission.clock().load(Ordering::Relaxed), Ordering::Relaxed);
        let (_, evicted) = admission.admit(ip(9));
        assert_eq!(evicted, Evicted::Oldest(tickets[1].id));
        assert_eq!(admission.len(), 4);
        admission.leave(tickets[2].id);
        admission.leave(tickets[1].id);
        assert_eq!(admission.len(), 3);
        let (_, evicted) = admission.admit(ip(10));
        assert_eq!(evicted, Evicted::Nobody);
        // A quarter of 4 is one per peer: the same peer again replaces its own.
        let (_, evicted) = admission.admit(ip(10));
        assert!(matches!(evicted, Evicted::SamePeer(_)));
    }

    #[tokio::test]
    async fn an_evicted_connection_s_task_is_ended() {
        let mut admission = Admission::new(1);
        let (first, _) = admission.admit(ip(1));
        let task = tokio::spawn(std::future::pending::<()>());
        admission.attach(first.id, task.abort_handle());
        admission.admit(ip(2));
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
