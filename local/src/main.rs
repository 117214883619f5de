//! `nomaly`: anomaly detection from the command line.

mod detect;
mod keys;
mod sample;
mod serve;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The answer of `--aws` in a build without the `aws` feature.
#[cfg(not(feature = "aws"))]
const WITHOUT_AWS: &str = "this nomaly was built without the AWS adapters; build it with \
     `cargo build --release -p nomaly --features aws` to use --aws";

#[derive(Parser)]
#[command(
    name = "nomaly",
    version,
    about = "Anomaly detection: score CSV files, save and reuse models, serve the whole system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a detector on a CSV file (or load a saved model) and score every row.
    Detect(detect::Args),
    /// Write a labelled synthetic CSV to try nomaly on.
    Sample(sample::Args),
    /// Make, list and revoke API keys (embedded data folder, or a stack's table with --aws).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Serve the HTTP and WebSocket APIs, with workers, on this machine.
    Serve(serve::Args),
    /// Print the events of a channel as they are pushed (a WebSocket client).
    Watch(watch::Args),
    /// Print the HTTP API's OpenAPI 3.1 document (as served at `/openapi.json`).
    Openapi,
    /// Print the WebSocket API's AsyncAPI 3.0 document.
    Asyncapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(args) => detect::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Openapi => {
            print!("{}", nomaly_core::http::openapi::json());
            Ok(())
        }
        Command::Asyncapi => {
            print!("{}", nomaly_core::asyncapi::json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
