//! The daemon's signals: SIGTERM and SIGINT drain and stop it, SIGHUP makes every target
//! reconnect with the files read again. They are held (blocked) from the first line of `main`
//! until their handlers are installed, so a signal that arrives during start-up is acted on
//! as soon as the daemon runs, never by the default action that would kill it.

use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;

/// SIGTERM, SIGINT and SIGHUP, blocked for this thread (and the threads it starts) until
/// [`Held::release`].
pub struct Held(libc::sigset_t);

/// Blocks SIGTERM, SIGINT and SIGHUP: they stay pending, not acted on, until released.
pub fn hold() -> Held {
    // SAFETY: sigset_t is plain data; the calls only read and write the set we own, and
    // pthread_sigmask changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Held(set)
    }
}

impl Held {
    /// Unblocks the signals: one that arrived meanwhile is delivered now.
    pub fn release(self) {
        // SAFETY: as in `hold`, on the set it built.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.0, std::ptr::null_mut());
        }
    }
}

/// The installed handlers (they need a running tokio runtime).
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from now on the signals are the daemon's.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Forwards every SIGHUP to `reconnect`; returns the future that completes on SIGTERM or
    /// SIGINT.
    pub fn split(self, reconnect: Arc<Notify>) -> impl std::future::Future<Output = ()> {
        let Self {
            mut terminate,
            mut interrupt,
            mut hangup,
        } = self;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                reconnect.notify_one();
            }
        });
        async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    }
}
