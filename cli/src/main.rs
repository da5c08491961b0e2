//! `sfsync`: the local face of the pipeline. Argument parsing lives here and only
//! validates; each command's work lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_deliver;
mod cmd_demo;
mod cmd_extract;
mod cmd_init;
mod cmd_map;
mod cmd_redrive;
mod cmd_runs;
mod cmd_stream;
mod cmd_sync;
mod cmd_validate;
mod common;
mod local_run;
mod output;

/// mimalloc instead of glibc's malloc: allocating and freeing the records' JSON trees was
/// about a quarter of the CPU per record (issue 16, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sfsync",
    version,
    about = "Sync Salesforce to the tools where people act on customer data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline against a simulated org into ./sfsync-demo (no accounts needed).
    Demo(cmd_demo::Args),
    /// Check a config file; with --online, also against the org's describe.
    Validate(cmd_validate::Args),
    /// Salesforce records (JSON lines on stdin) -> calls (JSON lines on stdout).
    Map(cmd_map::Args),
    /// One sync's changed records from Salesforce as JSON lines on stdout.
    Extract(cmd_extract::Args),
    /// Calls (JSON lines on stdin) -> one destination.
    Deliver(cmd_deliver::Args),
    /// Deliver the calls of a dead-letter file again; the file keeps only those still dead.
    Redrive(cmd_redrive::Args),
    /// Write a commented starter config.
    Init(cmd_init::Args),
    /// Run all (or the named) syncs locally, incrementally: extract, map, deliver.
    Sync(cmd_sync::Args),
    /// Deliver the changes of syncs with `stream = true` seconds after they commit (Change Data Capture).
    Stream(cmd_stream::Args),
    /// The latest run of each sync as a table (--json: JSON lines); exit 1 if one failed.
    Runs(cmd_runs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::init_tracing();
    let result = match cli.command {
        Command::Demo(args) => common::block_on(cmd_demo::run(args)),
        Command::Validate(args) => common::block_on(cmd_validate::run(args)),
        Command::Map(args) => cmd_map::run(args),
        Command::Extract(args) => common::block_on(cmd_extract::run(args)),
        Command::Deliver(args) => common::block_on(cmd_deliver::run(args)),
        Command::Redrive(args) => common::block_on(cmd_redrive::run(args)),
        Command::Init(args) => common::block_on(cmd_init::run(args)),
        Command::Sync(args) => common::block_on(cmd_sync::run(args)),
        Command::Stream(args) => common::block_on(cmd_stream::run(args)),
        Command::Runs(args) => common::block_on(cmd_runs::run(args)),
    };
    match result {
        Ok(code) => code,
        // The reader of stdout went away (`| head`) somewhere no command expected: that is
        // the reader's choice, not an error to report.
        Err(e) if output::is_reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(format_args!("sfsync: {}", output::error_text(&e)));
            ExitCode::from(2)
        }
    }
}
