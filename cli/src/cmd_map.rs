//! `sfsync map`: Salesforce REST records (JSON lines on stdin) → one call per mapped record
//! (JSON lines on stdout). Skipped records are reported on stderr with their Id and reason.
//! Needs no credentials: references in the config are never resolved here.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use sfsync_mapping::map_record;

use crate::common;

#[derive(clap::Args)]
pub struct Args {
    /// The sync config (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// The sync whose mapping applies.
    #[arg(long)]
    sync: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let loaded = common::load_config(&args.config)?;
    let Some(sync) = loaded.config.sync(&args.sync) else {
        let names: Vec<&str> = loaded
            .config
            .syncs
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        anyhow::bail!(
            "no sync named {:?} in {} (syncs: {})",
            args.sync,
            loaded.path.display(),
            names.join(", ")
        );
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let stats = map_lines(
        sync,
        stdin,
        BufWriter::new(stdout),
        &mut std::io::stderr().lock(),
    )?;
    eprintln!(
        "sfsync map: {} record(s) read, {} mapped, {} skipped",
        stats.read, stats.mapped, stats.skipped
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    pub read: u64,
    pub mapped: u64,
    pub skipped: u64,
}

/// Streams records to calls one line at a time, so memory stays flat however long the input.
pub fn map_lines(
    sync: &sfsync_mapping::SyncConfig,
    input: impl BufRead,
    mut output: impl Write,
    skipped: &mut impl Write,
) -> Result<MapStats> {
    let mut stats = MapStats::default();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line =
            line.with_context(|| format!("stdin line {number}: cannot read (is it UTF-8?)"))?;
        if line.trim().is_empty() {
            continue;
        }
        stats.read += 1;
        let record: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {number}: not valid JSON"))?;
        match map_record(sync, record) {
            Ok(call) => {
                serde_json::to_writer(&mut output, &call).context("cannot write to stdout")?;
                output.write_all(b"\n").context("cannot write to stdout")?;
                stats.mapped += 1;
            }
            Err(skip) => {
                stats.skipped += 1;
                writeln!(skipped, "skipped line {number}: {skip}")
                    .context("cannot write to stderr")?;
            }
        }
    }
    output.flush().context("cannot write to stdout")?;
    Ok(stats)
}
