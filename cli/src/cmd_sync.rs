//! `sfsync sync`: one local run of all (or the named) syncs through the same stage
//! functions as the Lambdas. A second run is incremental.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::{common, local_run};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
    /// Checkpoints, leases, run reports and dead letters.
    #[arg(long, default_value = ".sfsync")]
    state: PathBuf,
    /// Only this sync (repeatable); default all.
    #[arg(long = "sync")]
    syncs: Vec<String>,
    /// Ignore checkpoints and extract everything again.
    #[arg(long)]
    full: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = args.files.load_resolved()?;
    common::check_sync_names(&config, &args.syncs, &args.files.config)?;
    let outcome = local_run::run(
        config,
        local_run::LocalRun {
            state_dir: args.state.clone(),
            syncs: args.syncs,
            full: args.full,
            budget: std::time::Duration::from_secs(60),
            retry_base: None,
            started_at: None,
        },
        !args.quiet,
    )
    .await?;
    // Printed after the state is saved: a reader that went away loses only the printout.
    local_run::print_reports(&outcome, &args.state)?;
    Ok(if outcome.all_delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
