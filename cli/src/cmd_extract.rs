//! `sfsync extract`: one sync's records from Salesforce as JSON lines on stdout (REST record
//! shape whichever API served them), progress on stderr.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::{Client, ClientConfig, Cursor, Error, Window};

use crate::{common, output};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
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
    /// The state directory `sfsync sync` uses: with `auth = "refresh_token"` and a connected
    /// app that rotates refresh tokens, the newest one is read from and kept in
    /// `<DIR>/secrets/` (presenting a rotated-out token would revoke the chain).
    #[arg(long, default_value = ".sfsync", value_name = "DIR")]
    pub state: PathBuf,
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
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    extract_to(&args, &mut out).await
}

/// The command, writing JSON lines to `out` (flushed after every page).
async fn extract_to(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let config = args.files.load_resolved()?;
    let sync = common::sync_named(&config, &args.sync, &args.files.config)?;
    let client_config =
        ClientConfig::from_config(&config.salesforce).context("the [salesforce] settings")?;
    let client = Client::with_refresh_token_store(
        client_config,
        std::sync::Arc::new(sfsync_pipeline::token_store::FileTokenStore::new(
            &args.state,
        )),
    )?;

    let plan = match client.plan(sync).await {
        Ok(plan) => plan,
        Err(Error::InvalidSync { problems }) => {
            output::note(format_args!(
                "sfsync: sync {:?} does not match the org:",
                sync.name
            ));
            for p in problems {
                output::note(format_args!("  {p}"));
            }
            return Ok(ExitCode::from(EXIT_INVALID_SYNC));
        }
        Err(e) => return Err(e.into()),
    };
    if !plan.missing_optional.is_empty() {
        output::note(format_args!(
            "note: this org has no {} field; left out",
            plan.missing_optional.join(", ")
        ));
    }

    let until = Utc::now();
    let window = Window {
        after: args.since.map(|t| Cursor {
            modstamp: t,
            id: String::new(),
        }),
        until,
        include_deleted: sync.deletes,
        api: if args.bulk {
            ExtractApi::Bulk
        } else {
            sync.api
        },
        where_clause: sync.where_clause.clone(),
    };

    let mut extraction = client.extract(&plan, window);
    let mut total: u64 = 0;
    let mut pages: u64 = 0;
    let mut last: Option<Cursor> = None;
    // Soft deletes already seen through queryAll are not repeated from getDeleted.
    let mut deleted_seen = std::collections::HashSet::new();
    loop {
        let page = match extraction.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(Error::ApiLimit { used, max }) => {
                finish(out)?;
                output::note(format_args!(
                    "sfsync: stopped after {total} records: the daily API limit is reached \
                     ({used} of {max} requests used)."
                ));
                match &last {
                    Some(c) => output::note(format_args!(
                        "resume later with --since {}",
                        sfsync_mapping::time::format_rfc3339(c.modstamp)
                    )),
                    None => output::note(format_args!("nothing was extracted; run again later")),
                }
                return Ok(ExitCode::from(EXIT_API_LIMIT));
            }
            Err(e) => {
                finish(out)?;
                return Err(anyhow::Error::new(e).context(format!(
                    "extracting sync {:?} stopped after {total} records",
                    sync.name
                )));
            }
        };
        pages += 1;
        total += page.records.len() as u64;
        for record in &page.records {
            if record.is_deleted()
                && let Some(id) = record.string_field("Id")
            {
                deleted_seen.insert(id);
            }
            if !write_line(out, record)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !finish(out)? {
            return Ok(ExitCode::SUCCESS);
        }
        if page.last.is_some() {
            last = page.last;
        }
        output::note(format_args!(
            "{}: page {pages} ({} records, {total} so far, {:?})",
            sync.name,
            page.records.len(),
            extraction.api_used()
        ));
    }

    if sync.deletes
        && let Some(since) = args.since
    {
        match client.deleted(&plan.object, since, until).await {
            Ok(deleted) => {
                let deleted: Vec<_> = deleted
                    .into_iter()
                    .filter(|r| {
                        r.get("Id")
                            .and_then(serde_json::Value::as_str)
                            .is_none_or(|id| !deleted_seen.contains(id))
                    })
                    .collect();
                let n = deleted.len() as u64;
                for record in &deleted {
                    if !write_line(out, &sfsync_mapping::Record::from_value(record))? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if !finish(out)? {
                    return Ok(ExitCode::SUCCESS);
                }
                total += n;
                output::note(format_args!("{}: {n} hard-deleted records", sync.name));
            }
            Err(e @ Error::DeletedTooOld { .. }) => {
                output::note(format_args!("warning: hard deletes not listed: {e}"));
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
    output::note(format_args!(
        "{}: {total} records via {:?} in {pages} pages, {} API calls{limit}",
        sync.name,
        extraction.api_used(),
        usage.calls
    ));
    Ok(ExitCode::SUCCESS)
}

/// Writes one JSON line; `Ok(false)` when the reader went away (`| head`): extraction
/// stops there (it keeps no state, so nothing is left half done).
/// One record as a line: its text as Salesforce sent it (a record's text never holds a line
/// break: see `Record`).
fn write_line(out: &mut impl Write, record: &sfsync_mapping::Record) -> anyhow::Result<bool> {
    let result = out
        .write_all(record.json().as_bytes())
        .and_then(|()| out.write_all(b"\n"));
    output::gone_is_ok(result)
}

/// Flushes a page; `Ok(false)` when the reader went away.
fn finish(out: &mut impl Write) -> anyhow::Result<bool> {
    output::gone_is_ok(out.flush())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;
    use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};

    use super::*;

    fn write_config(dir: &std::path::Path, url: &str) -> PathBuf {
        let demo = Credentials::demo();
        let text = format!(
            r#"
[salesforce]
login_url = "{url}"
auth = "client_credentials"
client_id = "{id}"
client_secret = "${{secret:SF_SECRET}}"
page_size = 200

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
deletes = true
fields = ["Email", "LastName", "Account.Name"]
"#,
            id = demo.client_id
        );
        let path = dir.join("sfsync.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(
            dir.join("secrets.json"),
            format!(r#"{{"SF_SECRET": "{}"}}"#, demo.client_secret),
        )
        .unwrap();
        path
    }

    fn args(dir: &std::path::Path, config: PathBuf) -> Args {
        Args {
            files: common::ConfigFiles {
                config,
                secrets: Some(dir.join("secrets.json")),
            },
            sync: "contacts".into(),
            since: None,
            bulk: false,
            state: dir.join("state"),
        }
    }

    fn lines(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn ids(records: &[Value]) -> HashSet<String> {
        let set: HashSet<String> = records
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(set.len(), records.len(), "duplicate lines");
        set
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_kept_for_the_next_command() {
        let sim = Simulator::start(
            Org::generate(&OrgSpec::tiny()),
            Credentials::demo(),
            Faults {
                rotate_refresh_tokens: true,
                ..Faults::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sim.url());
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "auth = \"client_credentials\"",
            &format!(
                "auth = \"refresh_token\"\nrefresh_token = \"{}\"",
                Credentials::demo().refresh_token
            ),
        );
        std::fs::write(&config, text).unwrap();
        // Each command rotates the token; the second and third start from the stored one
        // (the configured one is dead after the first rotation).
        for _ in 0..3 {
            let mut out = Vec::new();
            let code = extract_to(&args(dir.path(), config.clone()), &mut out)
                .await
                .unwrap();
            assert_eq!(code, ExitCode::SUCCESS);
            assert!(!lines(&out).is_empty());
        }
        let stored = dir.path().join("state/secrets/refresh_token.json");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let doc: Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
        assert_eq!(doc["generation"], 3);
    }

    #[tokio::test]
    async fn extracts_json_lines_over_rest_and_bulk() {
        let sim = Simulator::start(
            Org::generate(&OrgSpec::tiny()),
            Credentials::demo(),
            Faults::default(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sim.url());
        let expected: HashSet<String> = sim
            .org()
            .lock()
            .unwrap()
            .records("Contact")
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect();

        // The soft-deleted ones come too (deletes = true reads queryAll).
        let mut out = Vec::new();
        let code = extract_to(&args(dir.path(), config.clone()), &mut out)
            .await
            .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let rest = lines(&out);
        let rest_ids = ids(&rest);
        assert!(rest_ids.is_superset(&expected));
        assert!(rest.iter().any(|r| r["IsDeleted"] == Value::Bool(true)));

        let mut out = Vec::new();
        let mut bulk_args = args(dir.path(), config.clone());
        bulk_args.bulk = true;
        extract_to(&bulk_args, &mut out).await.unwrap();
        let bulk = lines(&out);
        assert_eq!(ids(&bulk), rest_ids);
        assert!(sim.stats().bulk_jobs >= 1);

        // --since lists hard deletes too, once each.
        let since = sim.org().lock().unwrap().now();
        let purged = {
            let org = sim.org();
            let mut org = org.lock().unwrap();
            let id = expected.iter().next().unwrap().clone();
            assert!(org.hard_delete("Contact", &id));
            // getDeleted covers whole minutes only.
            org.advance_clock(chrono::Duration::minutes(2));
            id
        };
        let mut since_args = args(dir.path(), config);
        since_args.since = Some(since);
        let mut out = Vec::new();
        extract_to(&since_args, &mut out).await.unwrap();
        let recent = lines(&out);
        ids(&recent);
        let gone = recent
            .iter()
            .find(|r| r["Id"] == Value::String(purged.clone()))
            .expect("the hard delete is listed");
        assert_eq!(gone["IsDeleted"], Value::Bool(true));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_sync_is_an_error_naming_the_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), "http://127.0.0.1:9");
        let mut a = args(dir.path(), config);
        a.sync = "nope".into();
        let err = extract_to(&a, &mut Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("contacts"), "{err}");
    }
}
