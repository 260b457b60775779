//! The binary: parse the command line, set up logging, run the daemon or a subcommand
//! (`check`, `probe`), and turn the outcome into an exit code ([`Exit`], [`ProbeExit`]).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::ErrorKind;
use redis_healthd::cli::{Cli, Command};
use redis_healthd::cmd::{check, check_config, probe};
use redis_healthd::config::{Config, LogFormat};
use redis_healthd::exit::{Exit, ProbeExit};
use redis_healthd::http;
use redis_healthd::signals::{self, Signals};
use tokio::sync::Notify;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    // Until the daemon's handlers are installed, SIGTERM waits instead of killing it.
    let held = signals::hold();
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let probing = std::env::args_os().nth(1).is_some_and(|a| a == "probe");
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Success.into(),
                _ if probing => ProbeExit::NoAttempt.into(),
                _ => Exit::Usage.into(),
            };
        }
    };
    #[cfg(not(feature = "multi-thread-runtime"))]
    let mut builder = tokio::runtime::Builder::new_current_thread();
    #[cfg(feature = "multi-thread-runtime")]
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    if cli.command.is_some() {
        // The subcommands keep the default actions: SIGTERM ends them at once.
        held.release();
        return run_subcommand(&runtime, cli);
    }
    serve(&runtime, &cli, held)
}

/// `probe` or `check`.
fn run_subcommand(runtime: &tokio::runtime::Runtime, cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Probe(args)) => match runtime.block_on(probe::run(&args)) {
            Ok(answer) => {
                if let Some(output) = answer.output {
                    println!("{output}");
                }
                answer.code.into()
            }
            Err(e) => {
                if !args.quiet {
                    eprintln!("error: {e:#}");
                }
                ProbeExit::NoAttempt.into()
            }
        },
        Some(Command::Check(args)) => {
            let (line, exit) = match runtime.block_on(check::run(&args)) {
                Ok(line) => (line, Exit::Success),
                Err(line) => (line, Exit::Failure),
            };
            println!("{line}");
            exit.into()
        }
        None => Exit::Usage.into(),
    }
}

/// Runs the daemon until SIGTERM or SIGINT, whenever it comes after `main` started.
fn serve(runtime: &tokio::runtime::Runtime, cli: &Cli, held: signals::Held) -> ExitCode {
    let config = match Config::from_flags(cli.serve.flags()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage.into();
        }
    };
    if cli.serve.check_config {
        print!("{}", check_config::summary(&config));
        return Exit::Success.into();
    }
    init_tracing(config.log_format);
    let outcome = runtime.block_on(async {
        let installed = Signals::install();
        // A signal that came during start-up is delivered now, to the handlers.
        held.release();
        let reconnect = Arc::new(Notify::new());
        let shutdown = installed?.split(reconnect.clone());
        let listener = http::bind(config.listen).await?;
        redis_healthd::run(config, listener, shutdown, reconnect).await
    });
    match outcome {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failure.into()
        }
    }
}

fn init_tracing(format: LogFormat) {
    // fred logs every reconnect attempt as a warning; the probe reports them once per verdict
    // change instead, so fred stays quiet unless RUST_LOG asks for it. `Targets` reads the usual
    // `level,target=level` directives without pulling in a regex engine.
    let default = Targets::new()
        .with_default(Level::INFO)
        .with_target("fred", Level::ERROR);
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG ignored ({e}); logging at info");
            default
        }),
        Err(_) => default,
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .init(),
    }
}
