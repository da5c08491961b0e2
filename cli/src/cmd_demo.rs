//! `sfsync demo`: the whole pipeline on a machine with nothing set up. It starts the
//! Salesforce simulator in-process with a seeded org, runs the bundled demo config (contacts,
//! leads, accounts, relationships, tasks, a custom object) into a file under
//! `./sfsync-demo/`, streams one change through the simulator's Pub/Sub API (Change Data
//! Capture, as `sfsync stream` does) and times it from commit to destination, changes some
//! records while the stream is stopped, runs again to show an incremental sync that also
//! counts what the stream missed, and prints the run reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use sfsync_mapping::Config;
use sfsync_mapping::secrets::SecretMap;
use sfsync_pipeline::local::{Progress, ProgressFn};
use sfsync_simulator::{
    Credentials, Faults, Org, OrgSpec, PubSubOptions, Simulator, SimulatorHandle,
};
use sfsync_stream::{FileReplayStore, LocalStream, ReplayStore, StoredReplay, stream_local};

use crate::{local_run, output};

const DEMO_CONFIG: &str = include_str!("../demo/sfsync-demo.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Where the output and the state go.
    #[arg(long, default_value = "sfsync-demo")]
    dir: PathBuf,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let calls_file = args.dir.join("calls.jsonl");
    let state = args.dir.join("state");
    // Start from scratch each time, touching only what the demo itself writes.
    for path in [&calls_file] {
        if path.exists() {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot remove {}", state.display()))?;
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;

    // The org's history ends two minutes ago, so that the edits made between the two runs
    // look like what they are: recent changes.
    let org = Org::generate(&OrgSpec {
        anchor: chrono::Utc::now() - chrono::Duration::seconds(120),
        ..OrgSpec::demo()
    });
    let credentials = Credentials::demo();
    let simulator = Simulator::start(org, credentials.clone(), Faults::default())
        .await
        .context("cannot start the Salesforce simulator")?;
    output::line(format_args!(
        "Salesforce simulator with a seeded demo org at {}",
        simulator.url()
    ))?;

    let secrets = SecretMap(
        [
            ("simulator_url", simulator.url()),
            ("sf_client_id", credentials.client_id.clone()),
            ("sf_client_secret", credentials.client_secret.clone()),
            ("output_path", calls_file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    let config = Config::parse(DEMO_CONFIG)
        .map_err(|e| anyhow::anyhow!("the bundled demo config: {e}"))?
        .resolve_references(DEMO_CONFIG, &secrets)
        .map_err(|e| anyhow::anyhow!("the bundled demo config: {e}"))?;

    output::line("\n== Run 1: everything (a first sync is a full sync)\n")?;
    let first = run_once(&config, &state, args.quiet).await?;

    output::line(
        "\n== Streaming: one change delivered seconds after it commits (Change Data Capture)\n",
    )?;
    let streamed = stream_one_change(&simulator, &config, &state).await?;
    output::line(format_args!(
        "Contact {} edited in Salesforce; its call reached the destination {:.1} ms after the commit.\n{}",
        streamed.id,
        streamed.latency.as_secs_f64() * 1000.0,
        streamed.report
    ))?;

    // Between the runs, someone works in Salesforce.
    let changed = {
        let org = simulator.org();
        let mut org = org
            .lock()
            .map_err(|_| anyhow::anyhow!("simulator org lock poisoned"))?;
        let now = chrono::Utc::now() - chrono::Duration::seconds(60);
        if now > org.now() {
            let by = now - org.now();
            org.advance_clock(by);
        }
        let touched = org.touch_random("Contact", 25, 7).len();
        let accounts = org.touch_random("Account", 5, 8).len();
        let mut gone = 0;
        for id in org
            .records("Contact")
            .iter()
            .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
            .take(3)
            .collect::<Vec<_>>()
        {
            gone += usize::from(org.soft_delete("Contact", &id));
        }
        let mut fields = Map::new();
        for (k, v) in [
            ("FirstName", json!("Grace")),
            ("LastName", json!("Hopper")),
            ("Email", json!("grace@example.com")),
            ("Title", json!("Rear Admiral")),
        ] {
            fields.insert(k.to_string(), v);
        }
        org.insert("Contact", fields);
        // Identity lineage: a Lead converted into a new Contact, two Contacts merged. Both
        // become `merge` calls in run 2 (the loser is not deleted downstream).
        let lead = org
            .records("Lead")
            .iter()
            .find(|l| l.get("IsConverted") == Some(&json!(false)))
            .and_then(|l| l.get("Id").and_then(Value::as_str).map(str::to_string));
        let converted = lead.is_some_and(|id| org.convert_lead(&id, None, None).is_ok());
        let pair: Vec<String> = org
            .records("Contact")
            .iter()
            .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
            .take(2)
            .collect();
        let merged = match pair.as_slice() {
            [winner, loser] => org.merge("Contact", winner, &[loser.as_str()]).is_ok(),
            _ => false,
        };
        (
            touched,
            accounts,
            gone,
            usize::from(converted),
            usize::from(merged),
        )
    };
    output::line(format_args!(
        "\n== Changes in Salesforce while the stream is stopped: {} contacts edited, {} accounts edited, {} contacts deleted, 1 contact created, {} lead converted, {} pair of contacts merged\n",
        changed.0, changed.1, changed.2, changed.3, changed.4
    ))?;
    output::line(
        "== Run 2: only what changed (incremental). Polling stays the proof: for contacts \
         (stream = true) it counts the changes the stopped stream did not deliver, and \
         delivers them\n",
    )?;
    let second = run_once(&config, &state, args.quiet).await?;
    simulator.shutdown().await;

    let lines = std::fs::read_to_string(&calls_file)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    output::line(format_args!(
        "Output: {} ({lines} calls, one JSON object per line)\nState:  {} (checkpoints, run reports; `sfsync runs --state {}`)\nDone in {:.1} s.",
        calls_file.display(),
        state.display(),
        state.display(),
        started.elapsed().as_secs_f64()
    ))?;
    Ok(if first && second {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_once(config: &Config, state: &std::path::Path, quiet: bool) -> Result<bool> {
    let outcome = local_run::run(
        config.clone(),
        local_run::LocalRun {
            state_dir: state.to_path_buf(),
            syncs: Vec::new(),
            full: false,
            budget: std::time::Duration::from_secs(30),
            retry_base: None,
            started_at: None,
        },
        !quiet,
    )
    .await?;
    for report in &outcome.reports {
        output::line(report)?;
    }
    Ok(outcome.all_delivered())
}

/// What the streaming step showed.
struct StreamedChange {
    id: String,
    /// From the commit in the simulator to the destination's write.
    latency: Duration,
    report: sfsync_pipeline::report::RunReport,
}

/// Starts the simulator's Pub/Sub API, streams the contacts sync (`stream = true` in the demo
/// config) in-process exactly as `sfsync stream` does, commits one change, and times it from
/// the commit to the destination's write.
async fn stream_one_change(
    simulator: &SimulatorHandle,
    config: &Config,
    state: &Path,
) -> Result<StreamedChange> {
    let pubsub = simulator
        .start_pubsub(PubSubOptions::default())
        .await
        .context("cannot start the simulator's Pub/Sub API")?;
    // Resume at the simulator's first retained event (its replay position 0): the change
    // below is streamed however long the subscription takes to open, without waiting for it.
    FileReplayStore::new(state)
        .put(
            "contacts",
            &StoredReplay::new(
                &0u64.to_be_bytes(),
                &sfsync_pubsub::change_event_topic("Contact"),
                chrono::Utc::now(),
                None,
            ),
        )
        .await
        .context("cannot write the demo's replay id")?;
    let (delivered_tx, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let progress: ProgressFn = Arc::new(move |event| {
        if let Progress::Delivered { .. } = event {
            let _ = delivered_tx.send(Instant::now());
        }
    });
    let stream = tokio::spawn(stream_local(
        config.clone(),
        LocalStream {
            state_dir: state.to_path_buf(),
            endpoint: pubsub.url(),
            syncs: vec!["contacts".into()],
            max_events: Some(1),
        },
        progress,
        std::future::pending::<()>(),
    ));
    let (id, committed) = {
        let org = simulator.org();
        let mut org = org
            .lock()
            .map_err(|_| anyhow::anyhow!("simulator org lock poisoned"))?;
        let id = org
            .records("Contact")
            .iter()
            .filter(|r| r.get("IsDeleted") != Some(&json!(true)))
            .find_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
            .context("the demo org has no contact")?;
        let mut fields = Map::new();
        fields.insert("Title".into(), json!("Streamed by the demo"));
        org.update("Contact", &id, fields);
        (id, Instant::now())
    };
    let reports = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .map_err(|_| anyhow::anyhow!("the streamed change did not arrive within 30 s"))?
        .context("the stream task")??;
    pubsub.shutdown().await;
    let delivered_at = delivered
        .try_recv()
        .map_err(|_| anyhow::anyhow!("the stream ended without delivering the change"))?;
    let report = reports
        .into_iter()
        .next()
        .context("the stream made no run report")?;
    Ok(StreamedChange {
        id,
        latency: delivered_at.saturating_duration_since(committed),
        report,
    })
}
