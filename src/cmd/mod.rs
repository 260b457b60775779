//! The subcommands: [`check`] asks a running daemon (Docker's `HEALTHCHECK`), [`probe`] asks
//! Redis itself once with the daemon's checks (like `pg_isready`); and the daemon's
//! `--check-config`, which validates and prints the configuration ([`check_config`]).

pub mod check;
pub mod check_config;
pub mod probe;
