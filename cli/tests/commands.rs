//! The commands a user runs one at a time, as binaries against real servers: `extract
//! --since` and `validate --online` against the Salesforce simulator, the `extract | map |
//! deliver` pipe into a Segment-shaped test server, and `runs` over a deployment's DynamoDB
//! table on moto. Expectations come from the org's records and the config, never from the
//! mapper.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sfsync_e2e::Receiver;
use sfsync_pipeline::report::{RunReport, RunStatus};
use sfsync_pipeline::state::StateStore;
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator, SimulatorHandle};

fn sfsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sfsync"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shared test config (`tests/fixtures/sfsync.toml`): Contacts to the receiver.
fn contacts_config() -> String {
    sfsync_e2e::fixtures::config(&["contacts"])
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    secrets: PathBuf,
    sim: SimulatorHandle,
    receiver: Receiver,
}

async fn setup(config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let org = Org::generate(&OrgSpec {
        contacts: 120,
        accounts: 20,
        account_contact_relations: 30,
        anchor: Utc::now() - chrono::Duration::seconds(120),
        ..OrgSpec::tiny()
    });
    let creds = Credentials::demo();
    let sim = Simulator::start(org, creds.clone(), Faults::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let receiver = Receiver::start().await;
    let config_path = dir.path().join("sfsync.toml");
    std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"sf_url": sim.url(), "sf_client_id": creds.client_id,
               "sf_client_secret": creds.client_secret,
               "receiver_url": receiver.url, "seg_key": "k"})
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        dir,
        config: config_path,
        secrets,
        sim,
        receiver,
    }
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `sfsync <command> --config … --secrets …` plus `args` (and `--state` for the
    /// commands that sign in to Salesforce, which keep a rotated refresh token there).
    fn command(&self, command: &str, args: &[&str]) -> Command {
        let mut cmd = sfsync();
        cmd.arg(command)
            .arg("--config")
            .arg(&self.config)
            .arg("--secrets")
            .arg(&self.secrets);
        if command != "deliver" {
            cmd.arg("--state").arg(self.state());
        }
        cmd.args(args);
        cmd
    }

    /// The org's live Contacts as (Id → record).
    fn contacts(&self) -> BTreeMap<String, Value> {
        let org = self.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")
            .into_iter()
            .filter_map(|r| Some((r["Id"].as_str()?.to_string(), r)))
            .collect()
    }
}

/// Runs a blocking command off the async runtime (the simulator serves on it meanwhile).
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Salesforce datetimes (`2024-01-01T00:00:00.000+0000`) and RFC 3339 alike.
fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `extract --since T` writes exactly the records modified at or after T: a strict part of
/// the org, chosen from the org's own modstamps.
#[tokio::test(flavor = "multi_thread")]
async fn extract_since_writes_only_the_records_modified_from_then_on() {
    let s = setup(&contacts_config()).await;
    let contacts = s.contacts();
    let mut stamps: Vec<DateTime<Utc>> = contacts
        .values()
        .map(|r| instant(r["SystemModstamp"].as_str().unwrap_or_default()))
        .collect();
    stamps.sort();
    let since = stamps[stamps.len() / 2];
    let want: BTreeSet<&str> = contacts
        .iter()
        .filter(|(_, r)| instant(r["SystemModstamp"].as_str().unwrap_or_default()) >= since)
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(
        !want.is_empty() && want.len() < contacts.len(),
        "the cut leaves some records out: {} of {}",
        want.len(),
        contacts.len()
    );

    let since_arg = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let out = output(s.command("extract", &["--sync", "contacts", "--since", &since_arg])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = json_lines(&out.stdout);
    let live: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["IsDeleted"] != json!(true))
        .filter_map(|r| r["Id"].as_str())
        .collect();
    assert_eq!(live, want, "live records extracted since {since_arg}");
    for r in &records {
        if let Some(stamp) = r["SystemModstamp"].as_str() {
            assert!(instant(stamp) >= since, "{r}");
        }
    }
}

/// `validate --online` signs in to the org and checks every sync against its describe: a
/// config the org serves is valid; a field the org lacks is named with its key, and the
/// command fails.
#[tokio::test(flavor = "multi_thread")]
async fn validate_online_checks_the_syncs_against_the_org() {
    let s = setup(&contacts_config()).await;
    let out = output(s.command("validate", &["--online"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("checked against the org"),
        "{}",
        text(&out.stdout)
    );

    let config = contacts_config();
    let misspelt = config.replacen("\"Email\"", "\"Emial\"", 1);
    assert_ne!(misspelt, config, "the fixture lists Email");
    std::fs::write(&s.config, &misspelt).unwrap_or_else(|e| panic!("{e}"));
    let out = output(s.command("validate", &["--online"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("problem(s) against the org"), "{stderr}");
    assert!(
        stderr.contains("syncs[0].fields[0]") && stderr.contains("Emial"),
        "names the key and the field:\n{stderr}"
    );
}

/// `sfsync extract | sfsync map | sfsync deliver`, through real OS pipes: every live Contact
/// arrives at the destination once, as an identify of its Id carrying its email, and every
/// Contact in the Recycle Bin once, as its delete.
#[tokio::test(flavor = "multi_thread")]
async fn extract_map_deliver_pipe_delivers_every_record() {
    let s = setup(&contacts_config()).await;
    let contacts = s.contacts();
    let (extract, map, deliver) = {
        let mut extract = s.command("extract", &["--sync", "contacts"]);
        let config = s.config.clone();
        let deliver = s.command("deliver", &["--destination", "seg"]);
        tokio::task::spawn_blocking(move || pipe(extract_stdout(&mut extract), &config, deliver))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for (name, out) in [("extract", &extract), ("map", &map), ("deliver", &deliver)] {
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }

    let calls: Vec<Value> = s
        .receiver
        .received()
        .iter()
        .filter(|r| r.status < 300 && r.path.ends_with("/v1/batch"))
        .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
        .collect();
    // Live Contacts become identifies; those in the Recycle Bin (the sync has `deletes`, so
    // extract reads them through queryAll) become the "User Deleted" event.
    let mut delivered: BTreeMap<String, Value> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    for call in &calls {
        let user = call["userId"].as_str().unwrap_or_default().to_string();
        let fresh = if call["type"] == json!("identify") {
            delivered.insert(user.clone(), call.clone()).is_none()
        } else {
            assert_eq!(call["event"], json!("User Deleted"), "{call}");
            deleted.insert(user.clone())
        };
        assert!(fresh, "{user} delivered twice");
    }
    assert_eq!(
        delivered.keys().collect::<Vec<_>>(),
        contacts.keys().collect::<Vec<_>>(),
        "one identify per live Contact"
    );
    for (id, record) in &contacts {
        if let Some(email) = record["Email"].as_str() {
            assert_eq!(delivered[id]["traits"]["email"], json!(email), "{id}");
        }
    }
    let org = s.sim.org();
    let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    let in_recycle_bin = org.count("Contact", true) - org.count("Contact", false);
    assert_eq!(
        deleted.len(),
        in_recycle_bin,
        "one delete per Contact in the Recycle Bin"
    );
    for id in &deleted {
        let record = org
            .record("Contact", id)
            .unwrap_or_else(|| panic!("{id} is in the org"));
        assert_eq!(record["IsDeleted"], json!(true), "{id}");
    }
}

/// `extract`'s stdout, for the next command of the pipe.
fn extract_stdout(extract: &mut Command) -> std::process::Child {
    extract
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn extract: {e}"))
}

/// `… | sfsync map --config CONFIG --sync contacts | deliver`; the outputs of all three.
fn pipe(
    mut extract: std::process::Child,
    config: &Path,
    mut deliver: Command,
) -> (Output, Output, Output) {
    let records = extract
        .stdout
        .take()
        .unwrap_or_else(|| panic!("extract stdout"));
    let mut map = sfsync()
        .args(["map", "--sync", "contacts", "--config"])
        .arg(config)
        .stdin(records)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn map: {e}"));
    let calls = map.stdout.take().unwrap_or_else(|| panic!("map stdout"));
    let deliver = deliver
        .stdin(calls)
        .output()
        .unwrap_or_else(|e| panic!("deliver: {e}"));
    let map = map
        .wait_with_output()
        .unwrap_or_else(|e| panic!("map: {e}"));
    let extract = extract
        .wait_with_output()
        .unwrap_or_else(|e| panic!("extract: {e}"));
    (extract, map, deliver)
}

/// `runs --table` reads a deployment's run reports from its DynamoDB table (moto): the
/// latest run of each sync, the failure's reason, and exit status 1 when one failed.
#[tokio::test(flavor = "multi_thread")]
async fn runs_reads_each_syncs_latest_run_from_dynamodb() {
    let sdk = sfsync_e2e::aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = sfsync_e2e::unique("runs");
    sfsync_e2e::state_table(&dynamo, &table).await;
    let store = sfsync_pipeline::state::dynamo::DynamoStore::new(dynamo, &table);

    let at = |minutes_ago: i64| Utc::now() - chrono::Duration::minutes(minutes_ago);
    let report = |id: &str, sync: &str, started: DateTime<Utc>, status: RunStatus| {
        let mut r = RunReport::new(id, sync, started);
        r.status = status;
        r.finished_at = Some(started + chrono::Duration::seconds(30));
        r.counts.extracted = 10;
        r.counts.delivered = 10;
        r
    };
    let mut failed = report("contacts-2", "contacts", at(10), RunStatus::Failed);
    failed.error = Some("Salesforce refused the credentials".into());
    for r in [
        report("contacts-1", "contacts", at(60), RunStatus::Complete),
        failed,
        report("leads-1", "leads", at(30), RunStatus::Complete),
    ] {
        store.put_run(&r).await.unwrap_or_else(|e| panic!("{e}"));
    }

    let runs = |json: bool| {
        let mut cmd = sfsync();
        cmd.args(["runs", "--table", &table])
            .env("AWS_ENDPOINT_URL", sfsync_e2e::moto_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", sfsync_e2e::REGION)
            .env_remove("AWS_PROFILE");
        if json {
            cmd.arg("--json");
        }
        output(cmd)
    };
    let out = runs(false).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table_text = text(&out.stdout);
    let row = |sync: &str| {
        table_text
            .lines()
            .find(|l| l.starts_with(sync) && !l.starts_with(&format!("{sync}:")))
            .unwrap_or_else(|| panic!("no row for {sync}:\n{table_text}"))
            .to_string()
    };
    assert!(row("contacts").contains("failed"), "{table_text}");
    assert!(row("leads").contains("complete"), "{table_text}");
    assert!(
        table_text.contains("contacts: Salesforce refused the credentials"),
        "{table_text}"
    );

    let out = runs(true).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let mut latest: Vec<(String, String)> = json_lines(&out.stdout)
        .iter()
        .map(|r| {
            (
                r["sync"].as_str().unwrap_or_default().to_string(),
                r["run_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    latest.sort();
    assert_eq!(
        latest,
        vec![
            ("contacts".to_string(), "contacts-2".to_string()),
            ("leads".to_string(), "leads-1".to_string())
        ]
    );
}
