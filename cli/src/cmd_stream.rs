//! `sfsync stream`: deliver the changes of the syncs with `stream = true` seconds after they
//! commit (Salesforce Change Data Capture through the Pub/Sub API), mapping and delivering
//! in this process, until Ctrl-C (or `--seconds`, or `--max-events`). `sfsync sync` keeps running on its
//! schedule as the proof that nothing was missed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sfsync_pipeline::local::{Progress, ProgressFn};
use sfsync_stream::{LocalStream, stream_local};

use crate::{common, output};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
    /// Replay ids, run reports and dead letters (the same directory as `sfsync sync`).
    #[arg(long, default_value = ".sfsync")]
    state: PathBuf,
    /// Only this sync (repeatable); default every sync with `stream = true`.
    #[arg(long = "sync")]
    syncs: Vec<String>,
    /// The Pub/Sub API endpoint (a simulator's `http://127.0.0.1:PORT` for tests).
    #[arg(long, env = "SFSYNC_PUBSUB_ENDPOINT", default_value = sfsync_pubsub::SALESFORCE_ENDPOINT)]
    pubsub_endpoint: String,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Stop each sync's stream once this many change events are delivered and their replay
    /// id stored (scripts, tests; the next start resumes after them).
    #[arg(long)]
    max_events: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = args.files.load_resolved()?;
    common::check_sync_names(&config, &args.syncs, &args.files.config)?;
    let quiet = args.quiet;
    let progress: ProgressFn = Arc::new(move |event| {
        if quiet {
            return;
        }
        match event {
            Progress::Extracted { sync, records } => {
                output::note(format_args!("{sync}: {records} changed records streamed"));
            }
            Progress::Delivered { sync, calls, .. } => {
                output::note(format_args!("{sync}: {calls} calls delivered"));
            }
            Progress::Waiting {
                destination,
                seconds,
                reason,
            } => output::note(format_args!(
                "{destination}: waiting {seconds}s before retrying ({reason})"
            )),
        }
    });
    let seconds = args.seconds;
    let stop = async move {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    if !quiet {
        output::note("streaming; Ctrl-C stops (the replay id is kept for the next start)");
    }
    let reports = stream_local(
        config,
        LocalStream {
            state_dir: args.state.clone(),
            endpoint: args.pubsub_endpoint,
            syncs: args.syncs,
            max_events: args.max_events,
        },
        progress,
        stop,
    )
    .await?;
    for report in &reports {
        output::line(report)?;
    }
    output::line(format_args!("state: {}", args.state.display()))?;
    Ok(if reports.iter().all(|r| r.counts.dead == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
