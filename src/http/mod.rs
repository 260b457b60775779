//! The HTTP side: [`serve`] runs the accept loop (admission, header-read timeout, bounded
//! graceful drain); [`route`] answers every request from the latest snapshot's ready bytes,
//! without touching Redis or awaiting anything. [`State`] is what both share.

pub mod access;
mod route;
mod serve;

pub use access::Access;
pub use route::{prefers_html, route};
pub use serve::{bind, serve};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::{FixedBodies, Snapshot};
use crate::view::View;

/// What the handlers read: the latest snapshot, the fixed bodies and the metrics.
pub struct State {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fixed: FixedBodies,
    max_age: Duration,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
    /// Who may see what (`--web.config.file`).
    pub access: Access,
}

impl State {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fixed: FixedBodies,
        max_age: Duration,
        metrics: Arc<Metrics>,
        access: Access,
    ) -> Self {
        Self {
            snapshots,
            fixed,
            max_age,
            draining: AtomicBool::new(false),
            metrics,
            access,
        }
    }

    /// The latest snapshot as of now, for one request.
    pub(crate) fn view<R>(&self, answer: impl FnOnce(&View<'_>) -> R) -> R {
        let snapshot = self.snapshots.borrow().clone();
        let draining = self.draining.load(Ordering::Relaxed);
        answer(&View::new(
            &snapshot,
            &self.fixed,
            Instant::now(),
            self.max_age,
            draining,
        ))
    }

    /// From now on readiness answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
