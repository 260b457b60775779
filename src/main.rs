//! The binary: parse the command line, set up logging, run the daemon or a subcommand
//! (`check`, `probe`), and turn the outcome into an exit code (daemon: 0 clean, 1 failure,
//! 2 usage; `probe`: 0 usable, 1 not usable, 2 no answer, 3 no attempt).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::ErrorKind;
use redis_healthd::config::{Cli, Command, Config, LogFormat};
use redis_healthd::{check, http, isready};
use tokio::sync::Notify;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // pg_isready's convention for `probe`: 3 means no attempt was made.
            let probe = std::env::args_os().nth(1).is_some_and(|a| a == "probe");
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ if probe => 3,
                _ => 2,
            };
            let _ = e.print();
            return ExitCode::from(code);
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
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Probe(args)) = &cli.command {
        return match runtime.block_on(isready::run(args)) {
            Ok(answer) => {
                if let Some(output) = answer.output {
                    println!("{output}");
                }
                ExitCode::from(answer.code)
            }
            Err(e) => {
                if !args.quiet {
                    eprintln!("error: {e}");
                }
                ExitCode::from(3)
            }
        };
    }
    if let Some(Command::Check(args)) = cli.command {
        return match runtime.block_on(check::run(&args)) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(line) => {
                println!("{line}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_args(&cli.serve) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let outcome = runtime.block_on(async {
        let listener = http::bind(config.listen).await?;
        let reconnect = Arc::new(Notify::new());
        forward_sighup(reconnect.clone())?;
        redis_healthd::run(config, listener, shutdown_signal(), reconnect).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
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

/// SIGHUP makes the Redis client reconnect, reading the password file again (instead of the
/// default action, which would end the process).
fn forward_sighup(reconnect: Arc<Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reconnect.notify_one();
        }
    });
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        // Without a SIGTERM handler, SIGINT still stops the daemon.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
