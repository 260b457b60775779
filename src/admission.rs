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

use tokio::sync::oneshot;

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
    /// Closes the connection when sent (or dropped).
    close: oneshot::Sender<()>,
}

/// What an admitted connection keeps: its id (to leave with), the clock its requests stamp,
/// and the signal that it must close.
#[derive(Debug)]
pub struct Ticket {
    pub id: u64,
    /// The admission clock when the connection last finished a request head (or was admitted).
    pub idle_since: Arc<AtomicU64>,
    pub closed: oneshot::Receiver<()>,
}

/// Who had to make room for an admitted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evicted {
    Nobody,
    /// The same peer's connection idle longest: the peer holds its share.
    SamePeer,
    /// The connection idle longest of all: the server is full.
    Oldest,
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
            self.evict(|open| open.peer == peer);
            Evicted::SamePeer
        } else if self.open.len() >= self.max {
            self.evict(|_| true);
            Evicted::Oldest
        } else {
            Evicted::Nobody
        };
        let id = self.next_id;
        self.next_id += 1;
        let idle_since = Arc::new(AtomicU64::new(now));
        let (close, closed) = oneshot::channel();
        self.open.insert(
            id,
            Open {
                peer,
                idle_since: idle_since.clone(),
                close,
            },
        );
        *self.by_peer.entry(peer).or_default() += 1;
        (
            Ticket {
                id,
                idle_since,
                closed,
            },
            evicted,
        )
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

    /// Closes the matching connection idle longest.
    fn evict(&mut self, matching: impl Fn(&Open) -> bool) {
        let oldest = self
            .open
            .iter()
            .filter(|(_, open)| matching(open))
            .min_by_key(|(id, open)| (open.idle_since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id);
        if let Some(open) = oldest.and_then(|id| self.open.remove(&id)) {
            // The connection may have ended at the same moment: nothing to close then.
            let _ = open.close.send(());
            self.forget_peer(open.peer);
        }
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
        let (mut probe, _) = admission.admit(ip(1));
        let mut flood = Vec::new();
        for now in 1..=100 {
            let (ticket, evicted) = admission.admit(ip(2));
            assert_eq!(
                evicted,
                if now <= 2 {
                    Evicted::Nobody
                } else {
                    Evicted::SamePeer
                },
                "{now}"
            );
            flood.push(ticket);
        }
        assert_eq!(admission.len(), 3, "the probe and the flood's share of 2");
        assert!(
            probe.closed.try_recv().is_err(),
            "the probe's connection was never closed"
        );
        let closed = flood
            .iter_mut()
            .map(|t| t.closed.try_recv())
            .filter(Result::is_ok)
            .count();
        assert_eq!(closed, 98, "every flood connection but the newest two was closed");
    }

    #[test]
    fn when_full_the_connection_idle_longest_makes_room() {
        let mut admission = Admission::new(4);
        let mut tickets: Vec<Ticket> = (1..=4).map(|n| admission.admit(ip(n)).0).collect();
        // The first one served a request just now: the second has sat idle longest.
        tickets[0]
            .idle_since
            .store(admission.clock().load(Ordering::Relaxed), Ordering::Relaxed);
        let (_, evicted) = admission.admit(ip(9));
        assert_eq!(evicted, Evicted::Oldest);
        assert!(tickets[1].closed.try_recv().is_ok());
        assert!(tickets[0].closed.try_recv().is_err());
        assert_eq!(admission.len(), 4);
        admission.leave(tickets[2].id);
        admission.leave(tickets[1].id);
        assert_eq!(admission.len(), 3);
        let (_, evicted) = admission.admit(ip(10));
        assert_eq!(evicted, Evicted::Nobody);
        // A quarter of 4 is one per peer: the same peer again replaces its own.
        let (_, evicted) = admission.admit(ip(10));
        assert_eq!(evicted, Evicted::SamePeer);
    }
}
