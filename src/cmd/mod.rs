//! The subcommands: [`check`] asks a running daemon (Docker's `HEALTHCHECK`), [`probe`] asks
//! Redis itself once with the daemon's checks (like `pg_isready`).

pub mod check;
pub mod probe;
