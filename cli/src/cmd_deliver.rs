//! `sfsync deliver`: calls (JSON lines on stdin, as `sfsync map` prints them) → one
//! destination.
//!
//! Stdin is read as a stream and delivered chunk by chunk, so memory stays bounded however
//! long the input. Each chunk gets the destination's retry budget (`retry_budget_seconds`).
//! Calls that are dead — and calls still undelivered when the budget ran out — are appended
//! to the dead-letter file in the one dead-letter format (sfsync_pipeline::dead_letter:
//! `{"v":1,"run_id","destination","reason","call"}` per line, which `sfsync redrive`
//! delivers again), or listed on stderr when no file is given. The summary goes to stderr. The exit code is 0 when
//! every call was delivered, 1 when any was dead or undeliverable, 2 on errors (including a
//! stdin line that is not a valid call, named by its line number; the calls read before it
//! are delivered first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use sfsync_destinations::{DeliveryReport, Destination, Outcome};
use sfsync_mapping::Call;
use sfsync_pipeline::dead_letter::DeadLetterFile;
use sfsync_pipeline::message::{DeadLetter, MESSAGE_VERSION};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::{common, output};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
    /// The `[[destinations]]` entry to deliver to, by name.
    #[arg(long)]
    destination: String,
    /// Append dead and undeliverable calls here, one dead letter per line
    /// ({"v","run_id","destination","reason","call"}; `sfsync redrive FILE` delivers them again).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
}

/// Calls per chunk handed to the destination at once.
const CHUNK_CALLS: usize = 5_000;
/// Input bytes per chunk (whichever limit comes first).
const CHUNK_BYTES: usize = 8 << 20;
/// Dead calls listed on stderr when there is no dead-letter file.
const MAX_LISTED: usize = 50;

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = args.files.load_resolved()?;
    let dest_config = common::destination_named(&config, &args.destination, &args.files.config)?;
    let http = sfsync_destinations::http_client().context("cannot build the HTTP client")?;
    let destination = Destination::with_object_names(
        dest_config,
        http,
        &sfsync_destinations::object_names(&config),
    )?;

    let dead_letter = args.dead_letter.as_deref().map(DeadLetterFile::new);
    let stdin = BufReader::new(tokio::io::stdin());
    let mut stderr = std::io::stderr();
    let result = deliver_lines(&destination, stdin, dead_letter.as_ref(), &mut stderr).await;
    let summary = match result {
        Ok(summary) => summary,
        Err(failure) => {
            print_summary(&destination, &failure.summary, args.dead_letter.as_deref());
            return Err(failure.error);
        }
    };
    print_summary(&destination, &summary, args.dead_letter.as_deref());
    Ok(if summary.dead + summary.undelivered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(destination: &Destination, s: &Summary, dead_letter: Option<&Path>) {
    output::note(format_args!(
        "sfsync deliver: {} ({}): {} call(s) read, {} delivered, {} dead, {} retry-later, {} request(s)",
        destination.name(),
        destination.kind(),
        s.read,
        s.delivered,
        s.dead,
        s.undelivered,
        s.requests
    ));
    if s.dead + s.undelivered > 0
        && let Some(path) = dead_letter
    {
        output::note(format_args!(
            "sfsync deliver: {} call(s) written to {}",
            s.dead + s.undelivered,
            path.display()
        ));
    }
}

/// What a delivery did, added up over the chunks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub delivered: u64,
    pub dead: u64,
    /// RetryLater when the budget ran out.
    pub undelivered: u64,
    pub requests: u64,
}

/// An error, with what was delivered before it.
#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    pub summary: Summary,
}

/// Reads calls from `input` and delivers them chunk by chunk. Dead and undeliverable calls
/// go to `dead_letter`, or are listed on `report` when there is none.
pub async fn deliver_lines(
    destination: &Destination,
    input: impl AsyncBufRead + Unpin,
    dead_letter: Option<&DeadLetterFile>,
    report: &mut dyn Write,
) -> Result<Summary, Failure> {
    // The run id of the dead letters: when this delivery started.
    let run_id = sfsync_pipeline::report::new_run_id(chrono::Utc::now());
    let mut dead_letter = dead_letter.map(|file| (file, run_id.as_str(), destination.name()));
    let mut summary = Summary::default();
    let mut listed = 0usize;
    let mut chunk: Vec<Call> = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut lines = input.lines();
    let mut number = 0usize;
    let mut pending_error: Option<anyhow::Error> = None;

    loop {
        // The end of the input, or a bad line: what was read before it is still delivered.
        let mut input_ended = false;
        match next_call(&mut lines, &mut number).await {
            Ok(Some((call, bytes))) => {
                summary.read += 1;
                chunk_bytes += bytes;
                chunk.push(call);
            }
            Ok(None) => input_ended = true,
            Err(error) => {
                pending_error = Some(error);
                input_ended = true;
            }
        }
        let chunk_full = chunk.len() >= CHUNK_CALLS || chunk_bytes >= CHUNK_BYTES;
        if chunk_full || (input_ended && !chunk.is_empty()) {
            let calls = std::mem::take(&mut chunk);
            chunk_bytes = 0;
            let delivered = destination
                .deliver(calls, destination.default_budget())
                .await;
            if let Err(error) = record(
                delivered,
                &mut summary,
                &mut dead_letter,
                report,
                &mut listed,
            ) {
                return Err(Failure { error, summary });
            }
        }
        if input_ended {
            break;
        }
    }
    if listed > MAX_LISTED {
        let _ = writeln!(
            report,
            "  … and {} more (use --dead-letter FILE to keep them all)",
            listed - MAX_LISTED
        );
    }
    match pending_error {
        Some(error) => Err(Failure { error, summary }),
        None => Ok(summary),
    }
}

/// The next call on stdin and its length in bytes, skipping blank lines; `None` at the end.
/// `number` counts the lines read, so an error names the line.
async fn next_call(
    lines: &mut tokio::io::Lines<impl AsyncBufRead + Unpin>,
    number: &mut usize,
) -> Result<Option<(Call, usize)>> {
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(e) => anyhow::bail!(
                "stdin line {}: cannot read (is it UTF-8?): {e}",
                *number + 1
            ),
        };
        *number += 1;
        if line.trim().is_empty() {
            continue;
        }
        return match serde_json::from_str::<Call>(&line) {
            Ok(call) => Ok(Some((call, line.len()))),
            Err(e) => Err(anyhow::anyhow!(
                "stdin line {number}: not a valid call: {e}"
            )),
        };
    }
}

/// Adds a chunk's report to the summary and writes its dead and undelivered calls.
fn record(
    delivered: DeliveryReport,
    summary: &mut Summary,
    dead_letter: &mut Option<(&DeadLetterFile, &str, &str)>,
    report: &mut dyn Write,
    listed: &mut usize,
) -> Result<()> {
    summary.requests += delivered.requests;
    let mut letters = Vec::new();
    for outcome in delivered.outcomes {
        let reason = match outcome.outcome {
            Outcome::Delivered => {
                summary.delivered += 1;
                continue;
            }
            Outcome::Dead { reason } => {
                summary.dead += 1;
                reason
            }
            Outcome::RetryLater { reason, after } => {
                summary.undelivered += 1;
                match after {
                    Some(after) => format!(
                        "not delivered (retry after {} s): {reason}",
                        after.as_secs().max(1)
                    ),
                    None => format!("not delivered: {reason}"),
                }
            }
            Outcome::Paused { reason } => {
                summary.undelivered += 1;
                format!("not delivered: credentials rejected: {reason}")
            }
        };
        match dead_letter {
            Some((_, run_id, destination)) => letters.push(DeadLetter {
                v: MESSAGE_VERSION,
                run_id: run_id.to_string(),
                destination: destination.to_string(),
                reason,
                call: outcome.call,
            }),
            None => {
                *listed += 1;
                if *listed <= MAX_LISTED {
                    writeln!(report, "  dead {}: {reason}", outcome.message_id)
                        .context("cannot write to stderr")?;
                }
            }
        }
    }
    if let Some((file, _, _)) = dead_letter {
        file.append(&letters)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfsync_mapping::{DestinationConfig, DestinationKind};

    fn file_destination(path: &Path) -> Destination {
        let config: DestinationConfig = serde_json::from_value(serde_json::json!({
            "name": "out", "type": "file", "path": path.display().to_string(),
        }))
        .expect("config");
        assert_eq!(config.kind(), DestinationKind::File);
        Destination::new(&config, sfsync_destinations::http_client().expect("client"))
            .expect("destination")
    }

    const CALL: &str = r#"{"type":"identify","messageId":"00000000-0000-4000-8000-000000000001","timestamp":"2024-05-01T12:34:56.000Z","userId":"003A","traits":{"email":"a@example.com"},"context":{"sfsync":{"sync":"contacts","object":"Contact","kind":"people","recordId":"003A"}}}"#;

    /// Delivers `input` to a file destination without a dead-letter file: the outcome and
    /// the lines the file received.
    async fn deliver_to_file(input: &str) -> (Result<Summary, Failure>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let d = file_destination(&out);
        let mut report = Vec::new();
        let outcome = deliver_lines(&d, input.as_bytes(), None, &mut report).await;
        let written = std::fs::read_to_string(&out).map_or(0, |text| text.lines().count());
        (outcome, written)
    }

    #[tokio::test]
    async fn delivers_every_line_and_reports() {
        let (summary, written) = deliver_to_file(&format!("{CALL}\n\n{CALL}\n")).await;
        let summary = summary.expect("delivered");
        assert_eq!(summary.read, 2);
        assert_eq!(summary.delivered, 2);
        assert_eq!(summary.dead, 0);
        assert_eq!(written, 2);
    }

    /// A full chunk goes as soon as it is full; the rest goes at the end of the input, and
    /// an input ending right after a full chunk sends nothing more.
    #[tokio::test]
    async fn full_chunks_and_the_last_partial_one_are_each_delivered_once() {
        for calls in [CHUNK_CALLS, CHUNK_CALLS + 1] {
            let (summary, written) = deliver_to_file(&format!("{CALL}\n").repeat(calls)).await;
            let summary = summary.expect("delivered");
            assert_eq!(
                (summary.read, summary.delivered),
                (calls as u64, calls as u64)
            );
            assert_eq!(written, calls);
        }
    }

    #[tokio::test]
    async fn an_invalid_line_is_named_after_the_valid_ones_are_delivered() {
        let input = format!("{CALL}\n{{\"type\":\"identify\"}}\n{CALL}\n");
        let (failure, written) = deliver_to_file(&input).await;
        let failure = failure.expect_err("line 2 is not a call");
        assert!(
            failure.error.to_string().contains("stdin line 2"),
            "{}",
            failure.error
        );
        assert_eq!(failure.summary.delivered, 1);
        assert_eq!(written, 1);
    }

    #[tokio::test]
    async fn dead_calls_go_to_the_dead_letter_file_in_the_one_redrivable_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory as the output path: every write fails, every call is dead.
        let d = file_destination(dir.path());
        let dead_path = dir.path().join("dead.jsonl");
        let dead = DeadLetterFile::new(&dead_path);
        let mut report = Vec::new();
        let summary = deliver_lines(&d, format!("{CALL}\n").as_bytes(), Some(&dead), &mut report)
            .await
            .expect("ran");
        assert_eq!(summary.dead, 1);
        // The file reads back as dead letters, as `sfsync redrive` reads it.
        let letters = sfsync_pipeline::dead_letter::read_file(&dead_path).expect("dead letters");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].destination, "out");
        assert!(
            letters[0].reason.contains("cannot append"),
            "{}",
            letters[0].reason
        );
        assert_eq!(
            letters[0].call.message_id,
            "00000000-0000-4000-8000-000000000001"
        );
    }
}
