//! `sfsync extract`: one sync's records from Salesforce as JSON lines on stdout (REST record
//! shape whichever API served them), progress on stderr.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::{Client, ClientConfig, Cursor, Error, Window};

use crate::common;

#[derive(clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// JSON object of secrets for `${secret:NAME}` references.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// The sync to extract.
    #[arg(long, value_name = "NAME")]
    pub sync: String,
    /// Only records modified at or after this instant (RFC 3339); all records without it.
    /// With `deletes = true`, hard deletes since then are listed too (15 days at most).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Force Bulk API 2.0 (falls back to REST where Bulk cannot serve the sync).
    #[arg(long)]
    pub bulk: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    sfsync_mapping::time::parse_salesforce_datetime(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 datetime like 2024-05-01T00:00:00Z ({e})"))
}

/// Exit code when the daily API limit stopped the extraction (resumable).
const EXIT_API_LIMIT: u8 = 3;
/// Exit code when the sync does not match the org.
const EXIT_INVALID_SYNC: u8 = 1;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = common::load_resolved(&args.config, args.secrets.as_deref())?;
    let Some(sync) = config.sync(&args.sync) else {
        let names: Vec<&str> = config.syncs.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "{}: no sync named {:?} (the syncs are: {})",
            args.config.display(),
            args.sync,
            names.join(", ")
        );
    };
    let client_config =
        ClientConfig::from_config(&config.salesforce).context("the [salesforce] settings")?;
    let client = Client::new(client_config)?;

    let plan = match client.plan(sync).await {
        Ok(plan) => plan,
        Err(Error::InvalidSync { problems }) => {
            eprintln!("sfsync: sync {:?} does not match the org:", sync.name);
            for p in problems {
                eprintln!("  {p}");
            }
            return Ok(ExitCode::from(EXIT_INVALID_SYNC));
        }
        Err(e) => return Err(e.into()),
    };
    if !plan.missing_optional.is_empty() {
        eprintln!(
            "note: this org has no {} field; left out",
            plan.missing_optional.join(", ")
        );
    }

    let until = Utc::now();
    let window = Window {
        after: args.since.map(|t| Cursor {
            modstamp: t,
            id: String::new(),
        }),
        until,
        include_deleted: sync.deletes,
        api: if args.bulk { ExtractApi::Bulk } else { sync.api },
        where_clause: sync.where_clause.clone(),
    };

    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut extraction = client.extract(&plan, window);
    let mut total: u64 = 0;
    let mut pages: u64 = 0;
    let mut last: Option<Cursor> = None;
    loop {
        let page = match extraction.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(Error::ApiLimit { used, max }) => {
                finish(&mut out)?;
                eprintln!(
                    "sfsync: stopped after {total} records: the daily API limit is reached \
                     ({used} of {max} requests used)."
                );
                match &last {
                    Some(c) => eprintln!(
                        "resume later with --since {}",
                        sfsync_mapping::time::format_rfc3339(c.modstamp)
                    ),
                    None => eprintln!("nothing was extracted; run again later"),
                }
                return Ok(ExitCode::from(EXIT_API_LIMIT));
            }
            Err(e) => {
                finish(&mut out)?;
                return Err(anyhow::Error::new(e).context(format!(
                    "extracting sync {:?} stopped after {total} records",
                    sync.name
                )));
            }
        };
        pages += 1;
        total += page.records.len() as u64;
        for record in &page.records {
            if !write_line(&mut out, record)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !finish(&mut out)? {
            return Ok(ExitCode::SUCCESS);
        }
        if page.last.is_some() {
            last = page.last;
        }
        eprintln!(
            "{}: page {pages} ({} records, {total} so far, {:?})",
            sync.name,
            page.records.len(),
            extraction.api_used()
        );
    }

    if sync.deletes
        && let Some(since) = args.since
    {
        match client.deleted(&plan.object, since, until).await {
            Ok(deleted) => {
                let n = deleted.len() as u64;
                for record in &deleted {
                    if !write_line(&mut out, record)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if !finish(&mut out)? {
                    return Ok(ExitCode::SUCCESS);
                }
                total += n;
                eprintln!("{}: {n} hard-deleted records", sync.name);
            }
            Err(e @ Error::DeletedTooOld { .. }) => {
                eprintln!("warning: hard deletes not listed: {e}");
            }
            Err(e) => return Err(anyhow::Error::new(e).context("listing deleted records")),
        }
    }

    let usage = client.usage();
    let limit = usage
        .limit
        .as_ref()
        .and_then(|l| l.api_usage)
        .map(|(used, max)| format!("; org daily API usage {used}/{max}"))
        .unwrap_or_default();
    eprintln!(
        "{}: {total} records via {:?} in {pages} pages, {} API calls{limit}",
        sync.name,
        extraction.api_used(),
        usage.calls
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes one JSON line; `Ok(false)` when stdout is closed (`| head`).
fn write_line(out: &mut impl Write, record: &serde_json::Value) -> anyhow::Result<bool> {
    let result = serde_json::to_writer(&mut *out, record)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"));
    closed_is_ok(result)
}

/// Flushes a page; `Ok(false)` when stdout is closed.
fn finish(out: &mut impl Write) -> anyhow::Result<bool> {
    closed_is_ok(out.flush())
}

fn closed_is_ok(result: io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}
