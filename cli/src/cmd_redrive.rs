//! `sfsync redrive FILE`: the calls of a dead-letter file (`.sfsync/dead-letters.jsonl` of
//! `sfsync sync`, or what `sfsync deliver --dead-letter` wrote) delivered again once the
//! cause is fixed, through the same deliver stage, with a fresh attempt count. Afterwards
//! the file holds only the calls that are still dead, with their new reasons (it is removed
//! when none is). Exit 0 when every call went through, 1 when some are still dead, 2 on
//! errors (the file is then unchanged).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sfsync_pipeline::local::Progress;

use crate::{common, output};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
    /// The dead-letter file (JSON lines, one dead letter each).
    file: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = args.files.load_resolved()?;
    let progress = Arc::new(|event| {
        if let Progress::Waiting {
            destination,
            seconds,
            reason,
        } = event
        {
            output::note(format_args!(
                "{destination}: waiting {seconds}s before retrying ({reason})"
            ));
        }
    });
    let outcome = sfsync_pipeline::redrive::redrive_file(
        &config,
        &args.file,
        Duration::from_secs(60),
        progress,
    )
    .await?;
    let counts = &outcome.counts;
    output::note(format_args!(
        "sfsync redrive: {} call(s) read, {} delivered, {} still dead, {} request(s)",
        outcome.read, counts.delivered, counts.dead, counts.destination_requests
    ));
    if counts.dead > 0 {
        output::note(format_args!(
            "sfsync redrive: the calls still dead, with their reasons, are in {}",
            args.file.display()
        ));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
