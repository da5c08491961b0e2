//! The `sfsync` command end to end: the binary, driven as a user would, against the
//! Salesforce simulator and a destination-shaped HTTP server.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sfsync_e2e::Receiver;
use sfsync_mapping::{Config, map_record};
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator, SimulatorHandle};

fn sfsync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfsync"));
    cmd.current_dir(root());
    cmd
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_accepts_the_example_and_lists_every_problem_with_its_line() {
    let ok = sfsync()
        .args(["validate", "--config", "examples/sfsync.toml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("valid (6 syncs, 8 destinations)"),
        "{}",
        text(&ok.stdout)
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[salesforce]\nlogin_url = \"https://x.my.salesforce.com\"\nauth = \"client_credentials\"\nclient_id = \"id\"\nclient_secret = \"s\"\n\n[[syncs]]\nname = \"c\"\nobject = \"Contact\"\nkind = \"objects\"\nfields = [\"Email\", \"Email\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = sfsync()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("line 7: syncs[0].group_id: required for kind = \"objects\""),
        "{err}"
    );
    assert!(
        err.contains("line 11: syncs[0].fields[1]: \"Email\" is listed twice"),
        "{err}"
    );

    // With a secrets file, missing secrets are named (and values never printed).
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        r#"{"sf_client_id": "abc", "sf_client_secret": "TOPSECRET"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = sfsync()
        .args(["validate", "--config", "examples/sfsync.toml", "--secrets"])
        .arg(&secrets)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("secret \"cio_api_key\" is not in the secrets"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRET"));
}

#[test]
fn map_turns_the_example_records_into_calls_and_reports_skips() {
    let input =
        std::fs::read(root().join("examples/contacts.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = sfsync();
    cmd.args([
        "map",
        "--config",
        "examples/sfsync.toml",
        "--sync",
        "contacts",
    ]);
    let out = run_with_stdin(cmd, &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0]["type"], json!("identify"));
    assert_eq!(calls[0]["traits"]["firstName"], json!("Ada"));
    assert_eq!(calls[0]["traits"]["created_at"], json!(1698915600));
    assert_eq!(
        calls[0]["traits"]["Account.Name"],
        json!("Analytical Engines Ltd")
    );
    assert_eq!(calls[1]["traits"]["Account.Name"], Value::Null);
    assert_eq!(calls[2]["type"], json!("delete"));
    let err = text(&out.stderr);
    assert!(
        err.contains("0035e00000AbCdHAAV") && err.contains("SystemModstamp"),
        "{err}"
    );

    // A line that is not JSON stops with its line number.
    let mut cmd = sfsync();
    cmd.args([
        "map",
        "--config",
        "examples/sfsync.toml",
        "--sync",
        "contacts",
    ]);
    let out = run_with_stdin(
        cmd,
        b"{\"Id\":\"003\",\"SystemModstamp\":\"2024-01-01T00:00:00Z\"}\n{not json\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("stdin line 2: not valid JSON"),
        "{}",
        text(&out.stderr)
    );

    // map needs no secrets, and an unknown sync is named.
    let mut cmd = sfsync();
    cmd.args(["map", "--config", "examples/sfsync.toml", "--sync", "nope"]);
    let out = run_with_stdin(cmd, b"");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no sync named \"nope\""));
}

const SYNC_CONFIG: &str = r#"
[salesforce]
login_url = "${secret:sf_url}"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"
page_size = 200

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "LastName", "Account.Name"]
deletes = true

[[syncs]]
name = "relations"
object = "AccountContactRelation"
kind = "relationships"
user_id = "ContactId"
group_id = "AccountId"
object_type_id = "1"
fields = ["IsDirect", "Roles"]

[[destinations]]
name = "seg"
type = "segment"
endpoint = "${secret:receiver_url}"
write_key = "${secret:seg_key}"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    secrets: PathBuf,
    state: PathBuf,
    sim: SimulatorHandle,
    receiver: Receiver,
}

async fn setup(contacts: usize, faults: Faults) -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let org = Org::generate(&OrgSpec {
        contacts,
        accounts: 40,
        account_contact_relations: 60,
        tie_block: 300,
        anchor: chrono::Utc::now() - chrono::Duration::seconds(120),
        ..OrgSpec::tiny()
    });
    let creds = Credentials::demo();
    let sim = Simulator::start(org, creds.clone(), faults)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let receiver = Receiver::start().await;
    let config = dir.path().join("sfsync.toml");
    std::fs::write(&config, SYNC_CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        json!({"sf_url": sim.url(), "sf_client_id": creds.client_id, "sf_client_secret": creds.client_secret,
               "receiver_url": receiver.url, "seg_key": "k"})
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    Setup {
        _dir: dir,
        config,
        secrets,
        state,
        sim,
        receiver,
    }
}

impl Setup {
    fn sync_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sfsync"));
        cmd.arg("sync")
            .arg("--config")
            .arg(&self.config)
            .arg("--secrets")
            .arg(&self.secrets)
            .arg("--state")
            .arg(&self.state)
            .arg("--quiet")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn sync(&self) -> (bool, String) {
        let out = self
            .sync_command()
            .output()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.success(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn delivered(&self) -> Vec<Value> {
        self.receiver
            .received()
            .iter()
            .filter(|r| r.status < 300 && r.path.ends_with("/v1/batch"))
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn expected(&self, sync: &str, object: &str) -> HashSet<String> {
        let config = Config::parse(SYNC_CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let sync = config
            .sync(sync)
            .cloned()
            .unwrap_or_else(|| panic!("{sync}"));
        let org = self.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records(object)
            .into_iter()
            .filter_map(|r| map_record(&sync, r).ok())
            .map(|c| c.message_id)
            .collect()
    }
}

fn message_ids(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| c["messageId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_delivers_everything_then_only_changes() {
    let s = setup(900, Faults::default()).await;
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    assert!(output.contains("sync contacts"), "{output}");
    let first = message_ids(&s.delivered());
    let unique: HashSet<String> = first.iter().cloned().collect();
    assert_eq!(first.len(), unique.len(), "no duplicates in a full run");
    let want = s.expected("contacts", "Contact");
    assert!(want.len() >= 890);
    assert!(
        want.is_subset(&unique),
        "{} contacts missing",
        want.difference(&unique).count()
    );
    assert!(
        s.expected("relations", "AccountContactRelation")
            .is_subset(&unique)
    );
    // Relationships arrive as group calls with both ids and their attributes.
    let rel = s
        .delivered()
        .into_iter()
        .find(|c| c["type"] == json!("group") && c["userId"].is_string())
        .unwrap_or_else(|| panic!("no relationship call"));
    assert!(rel["groupId"].is_string());
    assert!(rel["traits"]["relationshipAttributes"].is_object(), "{rel}");

    // Nothing changed: the second run sends at most the look-back overlap.
    let before = s.delivered().len();
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    // Edit five contacts: the third run carries their new versions.
    let touched = {
        let org = s.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.touch_random("Contact", 5, 3)
    };
    let mid = s.delivered().len();
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    let third: Vec<Value> = s.delivered().split_off(mid);
    let users: HashSet<&str> = third.iter().filter_map(|c| c["userId"].as_str()).collect();
    for id in &touched {
        assert!(
            users.contains(id.as_str()),
            "edited {id} not sent: {output}"
        );
    }
    assert!(
        mid - before < 900,
        "the second run was incremental ({} calls)",
        mid - before
    );
    assert!(
        third.len() < 900,
        "the third run was incremental ({} calls)",
        third.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_part_way_loses_nothing_when_rerun() {
    let faults = Faults {
        latency: Some(std::time::Duration::from_millis(40)),
        ..Faults::default()
    };
    let s = setup(3000, faults).await;
    let mut child = s.sync_command().spawn().unwrap_or_else(|e| panic!("{e}"));
    // Kill it once some, but not all, of the contacts went out.
    loop {
        if s.delivered().len() >= 600 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before it could be killed: {status}");
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().await.unwrap_or_else(|e| panic!("{e}"));
    let partial = s.delivered().len();
    let want = s.expected("contacts", "Contact");
    assert!(partial < want.len(), "killed too late to prove anything");

    // The killed run's lease names a process that is gone: the rerun takes over at once.
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    let all = message_ids(&s.delivered());
    let got: HashSet<String> = all.iter().cloned().collect();
    assert!(
        want.is_subset(&got),
        "{} records lost",
        want.difference(&got).count()
    );
    // Duplicates only from what was delivered but not yet checkpointed (at most a page per
    // sync, plus the look-back overlap).
    let duplicates = all.len() - got.len();
    assert!(duplicates <= partial, "{duplicates} duplicates");
}

#[test]
fn demo_runs_from_a_clean_directory() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = sfsync()
        .args(["demo", "--quiet", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Run 1") && stdout.contains("Run 2"),
        "{stdout}"
    );
    let calls = std::fs::read_to_string(dir.path().join("demo/calls.jsonl"))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> = calls
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(lines.len() > 1000, "{} calls", lines.len());
    let kinds: HashSet<&str> = lines.iter().filter_map(|c| c["type"].as_str()).collect();
    for kind in ["identify", "track", "group", "delete"] {
        assert!(kinds.contains(kind), "no {kind} call in the demo output");
    }
    assert!(Path::new(&dir.path().join("demo/state")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_at_three_points_loses_nothing_when_rerun() {
    let faults = Faults {
        latency: Some(std::time::Duration::from_millis(40)),
        ..Faults::default()
    };
    let s = setup(3000, faults).await;
    let want = s.expected("contacts", "Contact");
    // Kill a run once 300 calls arrived, rerun and kill it at 1200, again at 2100: each
    // rerun resumes from the checkpoint the killed one left.
    let mut killed_at = Vec::new();
    for target in [300, 1200, 2100] {
        let mut child = s.sync_command().spawn().unwrap_or_else(|e| panic!("{e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.delivered().len() < target {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the run ended before it could be killed at {target}: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no progress to {target}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.kill().await.unwrap_or_else(|e| panic!("{e}"));
        killed_at.push(s.delivered().len());
    }
    let before: HashSet<String> = message_ids(&s.delivered()).into_iter().collect();
    assert!(
        !want.is_subset(&before),
        "killed too late to prove anything: {killed_at:?}"
    );

    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    let all = message_ids(&s.delivered());
    let got: HashSet<String> = all.iter().cloned().collect();
    assert!(
        want.is_subset(&got),
        "{} records lost after kills at {killed_at:?}",
        want.difference(&got).count()
    );
    // Each kill repeats at most what was delivered but not yet checkpointed (the page in
    // flight, 200) plus the look-back re-read (a tie block of 300 at the checkpoint): far
    // less than restarting from scratch would (300 + 1200 + 2100).
    let duplicates = all.len() - got.len();
    assert!(
        duplicates <= killed_at.len() * (200 + 300),
        "{duplicates} duplicates after kills at {killed_at:?}"
    );
}
