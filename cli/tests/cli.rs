//! The `sfsync` command end to end: the binary, driven as a user would, against the
//! Salesforce simulator and a destination-shaped HTTP server.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sfsync_e2e::{Received, Receiver};
use sfsync_mapping::Config;
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

/// The shared end-to-end config (`tests/fixtures/sfsync.toml`) with a people and a
/// relationship sync.
static SYNC_CONFIG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sfsync_e2e::fixtures::config(&["contacts", "relations"]));

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
    std::fs::write(&config, SYNC_CONFIG.as_str()).unwrap_or_else(|e| panic!("{e}"));
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
        delivered_calls(&self.receiver.received())
    }

    /// The message ids of the delivered calls that carry the current version of every
    /// live record of a sync, as `sfsync_e2e::expected` writes down they must arrive (not
    /// computed by the mapper); a record no call carries counts as `missing …`.
    fn expected(&self, sync: &str, object: &str) -> HashSet<String> {
        let config = Config::parse(&SYNC_CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let calls = self.delivered();
        sfsync_e2e::expected::expected_ids(&config, sync, object, &self.sim, &calls)
    }
}

/// The calls of every batch the receiver accepted.
fn delivered_calls(received: &[Received]) -> Vec<Value> {
    received
        .iter()
        .filter(|r| r.status < 300 && r.path.ends_with("/v1/batch"))
        .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
        .collect()
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
    let s = setup(3000, Faults::default()).await;
    // Kill it once some, but not all, of the contacts went out: from 600 calls on, the
    // receiver holds every request, so the run cannot get further whatever the machine's
    // speed; the wait ends when 600 arrived or the run ends, no polling.
    let reached = |received: &[Received]| delivered_calls(received).len() >= 600;
    s.receiver.hold_when(reached);
    let mut child = s.sync_command().spawn().unwrap_or_else(|e| panic!("{e}"));
    tokio::select! {
        () = s.receiver.wait_until(reached) => {}
        status = child.wait() => panic!("the run ended before it could be killed: {status:?}"),
    }
    child.kill().await.unwrap_or_else(|e| panic!("{e}"));
    s.receiver.release();
    let partial = s.delivered().len();
    let want = s.expected("contacts", "Contact");
    assert!(partial < want.len(), "killed too late to prove anything");

    // The killed run's lease names a process that is gone: the rerun takes over at once.
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    let all = message_ids(&s.delivered());
    let got: HashSet<String> = all.iter().cloned().collect();
    // What must have arrived, matched against everything delivered by now.
    let want = s.expected("contacts", "Contact");
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
    for kind in ["identify", "track", "group", "delete", "merge"] {
        assert!(kinds.contains(kind), "no {kind} call in the demo output");
    }
    // Run 2 shows a Lead conversion and a Contact merge, each as a merge call.
    let causes: Vec<&str> = lines
        .iter()
        .filter(|c| c["type"] == "merge")
        .filter_map(|c| c["mergeCause"].as_str())
        .collect();
    assert!(causes.contains(&"conversion"), "{causes:?}");
    assert!(causes.contains(&"merge"), "{causes:?}");
    assert!(Path::new(&dir.path().join("demo/state")).exists());

    // The streaming step: one change, streamed and timed from commit to destination.
    let streamed_line = stdout
        .lines()
        .find(|l| l.contains("reached the destination") && l.contains("ms after the commit"))
        .unwrap_or_else(|| panic!("no streamed change in the demo: {stdout}"));
    let id = streamed_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{streamed_line}"));
    let streamed: Vec<&Value> = lines
        .iter()
        .filter(|c| c["userId"] == id && c["traits"]["title"] == "Streamed by the demo")
        .collect();
    // Streamed, and (unless run 2's edits changed it again) read once more by run 2's
    // polling: one messageId, so the destination deduplicates the copy.
    assert!(!streamed.is_empty(), "the streamed call is in {calls}");
    assert!(
        streamed
            .iter()
            .all(|c| c["messageId"] == streamed[0]["messageId"]),
        "{streamed:?}"
    );
    assert!(
        stdout.contains(", stream)"),
        "the streaming step's run report: {stdout}"
    );
    // Run 2 counts, for contacts, the changes made while the stream was stopped.
    let run2 = stdout
        .split("== Run 2")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    let unstreamed = run2
        .lines()
        .find(|l| l.trim_start().starts_with("unstreamed"))
        .unwrap_or_else(|| panic!("run 2 reports what the stream missed: {run2}"));
    let missed: u64 = unstreamed
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{unstreamed}"));
    assert!(missed >= 25, "{unstreamed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_at_three_points_loses_nothing_when_rerun() {
    let s = setup(3000, Faults::default()).await;
    // Kill a run once 300 calls arrived, rerun and kill it at 1200, again at 2100: each
    // rerun resumes from the checkpoint the killed one left. Once a target is reached the
    // receiver holds every further request, so the run is stopped right there whatever the
    // machine's speed; the wait ends when the target is reached or the run ends, no polling.
    let mut killed_at = Vec::new();
    for target in [300, 1200, 2100] {
        let reached = move |received: &[Received]| delivered_calls(received).len() >= target;
        s.receiver.hold_when(reached);
        let mut child = s.sync_command().spawn().unwrap_or_else(|e| panic!("{e}"));
        tokio::select! {
            () = s.receiver.wait_until(reached) => {}
            status = child.wait() => {
                panic!("the run ended before it could be killed at {target}: {status:?}")
            }
        }
        child.kill().await.unwrap_or_else(|e| panic!("{e}"));
        killed_at.push(s.delivered().len());
        s.receiver.release();
    }
    let before: HashSet<String> = message_ids(&s.delivered()).into_iter().collect();
    let want = s.expected("contacts", "Contact");
    assert!(
        !want.is_subset(&before),
        "killed too late to prove anything: {killed_at:?}"
    );

    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    let all = message_ids(&s.delivered());
    let got: HashSet<String> = all.iter().cloned().collect();
    // What must have arrived, matched against everything delivered by now.
    let want = s.expected("contacts", "Contact");
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

// ---- Newcomer polish (issue 17) ----

/// A stdout whose reader has already gone away, as after `| head -0`: every write to it
/// fails with EPIPE, so the broken-pipe path runs whatever the timing.
fn reader_gone() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("pipe: {e}"));
    drop(reader);
    Stdio::from(writer)
}

/// Runs `cmd` with its stdout's reader gone and `stdin` fed in from a thread (which may be
/// cut short when the command stops reading early).
fn run_into_closed_reader(mut cmd: Command, stdin: Vec<u8>) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(reader_gone())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let feeder = child.stdin.take().map(|mut input| {
        std::thread::spawn(move || {
            // The command may stop reading once its output is gone: not an error here.
            let _ = input.write_all(&stdin);
        })
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    out
}

/// No panic, no backtrace, no complaint about the pipe: the command ended quietly.
fn assert_ended_quietly(what: &str, out: &Output) {
    let err = text(&out.stderr);
    for noise in [
        "panicked",
        "Broken pipe",
        "backtrace",
        "cannot write to stdout",
    ] {
        assert!(!err.contains(noise), "{what}: {noise:?} on stderr:\n{err}");
    }
}

#[test]
fn commands_without_a_network_end_quietly_when_the_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = root();

    // validate: one line.
    let mut cmd = sfsync();
    cmd.args(["validate", "--config", "examples/sfsync.toml"]);
    let out = run_into_closed_reader(cmd, Vec::new());
    assert_ended_quietly("validate", &out);
    assert_eq!(out.status.code(), Some(0), "validate");

    // map: a long stream; it stops at the first call it cannot write, without a summary.
    let one = std::fs::read(root.join("examples/contacts.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    let input: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 5_000)
        .collect();
    let mut cmd = sfsync();
    cmd.args([
        "map",
        "--config",
        "examples/sfsync.toml",
        "--sync",
        "contacts",
    ]);
    let out = run_into_closed_reader(cmd, input);
    assert_ended_quietly("map", &out);
    assert_eq!(out.status.code(), Some(0), "map");
    assert!(
        !text(&out.stderr).contains("mapped"),
        "{}",
        text(&out.stderr)
    );

    // demo: the whole pipeline runs and saves its state; only the printout is lost.
    let demo_dir = dir.path().join("demo");
    let mut cmd = sfsync();
    cmd.args(["demo", "--quiet", "--dir"]).arg(&demo_dir);
    let out = run_into_closed_reader(cmd, Vec::new());
    assert_ended_quietly("demo", &out);
    assert_eq!(out.status.code(), Some(0), "demo");
    let calls =
        std::fs::read_to_string(demo_dir.join("calls.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    assert!(calls.lines().count() > 1000, "the demo ran to the end");

    // runs, as a table and as JSON lines, on the demo's state.
    for json in [false, true] {
        let mut cmd = sfsync();
        cmd.args(["runs", "--state"]).arg(demo_dir.join("state"));
        if json {
            cmd.arg("--json");
        }
        let out = run_into_closed_reader(cmd, Vec::new());
        assert_ended_quietly("runs", &out);
        assert_eq!(out.status.code(), Some(0), "runs (json: {json})");
    }

    // init writes its file and talks on stderr only; deliver reads stdin, reports on stderr.
    let mut cmd = sfsync();
    cmd.args(["init", "--config"])
        .arg(dir.path().join("new.toml"));
    let out = run_into_closed_reader(cmd, Vec::new());
    assert_ended_quietly("init", &out);
    assert_eq!(out.status.code(), Some(0), "init");

    let export = dir.path().join("export.jsonl");
    let deliver_config = dir.path().join("deliver.toml");
    std::fs::write(
        &deliver_config,
        format!(
            "[salesforce]\nlogin_url = \"https://x.my.salesforce.com\"\nauth = \"client_credentials\"\n\
             client_id = \"i\"\nclient_secret = \"s\"\n\n[[syncs]]\nname = \"contacts\"\nobject = \"Contact\"\n\
             kind = \"people\"\nuser_id = \"Id\"\n\n[[destinations]]\nname = \"export\"\n\
             type = \"file\"\npath = {:?}\n",
            export.display().to_string()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let call = r#"{"type":"identify","messageId":"00000000-0000-4000-8000-000000000001","timestamp":"2024-05-01T12:34:56.000Z","userId":"003A","traits":{},"context":{"sfsync":{"sync":"contacts","object":"Contact","kind":"people","recordId":"003A"}}}"#;
    let mut cmd = sfsync();
    cmd.args(["deliver", "--destination", "export", "--config"])
        .arg(&deliver_config);
    let out = run_into_closed_reader(cmd, format!("{call}\n").into_bytes());
    assert_ended_quietly("deliver", &out);
    assert_eq!(out.status.code(), Some(0), "deliver: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&export)
            .map(|s| s.lines().count())
            .ok(),
        Some(1)
    );

    // --help and --version.
    for flag in ["--help", "--version"] {
        let mut cmd = sfsync();
        cmd.arg(flag);
        let out = run_into_closed_reader(cmd, Vec::new());
        assert_ended_quietly(flag, &out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn extract_and_sync_into_a_closed_reader_stop_cleanly_and_keep_their_checkpoint() {
    let s = setup(900, Faults::default()).await;

    // extract keeps no state: it stops at the first record it cannot write.
    let mut cmd = sfsync();
    cmd.arg("extract")
        .arg("--config")
        .arg(&s.config)
        .arg("--secrets")
        .arg(&s.secrets)
        .args(["--sync", "contacts"]);
    let out = tokio::task::spawn_blocking(move || run_into_closed_reader(cmd, Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ended_quietly("extract", &out);
    assert_eq!(out.status.code(), Some(0), "extract: {}", text(&out.stderr));

    // sync prints only after the run has saved its state: the run is whole, the
    // checkpoint is at its end, and the exit status is the run's.
    let mut cmd = s.sync_command();
    cmd.stdout(reader_gone());
    // Not `output()`: tokio's would replace the closed stdout with a fresh pipe.
    let out = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ended_quietly("sync", &out);
    assert_eq!(out.status.code(), Some(0), "sync: {}", text(&out.stderr));
    let delivered: HashSet<String> = message_ids(&s.delivered()).into_iter().collect();
    let want = s.expected("contacts", "Contact");
    assert!(
        want.is_subset(&delivered),
        "{} contacts not delivered",
        want.difference(&delivered).count()
    );
    assert!(
        s.state
            .join("checkpoints")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no checkpoint saved"
    );
    // `sync 2>&1 | head`: stderr's reader is gone too, while progress lines are printed
    // (no --quiet). The run still ends normally, with its state saved.
    let edited = {
        let org = s.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.touch_random("Contact", 5, 11)
    };
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sfsync"));
    cmd.arg("sync")
        .arg("--config")
        .arg(&s.config)
        .arg("--secrets")
        .arg(&s.secrets)
        .arg("--state")
        .arg(&s.state)
        .stdout(reader_gone())
        .stderr(reader_gone())
        .kill_on_drop(true);
    let status = cmd.status().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "sync with stdout and stderr gone");
    // Every contact's current version went out, the edited ones' new versions included.
    let now: HashSet<String> = message_ids(&s.delivered()).into_iter().collect();
    let want_now = s.expected("contacts", "Contact");
    assert!(
        want_now.is_subset(&now),
        "{} current versions not delivered (edited: {edited:?})",
        want_now.difference(&now).count()
    );

    // The next run starts from that checkpoint: incremental, not everything again.
    let before = s.delivered().len();
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");
    assert!(
        s.delivered().len() - before < want.len(),
        "the run after the closed pipe re-sent everything ({} calls)",
        s.delivered().len() - before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_is_a_table_of_each_syncs_latest_run_and_fails_when_one_failed() {
    let s = setup(300, Faults::default()).await;
    let (ok, output) = s.sync().await;
    assert!(ok, "{output}");

    let runs = |json: bool| {
        let mut cmd = sfsync();
        cmd.args(["runs", "--state"]).arg(&s.state);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap_or_else(|e| panic!("{e}"))
    };
    let out = runs(false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per sync:\n{table}");
    for column in [
        "SYNC",
        "STATUS",
        "WINDOW (UTC)",
        "EXTRACTED",
        "DELIVERED",
        "DEAD",
        "DURATION",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    for sync in ["contacts", "relations"] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(sync))
            .unwrap_or_else(|| panic!("no row for {sync}:\n{table}"));
        assert!(row.contains("complete"), "{row}");
    }

    // A run that fails (Salesforce rejects the credentials): its logs, captured through a
    // pipe, carry no colour codes, and `runs` exits 1 naming the failure.
    let mut secrets: Value = serde_json::from_str(
        &std::fs::read_to_string(&s.secrets).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    secrets["sf_client_secret"] = json!("not-the-secret");
    std::fs::write(&s.secrets, secrets.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = s.sync_command();
    cmd.env_remove("NO_COLOR").env_remove("RUST_LOG");
    let failed = cmd.output().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!failed.status.success());
    let logs = text(&failed.stderr);
    assert!(logs.contains("ERROR"), "an error was logged:\n{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in piped logs:\n{logs:?}"
    );

    let out = runs(false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let contacts = lines
        .iter()
        .find(|l| l.starts_with("contacts"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(contacts.contains("failed"), "{table}");
    assert!(
        lines.iter().any(|l| l.starts_with("contacts: ")),
        "the failure's reason is printed:\n{table}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("contacts")).count(),
        2,
        "only the latest contacts run (plus its error line):\n{table}"
    );

    // --json: one report per sync, the latest; same exit status.
    let out = runs(true);
    assert_eq!(out.status.code(), Some(1));
    let reports: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports.iter().all(|r| r["status"] == json!("failed")),
        "{reports:?}"
    );

    // Nobody reading the table does not change the verdict.
    let mut cmd = sfsync();
    cmd.args(["runs", "--state"]).arg(&s.state);
    let out = run_into_closed_reader(cmd, Vec::new());
    assert_ended_quietly("runs", &out);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn misspelt_keys_syncs_and_destinations_get_a_suggestion() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("sfsync.toml");
    // No references: every command below gets as far as the name check with no secrets.
    let valid = "[salesforce]\nlogin_url = \"http://127.0.0.1:9\"\nauth = \"client_credentials\"\n\
                 client_id = \"id\"\nclient_secret = \"s\"\n\n[[syncs]]\nname = \"contacts\"\n\
                 object = \"Contact\"\nkind = \"people\"\nuser_id = \"Id\"\n\n[[destinations]]\n\
                 name = \"export\"\ntype = \"file\"\npath = \"out.jsonl\"\n";
    std::fs::write(&config, valid.replace("client_secret", "client_sercet"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = sfsync()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 5: salesforce.client_sercet"), "{err}");
    assert!(err.contains("did you mean \"client_secret\"?"), "{err}");

    std::fs::write(&config, valid).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = sfsync();
    cmd.args(["map", "--sync", "contcts", "--config"])
        .arg(&config);
    let out = run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no sync named \"contcts\"")
            && text(&out.stderr).contains("did you mean \"contacts\"?"),
        "{}",
        text(&out.stderr)
    );
    let state = dir.path().join("state");
    let commands: [Vec<&std::ffi::OsStr>; 2] = [
        ["sync", "--quiet", "--sync", "contcts", "--state"]
            .into_iter()
            .map(std::ffi::OsStr::new)
            .chain([state.as_os_str()])
            .collect(),
        ["extract", "--sync", "contcts"]
            .into_iter()
            .map(std::ffi::OsStr::new)
            .collect(),
    ];
    for args in commands {
        let out = sfsync()
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("did you mean \"contacts\"?"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!state.exists(), "a misspelt sync starts nothing");
    let mut cmd = sfsync();
    cmd.args(["deliver", "--destination", "exprt", "--config"])
        .arg(&config);
    let out = run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean \"export\"?"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn map_versions_records_from_elsewhere_by_last_modified_date() {
    // JSON exported by another tool: the user's own fields, no SystemModstamp.
    let input = concat!(
        r#"{"Id":"003A","LastModifiedDate":"2024-05-03T10:00:00.000+0000","Email":"a@example.com","FirstName":"A","LastName":"One"}"#,
        "\n",
        r#"{"Id":"003B","LastModifiedDate":"2024-05-04T10:00:00.000+0000","Email":"b@example.com","FirstName":"B","LastName":"Two"}"#,
        "\n",
        r#"{"Id":"003C","Email":"c@example.com"}"#,
        "\n",
    );
    let map = || {
        let mut cmd = sfsync();
        cmd.args([
            "map",
            "--config",
            "examples/sfsync.toml",
            "--sync",
            "contacts",
        ]);
        run_with_stdin(cmd, input.as_bytes())
    };
    let out = map();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["timestamp"], json!("2024-05-03T10:00:00.000Z"));
    assert_eq!(calls[1]["userId"], json!("003B"));
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("LastModifiedDate serves as the record version")
            .count(),
        1,
        "said once:\n{err}"
    );
    assert!(
        err.contains("skipped line 3")
            && err.contains("include SystemModstamp (or LastModifiedDate)"),
        "{err}"
    );
    // The same file maps to the same messageIds every time.
    let again: Vec<Value> = text(&map().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(again[0]["messageId"], calls[0]["messageId"]);
    assert_eq!(again[1]["messageId"], calls[1]["messageId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_captured_into_a_file_or_a_pipe_carry_no_colour_codes() {
    let s = setup(50, Faults::default()).await;
    // Salesforce refuses the credentials: the run fails and logs an ERROR line.
    let mut secrets: Value = serde_json::from_str(
        &std::fs::read_to_string(&s.secrets).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    secrets["sf_client_secret"] = json!("not-the-secret");
    std::fs::write(&s.secrets, secrets.to_string()).unwrap_or_else(|e| panic!("{e}"));

    // Into a pipe.
    let mut cmd = s.sync_command();
    cmd.env_remove("NO_COLOR").env_remove("RUST_LOG");
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let piped = text(&out.stderr);
    assert!(piped.contains("ERROR"), "an error was logged:\n{piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "escape codes in a pipe: {piped:?}"
    );

    // Into a file (`2> sync.log`).
    let log = s.state.with_file_name("sync.log");
    let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = s.sync_command();
    cmd.env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stderr(Stdio::from(file));
    let status = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!status.success());
    let logged = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}"));
    assert!(logged.contains("ERROR"), "an error was logged:\n{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "escape codes in a file: {logged:?}"
    );
}

/// `sfsync stream` as a user runs it: against the simulator's Pub/Sub API, a committed change
/// reaches the destination; `--max-events` ends it with the replay id stored, and the next
/// start resumes after it — the change made while it was stopped arrives, the first one is
/// not sent again.
#[tokio::test(flavor = "multi_thread")]
async fn stream_delivers_a_committed_change_and_resumes_after_its_replay_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let creds = Credentials::demo();
    let sim = Simulator::start(
        Org::generate(&OrgSpec::tiny()),
        creds.clone(),
        Faults::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let pubsub = sim
        .start_pubsub(sfsync_simulator::PubSubOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let receiver = Receiver::start().await;
    // The shared fixture's contacts sync, streamed, with the two fields the test edits.
    let config = dir.path().join("sfsync.toml");
    let toml = sfsync_e2e::fixtures::Fixture::syncs(&["contacts"])
        .fields("contacts", &["Email", "Title"])
        .sync("contacts", "stream", true)
        .without("contacts", "deletes")
        .text();
    std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        sfsync_e2e::fixtures::secrets(&sim.url(), &receiver.url).to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    // Where a stream resumes is its stored replay id: position 0 is the simulator's "before
    // every event", so the first start streams the change below however long it takes to
    // subscribe (no wait for the subscription).
    let replays = sfsync_stream::FileReplayStore::new(&state);
    {
        use sfsync_stream::ReplayStore;
        replays
            .put(
                "contacts",
                &sfsync_stream::StoredReplay::new(
                    &0u64.to_be_bytes(),
                    "/data/ContactChangeEvent",
                    chrono::Utc::now(),
                    None,
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let stream = || {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sfsync"));
        cmd.arg("stream")
            .arg("--config")
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .arg("--state")
            .arg(&state)
            .args(["--max-events", "1", "--seconds", "60", "--quiet"])
            .arg("--pubsub-endpoint")
            .arg(pubsub.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let live: Vec<String> = {
        let org = sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")
            .iter()
            .filter(|r| r["IsDeleted"] != true)
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .take(2)
            .collect()
    };
    let edit = |id: &str, title: &str| {
        let org = sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let mut fields = serde_json::Map::new();
        fields.insert("Title".into(), json!(title));
        assert!(org.update("Contact", id, fields));
    };
    let titles = |receiver: &Receiver| -> Vec<(String, String)> {
        receiver
            .received()
            .iter()
            .filter(|r| r.status < 300 && r.path.ends_with("/v1/batch"))
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .map(|c| {
                (
                    c["userId"].as_str().unwrap_or("").to_string(),
                    c["traits"]["title"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };

    let first = stream().spawn().unwrap_or_else(|e| panic!("{e}"));
    edit(&live[0], "Streamed while running");
    let out = first
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert_eq!(
        titles(&receiver),
        vec![(live[0].clone(), "Streamed while running".to_string())],
        "{said}"
    );
    assert!(said.contains("sync contacts"), "the run report: {said}");
    use sfsync_stream::ReplayStore;
    let stored = replays
        .get("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no replay id stored: {said}"));
    assert_eq!(
        stored.bytes().ok(),
        Some(1u64.to_be_bytes().to_vec()),
        "the replay id of the delivered event"
    );

    // Stopped: a change it does not see now. The restart resumes after the stored id.
    edit(&live[1], "Changed while stopped");
    let out = stream().output().await.unwrap_or_else(|e| panic!("{e}"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert_eq!(
        titles(&receiver),
        vec![
            (live[0].clone(), "Streamed while running".to_string()),
            (live[1].clone(), "Changed while stopped".to_string()),
        ],
        "nothing lost, nothing repeated: {said}"
    );
    let stored = replays
        .get("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(stored.bytes().ok(), Some(2u64.to_be_bytes().to_vec()));
}
