//! Packs the release binary's relative relocations (`-z pack-relative-relocs`, DT_RELR): the
//! position-independent binary's 128 KiB `.rela.dyn`, which the dynamic loader reads at every
//! start, becomes 2.7 KiB of it and a 1.5 KiB `.relr.dyn` (123 KiB less binary, under its 4 MiB
//! budget; less RSS: README, Performance).
//!
//! Only where it is safe: a release build for Linux with glibc, built natively on a glibc of
//! 2.36 or later (the first to load DT_RELR; the linker then marks the binary with a
//! `GLIBC_ABI_DT_RELR` version need, so an older glibc refuses it at start instead of running
//! it unrelocated). Elsewhere the binary is linked as before.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let native = var("HOST") == var("TARGET");
    if release && linux_gnu && native && host_glibc().is_some_and(|version| version >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build host's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn host_glibc() -> Option<(u32, u32)> {
    let output = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = minor.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
