//! `sfsync runs`: the latest run of each sync, from the local state directory or, with
//! `--table`, from the DynamoDB table of a deployment. A table for people, JSON lines for
//! machines (`--json`), and an exit status for cron and CI: 1 when the latest run of any
//! sync failed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use sfsync_pipeline::report::{RunReport, RunStatus};
use sfsync_pipeline::state::StateStore;

use crate::output;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = ".sfsync")]
    state: PathBuf,
    /// Read a deployment's DynamoDB table instead (AWS credentials from the environment).
    #[arg(long)]
    table: Option<String>,
    /// How many of the newest run reports to look through for each sync's latest.
    #[arg(long, default_value_t = 500)]
    limit: usize,
    /// One JSON object per line (each sync's latest run report) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Exit status when the latest run of some sync failed.
const EXIT_FAILED_RUN: u8 = 1;

pub async fn run(args: Args) -> Result<ExitCode> {
    let reports = match &args.table {
        Some(table) => {
            let sdk = sfsync_pipeline::aws::sdk_config().await;
            sfsync_pipeline::state::dynamo::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )
            .runs(args.limit)
            .await?
        }
        None => {
            if !args.state.exists() {
                anyhow::bail!(
                    "no state directory at {} (run `sfsync sync` first, or pass --state)",
                    args.state.display()
                );
            }
            sfsync_pipeline::state::file::FileStore::new(&args.state)?
                .runs(args.limit)
                .await?
        }
    };
    let latest = latest_per_sync(reports);
    if latest.is_empty() {
        output::note(format_args!("no runs yet"));
    }
    if args.json {
        for r in &latest {
            if !output::line(serde_json::to_string(r)?)? {
                break;
            }
        }
    } else if !latest.is_empty() {
        output::line(render_table(&latest, Utc::now()))?;
        for r in latest.iter().filter(|r| is_failure(r.status)) {
            if let Some(error) = &r.error {
                output::line(format_args!("{}: {error}", r.sync))?;
            }
        }
        // Missed hard deletes need a person even though the run completed.
        for r in &latest {
            if let Some(gap) = &r.deletes_gap {
                output::line(format_args!("{}: {gap}", r.sync))?;
            }
        }
    }
    // The status does not depend on whether anyone read the table.
    Ok(if latest.iter().any(|r| is_failure(r.status)) {
        ExitCode::from(EXIT_FAILED_RUN)
    } else {
        ExitCode::SUCCESS
    })
}

/// Only a failed run is a failure: partial, stopped-at-a-limit and the other statuses a
/// run can end in resume on their own and must not wake anyone up.
fn is_failure(status: RunStatus) -> bool {
    matches!(status, RunStatus::Failed)
}

/// The newest report of each sync, by sync name. A run id
/// starts with its start time to the second, so two runs started within one second come
/// back from the stores in either order: the start time settles it. (The id comes first
/// because a report only later stages have written yet carries no start time of its own.)
fn latest_per_sync(mut reports: Vec<RunReport>) -> Vec<RunReport> {
    reports.sort_by_key(|r| {
        let started_second = r.run_id.split('-').next().unwrap_or_default().to_string();
        std::cmp::Reverse((started_second, r.started_at))
    });
    let mut seen = HashSet::new();
    let mut latest: Vec<RunReport> = reports
        .into_iter()
        .filter(|r| seen.insert(r.sync.clone()))
        .collect();
    latest.sort_by(|a, b| a.sync.cmp(&b.sync));
    latest
}

/// The status as the report stores it (`complete`, `partial`, `api_limit`, `failed`, …):
/// short, and any status a newer pipeline writes shows up without a change here.
fn status_name(status: RunStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => status.to_string(),
    }
}

fn render_table(reports: &[RunReport], now: DateTime<Utc>) -> String {
    let header = [
        "SYNC",
        "STATUS",
        "WINDOW (UTC)",
        "EXTRACTED",
        "DELIVERED",
        "DEAD",
        "DURATION",
    ];
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            [
                r.sync.clone(),
                status_name(r.status),
                window(r),
                r.counts.extracted.to_string(),
                r.counts.delivered.to_string(),
                r.counts.dead.to_string(),
                duration(r, now),
            ]
        })
        .collect();
    // Text columns to the left, numbers to the right.
    let right_aligned = [false, false, false, true, true, true, true];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: &[&str]| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right_aligned[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < cells.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        line
    };
    let mut lines = vec![render(&header)];
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        lines.push(render(&cells));
    }
    lines.join("\n")
}

/// `2026-12-02 18:00:00 → 18:15:00` (the end's date only when it differs); a first run,
/// which reads everything, starts at `start`.
fn window(r: &RunReport) -> String {
    let Some(end) = r.window_end else {
        return "-".into();
    };
    let start = match r.window_start {
        Some(start) => start.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "start".into(),
    };
    let same_day = r
        .window_start
        .is_some_and(|s| s.date_naive() == end.date_naive());
    let end = if same_day {
        end.format("%H:%M:%S").to_string()
    } else {
        end.format("%Y-%m-%d %H:%M:%S").to_string()
    };
    format!("{start} → {end}")
}

/// `12.3 s`, `4 min 05 s`; a run still going counts up to `now`.
fn duration(r: &RunReport, now: DateTime<Utc>) -> String {
    let (ms, running) = match r.duration_ms() {
        Some(ms) => (ms, false),
        None => ((now - r.started_at).num_milliseconds(), true),
    };
    let ms = ms.max(0);
    let text = if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{} min {:02} s", s / 60, s % 60)
    };
    if running { format!("{text}…") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn report(sync: &str, run: &str, status: RunStatus) -> RunReport {
        let mut r = RunReport::new(run, sync, at("2026-12-02T18:00:00Z"));
        r.status = status;
        r.window_start = Some(at("2026-12-02T17:45:00Z"));
        r.window_end = Some(at("2026-12-02T18:00:00Z"));
        r.finished_at = Some(at("2026-12-02T18:00:12.300Z"));
        r.counts.extracted = 1200;
        r.counts.delivered = 1195;
        r.counts.dead = 5;
        r
    }

    #[test]
    fn the_table_has_one_aligned_row_per_sync() {
        let reports = vec![
            report("contacts", "r2", RunStatus::Failed),
            report("leads", "r2", RunStatus::Complete),
            report("contacts", "r1", RunStatus::Complete),
        ];
        let latest = latest_per_sync(reports);
        assert_eq!(latest.len(), 2);
        assert_eq!(
            latest[0].status,
            RunStatus::Failed,
            "the newest contacts run"
        );
        let table = render_table(&latest, at("2026-12-02T19:00:00Z"));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            vec![
                "SYNC      STATUS    WINDOW (UTC)                    EXTRACTED  DELIVERED  DEAD  DURATION",
                "contacts  failed    2026-12-02 17:45:00 → 18:00:00       1200       1195     5    12.3 s",
                "leads     complete  2026-12-02 17:45:00 → 18:00:00       1200       1195     5    12.3 s",
            ]
        );
    }

    #[test]
    fn the_latest_run_is_the_last_started_whatever_the_store_order() {
        let mut earlier = report("contacts", "20261202T180000Z-ffffffff", RunStatus::Complete);
        earlier.started_at = at("2026-12-02T18:00:00.100Z");
        let mut later = report("contacts", "20261202T180000Z-00000000", RunStatus::Failed);
        later.started_at = at("2026-12-02T18:00:00.700Z");
        let latest = latest_per_sync(vec![earlier, later]);
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].status, RunStatus::Failed);
    }

    #[test]
    fn first_runs_long_runs_and_running_ones_read_plainly() {
        let mut r = report("contacts", "r1", RunStatus::Running);
        r.window_start = None;
        r.finished_at = None;
        assert_eq!(window(&r), "start → 2026-12-02 18:00:00");
        assert_eq!(duration(&r, at("2026-12-02T18:04:05Z")), "4 min 05 s…");
        assert_eq!(status_name(RunStatus::ApiLimit), "api_limit");
        assert!(is_failure(RunStatus::Failed));
        assert!(!is_failure(RunStatus::Partial) && !is_failure(RunStatus::ApiLimit));
    }
}
