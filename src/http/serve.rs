//! The accept loop: HTTP/1 only, a header-read timeout (slowloris), [`Admission`] deciding
//! which connections stay when full, and a bounded graceful drain at shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::Either as Answer;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::either::Either;
use tracing::{debug, info, warn};

use super::access::Seen;
use super::route::{decorate, route, scrapes_stale_process};
use super::State;
use crate::admission::{Admission, Evicted, Ticket};

/// A client that has not sent its whole header by then is cut (slowloris); this also closes
/// idle keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections get this long to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a failed accept (EMFILE and the like), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a scrape waits for the `process_*` figures to be read again (a read of
/// `/proc/self` takes well under a millisecond); past it, the reading before is served.
const PROCESS_READ_BUDGET: Duration = Duration::from_millis(100);
/// Repeated warnings (accept errors, shed connections) are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Request head buffer: probes and scrapes send a few hundred bytes; hyper's floor is 8 KiB.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// Pending connections the kernel holds for the accept loop (capped by `net.core.somaxconn`).
/// std's `TcpListener::bind` asks for 128: a flood that fills that while the loop is busy
/// makes the kernel drop a probe's SYN, and the probe's retry comes a whole second later.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listener, with the address in the error. `[::]` is one dual-stack socket
/// (IPv4 clients arrive as `::ffff:a.b.c.d`), whatever `net.ipv6.bindv6only` says; on a host
/// without IPv6 it falls back to `0.0.0.0`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let bound = if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        listen(addr, true).or_else(|e| {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            info!(reason = %e, "no IPv6 socket on this host: listening on {v4} only");
            listen(v4, false)
        })
    } else {
        listen(addr, false)
    };
    let listener = bound.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(TcpListener::from_std(listener)?)
}

/// A non-blocking listening socket with [`LISTEN_BACKLOG`]; `dual_stack` makes an IPv6
/// wildcard socket take IPv4 connections too.
fn listen(addr: SocketAddr, dual_stack: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves until `stop` turns true, then stops accepting and drains open connections (bounded).
///
/// At most `max_connections` are open at once, a quarter of them per peer address. A new
/// connection is always taken: to make room, the one that has sat longest without a request
/// in progress is closed, the same peer's first ([`Admission`]). A flood from one address
/// then only cuts its own connections, and a probe from anywhere else is served at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    // header_read_timeout needs a timer: without one hyper panics on the first connection.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        // Copy each body into the head's buffer and send one write: measured with 50 targets
        // (a 1.6 KiB /readyz body), vectored writes cost 4.60 µs of CPU per request against
        // 4.43 µs flattened (the baseline: 4.30 µs).
        .writev(false);
    let graceful = GracefulShutdown::new();
    let admission = Admission::new(max_connections);
    let clock = admission.clock();
    let admission = Arc::new(Mutex::new(admission));
    let mut accept_errors = Throttled::default();
    let mut shed = Throttled::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if let Some(suppressed) = accept_errors.hit() {
                        warn!(error = %e, suppressed, "accept failed; retrying shortly");
                    }
                    // EMFILE and the like: pause, or the loop spins on the same error.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // An IPv4 client of the dual-stack socket is the same peer as over an IPv4 socket.
        let peer_ip = peer.ip().to_canonical();
        let (ticket, evicted) = lock(&admission).admit(peer_ip);
        if evicted != Evicted::Nobody {
            if let Some(suppressed) = shed.hit() {
                warn!(
                    max_connections,
                    peer = %peer_ip,
                    suppressed,
                    "connection limit reached; closing the connections idle longest"
                );
            }
        }
        let _ = stream.set_nodelay(true);
        let tls = state.access.settings().tls.clone();
        let state = state.clone();
        let Ticket { id, idle_since } = ticket;
        let clock = clock.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            crate::process::note_request();
            let settings = state.access.settings();
            // Nothing to check (no users, no rate limit): answered at once, as without a web
            // configuration; otherwise a bcrypt check may have to be awaited.
            // A scrape whose process figures are old first has them read again.
            let reads_process = scrapes_stale_process(&request, &state);
            if !settings.checks_requests() && !reads_process {
                let response = decorate(route(&request, &state, Seen::Everything), &settings);
                idle_since.store(clock.load(Ordering::Relaxed), Ordering::Relaxed);
                return Answer::Left(std::future::ready(Ok::<_, Infallible>(response)));
            }
            let (state, idle_since, clock) = (state.clone(), idle_since.clone(), clock.clone());
            Answer::Right(async move {
                let seen = state.access.admit(&settings, request.headers()).await;
                if reads_process && seen == Seen::Everything {
                    state.metrics.refresh_process(PROCESS_READ_BUDGET).await;
                }
                let response = decorate(route(&request, &state, seen), &settings);
                idle_since.store(clock.load(Ordering::Relaxed), Ordering::Relaxed);
                Ok::<_, Infallible>(response)
            })
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let served = admission.clone();
        // An evicted connection's task is aborted, which drops (closes) the connection.
        let task = tokio::spawn(async move {
            // One stream type for both, so that hyper's connection code is built once.
            let stream = match tls {
                None => Some(Either::Left(stream)),
                Some(config) => {
                    // The handshake is bounded like a request head: a client that stalls in
                    // it is cut as a slow one is.
                    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, accept).await {
                        Ok(Ok(stream)) => Some(Either::Right(stream)),
                        Ok(Err(e)) => {
                            debug!(error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            debug!("TLS handshake timed out");
                            None
                        }
                    }
                }
            };
            let served_ok = match stream {
                Some(stream) => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                None => Ok(()),
            };
            if let Err(e) = served_ok {
                // Timeouts of idle keep-alive connections land here: not worth a warning.
                debug!(error = %e, "connection closed with an error");
            }
            lock(&served).leave(id);
        });
        lock(&admission).attach(id, task.abort_handle());
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("drain timed out; closing the remaining connections");
    }
}

/// The admission lock; never held across an await, so a poisoned one is still consistent.
fn lock(admission: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    admission.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A warning that repeats (a flood, an fd shortage) is logged at most once per
/// [`LOG_EVERY`], with how many were left out.
#[derive(Default)]
struct Throttled {
    next: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(suppressed since the last log)` when this occurrence should be logged.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.next {
            Some(next) if now < next => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next = Some(now + LOG_EVERY);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_warnings_are_throttled() {
        let mut throttled = Throttled::default();
        assert_eq!(throttled.hit(), Some(0));
        assert_eq!(throttled.hit(), None);
        assert_eq!(throttled.hit(), None);
        throttled.next = Some(Instant::now());
        assert_eq!(
            throttled.hit(),
            Some(2),
            "the next log says how many were left out"
        );
    }
}
