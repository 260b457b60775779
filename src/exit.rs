//! Every exit code the binary can end with, in one place. `main` alone turns one into the
//! process's exit status.

/// How the daemon and the `check` subcommand end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The daemon stopped cleanly; `check`: the daemon answered 2xx.
    Success,
    /// The daemon could not start or failed; `check`: no 2xx answer.
    Failure,
    /// Bad flags, environment or config file.
    Usage,
}

/// How the `probe` subcommand ends, as `pg_isready` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeExit {
    /// The verdict is pass or warn.
    Usable,
    /// Redis answered, but is not usable (an error reply, a failed state check).
    NotUsable,
    /// No answer to PING: refused, unreachable, timed out, TLS refused.
    NoAnswer,
    /// No attempt was made: bad arguments.
    NoAttempt,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(match exit {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
        })
    }
}

impl From<ProbeExit> for std::process::ExitCode {
    fn from(exit: ProbeExit) -> Self {
        Self::from(match exit {
            ProbeExit::Usable => 0,
            ProbeExit::NotUsable => 1,
            ProbeExit::NoAnswer => 2,
            ProbeExit::NoAttempt => 3,
        })
    }
}
