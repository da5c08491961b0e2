//! `sfsync map`: Salesforce REST records (JSON lines on stdin) → one call per mapped record
//! (JSON lines on stdout). Skipped records are reported on stderr with their Id and reason.
//! Needs no credentials: references in the config are never resolved here.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use sfsync_mapping::version::{VersionField, version_field};
use sfsync_mapping::{Record, map_raw};

use crate::{common, output};

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
    let sync = common::sync_named(&loaded.config, &args.sync, &loaded.path)?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let stats = map_lines(
        sync,
        stdin,
        BufWriter::new(stdout),
        &mut std::io::stderr().lock(),
    )?;
    // The reader went away (`| head`): end quietly, like any filter.
    if !stats.output_closed {
        output::note(format_args!(
            "sfsync map: {} record(s) read, {} mapped, {} skipped",
            stats.read, stats.mapped, stats.skipped
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    pub read: u64,
    pub mapped: u64,
    pub skipped: u64,
    /// The reader of the output went away before the input ended; mapping stopped there.
    pub output_closed: bool,
}

/// Streams records to calls one line at a time, so memory stays flat however long the input.
/// Notes on `notes` (stderr) once when `LastModifiedDate` stands in for a missing
/// `SystemModstamp` as the record version, and names every skipped record there.
pub fn map_lines(
    sync: &sfsync_mapping::SyncConfig,
    input: impl BufRead,
    mut output: impl Write,
    notes: &mut impl Write,
) -> Result<MapStats> {
    let mut stats = MapStats::default();
    let mut noted_fallback = false;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line =
            line.with_context(|| format!("stdin line {number}: cannot read (is it UTF-8?)"))?;
        if line.trim().is_empty() {
            continue;
        }
        stats.read += 1;
        // Kept as its text, as the pipeline keeps a page's records (see `Record`).
        let record: Record = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {number}: not valid JSON"))?;
        let version = record.fields().as_ref().and_then(version_field);
        match map_raw(sync, &record) {
            Ok(call) => {
                if version == Some(VersionField::LastModifiedDate) && !noted_fallback {
                    noted_fallback = true;
                    writeln!(
                        notes,
                        "note: line {number} has no SystemModstamp: LastModifiedDate serves as \
                         the record version (timestamp and messageId), here and for every \
                         record like it"
                    )
                    .context("cannot write to stderr")?;
                }
                let written = serde_json::to_writer(&mut output, &call)
                    .map_err(std::io::Error::from)
                    .and_then(|()| output.write_all(b"\n"));
                if !output::gone_is_ok(written)? {
                    stats.output_closed = true;
                    return Ok(stats);
                }
                stats.mapped += 1;
            }
            Err(skip) => {
                stats.skipped += 1;
                writeln!(notes, "skipped line {number}: {skip}")
                    .context("cannot write to stderr")?;
            }
        }
    }
    stats.output_closed = !output::gone_is_ok(output.flush())?;
    Ok(stats)
}
