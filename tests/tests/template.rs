//! Invariants of the SAM template (`infra/template.yaml`) and of the example events
//! (`infra/events/*.json`).
//!
//! Each check returns the problems it finds, as sentences naming the resources. The template
//! must have none; and every test also breaks a copy of the template on purpose and expects
//! the check to report it, so that no check can pass by finding nothing to look at.
//!
//! The template uses CloudFormation's short-form tags (`!Ref`, `!GetAtt`, `!Sub`, …), which
//! serde_yaml reads as tagged values: `normalize` rewrites them into the long form
//! (`{"Ref": …}`, `{"Fn::GetAtt": [resource, attribute]}`) so the checks see one shape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Map, Value, json};
use sfsync_extract::ExtractInput;
use sfsync_mapping::Config;
use sfsync_pipeline::deliver::decode_delivery;
use sfsync_pipeline::map::map_calls;
use sfsync_pipeline::message::{RecordsMessage, decode};
use sfsync_stream_function::ScheduledInput;

// ---------------------------------------------------------------------------------------
// Reading the template
// ---------------------------------------------------------------------------------------

fn infra() -> PathBuf {
    sfsync_e2e::workspace_root().join("infra")
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn template() -> Value {
    let path = infra().join("template.yaml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    normalize(yaml)
}

fn single(key: impl Into<String>, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Value::Object(map)
}

/// YAML → JSON, with CloudFormation's short-form tags in their long form.
fn normalize(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => json!(i),
            (None, Some(u), _) => json!(u),
            (None, None, f) => json!(f),
        },
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, normalize(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = normalize(tagged.value);
            match name {
                "Ref" | "Condition" => single(name, value),
                // `!GetAtt Resource.Attribute` is the string form of ["Resource", "Attribute"].
                "GetAtt" => match value {
                    Value::String(s) => match s.split_once('.') {
                        Some((resource, attribute)) => {
                            single("Fn::GetAtt", json!([resource, attribute]))
                        }
                        None => single("Fn::GetAtt", Value::String(s)),
                    },
                    other => single("Fn::GetAtt", other),
                },
                _ => single(format!("Fn::{name}"), value),
            }
        }
    }
}

#[test]
fn short_form_tags_become_the_long_form() {
    let yaml = "a: !Ref Queue\nb: !GetAtt Queue.Arn\nc: !Sub '${Queue}-x'\nd: !If [Cond, !Ref X, !Ref AWS::NoValue]\ne: !Condition Cond\n";
    let value = normalize(serde_yaml::from_str(yaml).unwrap());
    assert_eq!(
        value,
        json!({
            "a": {"Ref": "Queue"},
            "b": {"Fn::GetAtt": ["Queue", "Arn"]},
            "c": {"Fn::Sub": "${Queue}-x"},
            "d": {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]},
            "e": {"Condition": "Cond"},
        })
    );
}

/// The logical ids (resources and parameters) a value refers to: `Ref`, `Fn::GetAtt` and
/// the variables of `Fn::Sub`. Pseudo parameters (`AWS::…`) are left out.
fn refs(value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_refs(value, &mut out);
    out
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(name))) = (map.len(), map.get("Ref")) {
                insert_logical(name, out);
                return;
            }
            if let Some(att) = map.get("Fn::GetAtt") {
                match att {
                    Value::Array(parts) => {
                        if let Some(Value::String(resource)) = parts.first() {
                            insert_logical(resource, out);
                        }
                    }
                    Value::String(s) => insert_logical(s.split('.').next().unwrap_or(s), out),
                    _ => {}
                }
                return;
            }
            if let Some(sub) = map.get("Fn::Sub") {
                match sub {
                    Value::String(text) => sub_variables(text, &BTreeSet::new(), out),
                    Value::Array(parts) => {
                        let locals: BTreeSet<String> = parts
                            .get(1)
                            .and_then(Value::as_object)
                            .map(|vars| vars.keys().cloned().collect())
                            .unwrap_or_default();
                        if let Some(Value::String(text)) = parts.first() {
                            sub_variables(text, &locals, out);
                        }
                        if let Some(vars) = parts.get(1) {
                            collect_refs(vars, out);
                        }
                    }
                    _ => {}
                }
                return;
            }
            for v in map.values() {
                collect_refs(v, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_refs(v, out);
            }
        }
        _ => {}
    }
}

fn insert_logical(name: &str, out: &mut BTreeSet<String>) {
    if !name.starts_with("AWS::") {
        out.insert(name.to_string());
    }
}

fn sub_variables(text: &str, locals: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let var = &after[..end];
        // `${!Literal}` is not a variable.
        if !var.starts_with('!') {
            let name = var.split('.').next().unwrap_or(var);
            if !locals.contains(name) {
                insert_logical(name, out);
            }
        }
        rest = &after[end + 1..];
    }
}

#[test]
fn refs_finds_ref_getatt_and_sub_variables() {
    let value = json!({
        "a": {"Ref": "Queue"},
        "b": [{"Fn::GetAtt": ["Table", "Arn"]}, {"Ref": "AWS::Region"}],
        "c": {"Fn::Sub": "arn:${AWS::Partition}:x:${Bucket.Arn}/${!Literal}"},
        "d": {"Fn::Sub": ["${name}-${Other}", {"name": {"Ref": "Param"}}]},
        "e": {"Fn::If": ["Cond", {"Ref": "Secret"}, {"Ref": "SecretArn"}]},
    });
    let expected: BTreeSet<String> = [
        "Queue",
        "Table",
        "Bucket",
        "Other",
        "Param",
        "Secret",
        "SecretArn",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(refs(&value), expected);
}

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"]
        .as_object()
        .expect("the template has Resources")
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn is_type(t: &Value, id: &str, kind: &str) -> bool {
    t["Resources"].get(id).is_some_and(|r| r["Type"] == kind)
}

fn functions(t: &Value) -> Vec<(&str, &Value)> {
    resources_of(t, "AWS::Serverless::Function")
}

/// A function property, or else the one in Globals.
fn function_prop<'a>(t: &'a Value, function: &'a Value, key: &str) -> Option<&'a Value> {
    function["Properties"]
        .get(key)
        .or_else(|| t["Globals"]["Function"].get(key))
}

/// Environment variables: Globals, then the function's own.
fn env_vars(t: &Value, function: &Value) -> Map<String, Value> {
    let mut vars = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(own) = function["Properties"]["Environment"]["Variables"].as_object() {
        vars.extend(own.clone());
    }
    vars
}

fn env_refs(t: &Value, function: &Value, name: &str) -> BTreeSet<String> {
    env_vars(t, function)
        .get(name)
        .map(refs)
        .unwrap_or_default()
}

fn binary(function: &Value) -> Option<&str> {
    function["Metadata"]["BuildProperties"]["Binary"].as_str()
}

fn function_by_binary<'a>(t: &'a Value, name: &str) -> Option<(&'a str, &'a Value)> {
    functions(t)
        .into_iter()
        .find(|(_, f)| binary(f) == Some(name))
}

fn as_u64(value: Option<&Value>) -> Option<u64> {
    value.and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

/// The smallest value a number can take: itself, or the MinValue of the parameter it
/// refers to.
fn min_value(t: &Value, value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if let Some(n) = as_u64(Some(value)) {
        return Some(n);
    }
    let name = value.get("Ref")?.as_str()?;
    as_u64(t["Parameters"][name].get("MinValue"))
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

struct SqsSource<'a> {
    function: &'a str,
    event: &'a str,
    queue: Option<String>,
    properties: &'a Value,
}

/// Every SQS event source of every function.
fn sqs_sources(t: &Value) -> Vec<SqsSource<'_>> {
    let mut out = Vec::new();
    for (id, function) in functions(t) {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] == "SQS" {
                let queue_refs = refs(&event["Properties"]["Queue"]);
                out.push(SqsSource {
                    function: id,
                    event: name,
                    queue: (queue_refs.len() == 1)
                        .then(|| queue_refs.into_iter().next().unwrap_or_default()),
                    properties: &event["Properties"],
                });
            }
        }
    }
    out
}

fn event_queues(t: &Value, function: &str) -> BTreeSet<String> {
    sqs_sources(t)
        .into_iter()
        .filter(|s| s.function == function)
        .filter_map(|s| s.queue)
        .collect()
}

/// The dead-letter queue a queue's RedrivePolicy names.
fn redrive_target(t: &Value, queue: &str) -> BTreeSet<String> {
    refs(&t["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
}

fn assert_clean(check: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{check}: the template has problems:\n{}",
        problems.join("\n")
    );
}

fn assert_reports(check: &str, problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "{check} should report a problem mentioning {needle:?}, got {problems:#?}"
    );
}

/// A copy of the template with `edit` applied at a JSON pointer.
fn edited(t: &Value, pointer: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut copy = t.clone();
    edit(
        copy.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the template has no {pointer}")),
    );
    copy
}

fn without(t: &Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
    edited(t, parent, |p| {
        p.as_object_mut()
            .and_then(|o| o.remove(key))
            .unwrap_or_else(|| panic!("the template has no {pointer}"));
    })
}

fn id_of(t: &Value, binary_name: &str) -> String {
    function_by_binary(t, binary_name)
        .unwrap_or_else(|| panic!("no function builds {binary_name}"))
        .0
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Build: binaries, build method, CodeUri
// ---------------------------------------------------------------------------------------

/// `[[bin]]` names of a Cargo manifest (a line scan: the manifests are plain).
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            names.push(value.trim().trim_matches('"').to_string());
        }
    }
    names
}

#[test]
fn bin_names_reads_only_bin_sections() {
    let manifest = "[package]\nname = \"pkg\"\n\n[lib]\nname = \"lib\"\n\n[[bin]]\nname = \"one\"\npath = \"src/main.rs\"\n\n[[bin]]\npath = \"src/two.rs\"\nname = \"two\"\n\n[dependencies]\nname = \"no\"\n";
    assert_eq!(bin_names(manifest), vec!["one", "two"]);
}

/// Every `[[bin]]` of the crates under `functions/`.
fn workspace_function_bins() -> BTreeSet<String> {
    let dir = sfsync_e2e::workspace_root().join("functions");
    let mut bins = BTreeSet::new();
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
    {
        let manifest = entry.expect("a directory entry").path().join("Cargo.toml");
        if manifest.is_file() {
            bins.extend(bin_names(&read(&manifest)));
        }
    }
    bins
}

fn check_build(t: &Value, bins: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let root = sfsync_e2e::workspace_root()
        .canonicalize()
        .expect("the workspace root exists");
    let mut built = BTreeMap::<String, Vec<&str>>::new();
    if functions(t).is_empty() {
        problems.push("the template has no AWS::Serverless::Function".to_string());
    }
    for (id, function) in functions(t) {
        if function["Metadata"]["BuildMethod"] != "rust-cargolambda" {
            problems.push(format!(
                "{id}: Metadata.BuildMethod must be rust-cargolambda"
            ));
        }
        match binary(function) {
            Some(name) if bins.contains(name) => {
                built.entry(name.to_string()).or_default().push(id)
            }
            Some(name) => problems.push(format!(
                "{id}: BuildProperties.Binary {name:?} is not a [[bin]] of the workspace ({bins:?})"
            )),
            None => problems.push(format!("{id}: Metadata.BuildProperties.Binary is missing")),
        }
        // Per-crate CodeUri recompiles every dependency once per function.
        match function_prop(t, function, "CodeUri").and_then(Value::as_str) {
            Some(uri) => {
                let dir = infra().join(uri).canonicalize().ok();
                if dir.as_deref() != Some(root.as_path()) {
                    problems.push(format!(
                        "{id}: CodeUri {uri:?} must be the workspace root (\"..\" from infra/)"
                    ));
                }
            }
            None => problems.push(format!(
                "{id}: CodeUri must be a local path (the workspace root)"
            )),
        }
        let expect = [
            ("Runtime", json!("provided.al2023")),
            ("Handler", json!("bootstrap")),
            ("Architectures", json!(["arm64"])),
        ];
        for (key, want) in expect {
            if function_prop(t, function, key) != Some(&want) {
                problems.push(format!("{id}: {key} must be {want}"));
            }
        }
    }
    for (name, ids) in &built {
        if ids.len() > 1 {
            problems.push(format!("{name} is deployed by several functions: {ids:?}"));
        }
    }
    for name in bins {
        if !built.contains_key(name) {
            problems.push(format!(
                "the workspace binary {name} is deployed by no function"
            ));
        }
    }
    problems
}

#[test]
fn every_binary_is_a_workspace_bin_built_from_the_workspace_root() {
    let t = template();
    let bins = workspace_function_bins();
    assert!(
        bins.contains("sfsync-extract")
            && bins.contains("sfsync-map")
            && bins.contains("sfsync-deliver")
            && bins.contains("sfsync-stream-function"),
        "{bins:?}"
    );
    assert_clean("build", check_build(&t, &bins));

    let map = id_of(&t, "sfsync-map");
    let broken = edited(
        &t,
        &format!("/Resources/{map}/Metadata/BuildProperties/Binary"),
        |b| *b = json!("sfsync-mapper"),
    );
    assert_reports(
        "build",
        check_build(&broken, &bins),
        "\"sfsync-mapper\" is not a [[bin]]",
    );
    assert_reports(
        "build",
        check_build(&broken, &bins),
        "sfsync-map is deployed by no function",
    );

    let broken = edited(&t, &format!("/Resources/{map}/Properties"), |p| {
        p["CodeUri"] = json!("../functions/map");
    });
    assert_reports(
        "build",
        check_build(&broken, &bins),
        "must be the workspace root",
    );

    let broken = edited(&t, &format!("/Resources/{map}/Metadata"), |m| {
        m["BuildMethod"] = json!("makefile")
    });
    assert_reports("build", check_build(&broken, &bins), "rust-cargolambda");
}

// ---------------------------------------------------------------------------------------
// Queues: redrive, visibility timeout, partial batch failures
// ---------------------------------------------------------------------------------------

const DEFAULT_RETENTION: u64 = 345_600;
const MAX_MESSAGE_SIZE: u64 = 1_048_576;

fn check_redrive(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let sources = sqs_sources(t);
    if sources.is_empty() {
        problems.push("no function has an SQS event source".to_string());
    }
    for source in sources {
        let Some(queue) = source.queue else {
            problems.push(format!(
                "{}/{}: Queue must name one queue of the template",
                source.function, source.event
            ));
            continue;
        };
        if !is_type(t, &queue, "AWS::SQS::Queue") {
            problems.push(format!(
                "{}/{}: {queue} is not an AWS::SQS::Queue of the template",
                source.function, source.event
            ));
            continue;
        }
        let policy = &t["Resources"][queue.as_str()]["Properties"]["RedrivePolicy"];
        let targets = redrive_target(t, &queue);
        let Some(dlq) = targets.iter().next().filter(|_| targets.len() == 1) else {
            problems.push(format!(
                "{queue} (source of {}) has no RedrivePolicy to a dead-letter queue",
                source.function
            ));
            continue;
        };
        if dlq == &queue || !is_type(t, dlq, "AWS::SQS::Queue") {
            problems.push(format!(
                "{queue}: deadLetterTargetArn must be another queue of the template, not {dlq}"
            ));
        }
        if min_value(t, policy.get("maxReceiveCount")).is_none_or(|n| n < 1) {
            problems.push(format!(
                "{queue}: RedrivePolicy.maxReceiveCount must be at least 1"
            ));
        }
        // The config's [pipeline] max_message_bytes goes up to 1 MiB, and a DLQ must take
        // every message its source can hold.
        let max_size =
            |id: &str| as_u64(t["Resources"][id]["Properties"].get("MaximumMessageSize"));
        for id in [queue.as_str(), dlq.as_str()] {
            if max_size(id) != Some(MAX_MESSAGE_SIZE) {
                problems.push(format!(
                    "{id}: MaximumMessageSize must be {MAX_MESSAGE_SIZE} (1 MiB bodies)"
                ));
            }
        }
        // A message keeps its first enqueue time in the DLQ: the DLQ must keep it longer.
        let retention = |id: &str| {
            as_u64(t["Resources"][id]["Properties"].get("MessageRetentionPeriod"))
                .unwrap_or(DEFAULT_RETENTION)
        };
        if retention(dlq) <= retention(&queue) {
            problems.push(format!(
                "{dlq} must keep messages longer than its source {queue}"
            ));
        }
    }
    problems
}

#[test]
fn every_source_queue_redrives_to_a_dead_letter_queue() {
    let t = template();
    assert_clean("redrive", check_redrive(&t));
    for source in sqs_sources(&t) {
        let queue = source.queue.expect("a queue");
        let broken = without(&t, &format!("/Resources/{queue}/Properties/RedrivePolicy"));
        assert_reports(
            "redrive",
            check_redrive(&broken),
            &format!("{queue} (source of"),
        );

        let dlq = redrive_target(&t, &queue)
            .into_iter()
            .next()
            .expect("a DLQ");
        let broken = edited(&t, &format!("/Resources/{dlq}/Properties"), |p| {
            p["MessageRetentionPeriod"] = json!(60)
        });
        assert_reports(
            "redrive",
            check_redrive(&broken),
            "must keep messages longer",
        );

        let broken = without(
            &t,
            &format!("/Resources/{dlq}/Properties/MaximumMessageSize"),
        );
        assert_reports(
            "redrive",
            check_redrive(&broken),
            &format!("{dlq}: MaximumMessageSize"),
        );
    }
}

fn check_visibility(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for source in sqs_sources(t) {
        let Some(queue) = source.queue else { continue };
        let function = &t["Resources"][source.function];
        let timeout = as_u64(function_prop(t, function, "Timeout")).unwrap_or(3);
        let window = as_u64(source.properties.get("MaximumBatchingWindowInSeconds")).unwrap_or(0);
        // SQS's default visibility timeout is 30 s.
        let visibility =
            as_u64(t["Resources"][queue.as_str()]["Properties"].get("VisibilityTimeout"))
                .unwrap_or(30);
        let need = 6 * timeout + window;
        if visibility < need {
            problems.push(format!(
                "{queue}: VisibilityTimeout {visibility} s < 6 x {} timeout {timeout} s + batching window {window} s = {need} s",
                source.function
            ));
        }
    }
    problems
}

#[test]
fn visibility_timeouts_are_six_times_the_consumer_timeout() {
    let t = template();
    assert_clean("visibility", check_visibility(&t));
    let deliver = id_of(&t, "sfsync-deliver");
    let queue = event_queues(&t, &deliver)
        .into_iter()
        .next()
        .expect("deliver's queue");
    let broken = edited(
        &t,
        &format!("/Resources/{queue}/Properties/VisibilityTimeout"),
        |v| *v = json!(900),
    );
    assert_reports(
        "visibility",
        check_visibility(&broken),
        &format!("{queue}: VisibilityTimeout 900 s"),
    );
    // Raising the function's timeout alone must break it too.
    let broken = edited(
        &t,
        &format!("/Resources/{deliver}/Properties/Timeout"),
        |v| *v = json!(900),
    );
    assert_reports("visibility", check_visibility(&broken), &queue);
}

fn check_batch_failures(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for source in sqs_sources(t) {
        let at = format!("{}/{}", source.function, source.event);
        if !strings(&source.properties["FunctionResponseTypes"])
            .contains(&"ReportBatchItemFailures")
        {
            problems.push(format!(
                "{at}: FunctionResponseTypes must include ReportBatchItemFailures"
            ));
        }
        if min_value(
            t,
            source.properties["ScalingConfig"].get("MaximumConcurrency"),
        )
        .is_none_or(|n| n < 2)
        {
            problems.push(format!(
                "{at}: ScalingConfig.MaximumConcurrency must be set, at least 2"
            ));
        }
        if as_u64(source.properties.get("BatchSize")).is_none() {
            problems.push(format!("{at}: BatchSize must be set"));
        }
    }
    problems
}

#[test]
fn sqs_events_report_batch_item_failures() {
    let t = template();
    assert_clean("batch failures", check_batch_failures(&t));
    for source in sqs_sources(&t) {
        let pointer = format!(
            "/Resources/{}/Properties/Events/{}/Properties",
            source.function, source.event
        );
        let broken = without(&t, &format!("{pointer}/FunctionResponseTypes"));
        assert_reports(
            "batch failures",
            check_batch_failures(&broken),
            "ReportBatchItemFailures",
        );
        let broken = edited(
            &t,
            &format!("{pointer}/ScalingConfig/MaximumConcurrency"),
            |v| *v = json!(1),
        );
        assert_reports(
            "batch failures",
            check_batch_failures(&broken),
            "MaximumConcurrency",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------

fn check_schedule(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut schedules = 0;
    for (id, function) in functions(t) {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if !matches!(event["Type"].as_str(), Some("ScheduleV2" | "Schedule")) {
                continue;
            }
            schedules += 1;
            let at = format!("{id}/{name}");
            let props = &event["Properties"];
            // Each scheduled function reads its own input type (deny_unknown_fields).
            let parse: fn(&str) -> Result<(), String> = match binary(function) {
                Some("sfsync-extract") => |input| {
                    serde_json::from_str::<ExtractInput>(input)
                        .map(drop)
                        .map_err(|e| format!("not an extract input: {e}"))
                },
                Some("sfsync-stream-function") => |input| {
                    serde_json::from_str::<ScheduledInput>(input)
                        .map(drop)
                        .map_err(|e| format!("not a stream input: {e}"))
                },
                _ => {
                    problems.push(format!(
                        "{at}: only the extract and stream functions run on a schedule"
                    ));
                    continue;
                }
            };
            if as_u64(props["RetryPolicy"].get("MaximumRetryAttempts")).is_none_or(|n| n < 1) {
                problems.push(format!(
                    "{at}: RetryPolicy.MaximumRetryAttempts must be at least 1"
                ));
            }
            let dlq = refs(&props["DeadLetterConfig"]["Arn"]);
            let sam_queue = props["DeadLetterConfig"]["Type"] == "SQS";
            if !sam_queue
                && (dlq.len() != 1 || !dlq.iter().all(|q| is_type(t, q, "AWS::SQS::Queue")))
            {
                problems.push(format!(
                    "{at}: DeadLetterConfig must send to an SQS queue of the template"
                ));
            }
            match props["Input"].as_str() {
                None => problems.push(format!(
                    "{at}: Input must be set (the function's JSON input)"
                )),
                Some(input) => {
                    if let Err(e) = parse(input) {
                        problems.push(format!("{at}: Input is {e}"));
                    }
                    if !input.contains("<aws.scheduler.scheduled-time>") {
                        problems.push(format!("{at}: Input should pass <aws.scheduler.scheduled-time> as scheduledTime"));
                    }
                }
            }
        }
    }
    if schedules == 0 {
        problems.push("no function runs on a schedule".to_string());
    }
    problems
}

#[test]
fn the_schedule_has_a_retry_policy_a_dead_letter_queue_and_a_valid_input() {
    let t = template();
    assert_clean("schedule", check_schedule(&t));
    let extract = id_of(&t, "sfsync-extract");
    let (name, _) = t["Resources"][extract.as_str()]["Properties"]["Events"]
        .as_object()
        .and_then(|events| events.iter().find(|(_, e)| e["Type"] == "ScheduleV2"))
        .expect("a ScheduleV2 event");
    let pointer = format!("/Resources/{extract}/Properties/Events/{name}/Properties");
    let broken = without(&t, &format!("{pointer}/RetryPolicy"));
    assert_reports("schedule", check_schedule(&broken), "RetryPolicy");
    let broken = without(&t, &format!("{pointer}/DeadLetterConfig"));
    assert_reports("schedule", check_schedule(&broken), "DeadLetterConfig");
    let broken = edited(&t, &format!("{pointer}/Input"), |i| {
        *i = json!(r#"{"scheduledTime": "<aws.scheduler.scheduled-time>", "dryRun": true}"#)
    });
    assert_reports("schedule", check_schedule(&broken), "not an extract input");

    // The stream function's safety-net schedule takes the stream function's input.
    let stream = id_of(&t, "sfsync-stream-function");
    let (stream_schedule, _) = t["Resources"][stream.as_str()]["Properties"]["Events"]
        .as_object()
        .and_then(|events| events.iter().find(|(_, e)| e["Type"] == "ScheduleV2"))
        .expect("the stream function's ScheduleV2 event");
    let stream_pointer =
        format!("/Resources/{stream}/Properties/Events/{stream_schedule}/Properties");
    let broken = edited(&t, &format!("{stream_pointer}/Input"), |i| {
        *i = json!(r#"{"scheduledTime": "<aws.scheduler.scheduled-time>", "syncs": ["contacts"]}"#)
    });
    assert_reports("schedule", check_schedule(&broken), "not a stream input");
    let broken = without(&t, &format!("{stream_pointer}/DeadLetterConfig"));
    assert_reports("schedule", check_schedule(&broken), "DeadLetterConfig");

    let broken = without(
        &t,
        &format!("/Resources/{extract}/Properties/Events/{name}"),
    );
    let broken = without(
        &broken,
        &format!("/Resources/{stream}/Properties/Events/{stream_schedule}"),
    );
    assert_reports(
        "schedule",
        check_schedule(&broken),
        "no function runs on a schedule",
    );
}

// ---------------------------------------------------------------------------------------
// IAM: least privilege
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The resource an environment variable of the function names.
    Env(&'static str),
    /// The queues of the function's SQS event sources.
    EventQueue,
    /// The log group of the function's LoggingConfig.
    LogGroup,
}

/// What each binary does with AWS (read from its code), and on what.
fn needs(binary: &str) -> Option<Vec<(&'static str, Target)>> {
    use Target::*;
    let mut needs = vec![
        ("logs:CreateLogStream", LogGroup),
        ("logs:PutLogEvents", LogGroup),
        ("secretsmanager:GetSecretValue", Env("SFSYNC_SECRET_ID")),
    ];
    let poll = [
        ("sqs:ReceiveMessage", EventQueue),
        ("sqs:DeleteMessage", EventQueue),
        ("sqs:GetQueueAttributes", EventQueue),
    ];
    match binary {
        "sfsync-extract" => needs.extend([
            // A rotated Salesforce refresh token is kept in the function's own secret.
            ("secretsmanager:PutSecretValue", Env("SFSYNC_SECRET_ID")),
            ("sqs:SendMessage", Env("RECORDS_QUEUE_URL")),
            ("dynamodb:GetItem", Env("STATE_TABLE")),
            ("dynamodb:PutItem", Env("STATE_TABLE")),
            ("dynamodb:UpdateItem", Env("STATE_TABLE")),
            ("dynamodb:DeleteItem", Env("STATE_TABLE")),
            // The stream ledger (sfsync_pipeline::ledger), for syncs with stream = true.
            ("dynamodb:BatchGetItem", Env("STATE_TABLE")),
            ("dynamodb:BatchWriteItem", Env("STATE_TABLE")),
        ]),
        "sfsync-map" => {
            needs.extend(poll);
            needs.extend([
                ("sqs:SendMessage", Env("DELIVERY_QUEUE_URL")),
                ("dynamodb:UpdateItem", Env("STATE_TABLE")),
            ]);
        }
        "sfsync-stream-function" => {
            // The tick queue is its event source (the chain).
            needs.extend(poll);
            needs.extend([
                // Talks to Salesforce like extract: keeps a rotated refresh token.
                ("secretsmanager:PutSecretValue", Env("SFSYNC_SECRET_ID")),
                ("sqs:SendMessage", Env("RECORDS_QUEUE_URL")),
                ("sqs:SendMessage", Env("TICK_QUEUE_URL")),
                // Replay ids, the stream lease, the polling checkpoint, run reports.
                ("dynamodb:GetItem", Env("STATE_TABLE")),
                ("dynamodb:PutItem", Env("STATE_TABLE")),
                ("dynamodb:UpdateItem", Env("STATE_TABLE")),
                ("dynamodb:DeleteItem", Env("STATE_TABLE")),
                // The stream ledger (sfsync_pipeline::ledger).
                ("dynamodb:BatchWriteItem", Env("STATE_TABLE")),
            ]);
        }
        "sfsync-deliver" => {
            needs.extend(poll);
            needs.extend([
                ("sqs:ChangeMessageVisibility", Env("DELIVERY_QUEUE_URL")),
                ("sqs:SendMessage", Env("DELIVERY_QUEUE_URL")),
                ("sqs:SendMessage", Env("DEAD_LETTER_QUEUE_URL")),
                ("dynamodb:UpdateItem", Env("STATE_TABLE")),
            ]);
        }
        _ => return None,
    }
    Some(needs)
}

/// Allow statements of a role: its inline policies and any AWS::IAM::Policy attached to it.
fn role_statements<'a>(t: &'a Value, role: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut add = |document: &'a Value| match &document["Statement"] {
        Value::Array(statements) => out.extend(statements.iter()),
        statement @ Value::Object(_) => out.push(statement),
        _ => {}
    };
    if let Some(policies) = t["Resources"][role]["Properties"]["Policies"].as_array() {
        for policy in policies {
            add(&policy["PolicyDocument"]);
        }
    }
    for (_, resource) in resources(t) {
        let attached = resource["Properties"]["Roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| refs(r).contains(role)));
        if matches!(
            resource["Type"].as_str(),
            Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy")
        ) && attached
        {
            add(&resource["Properties"]["PolicyDocument"]);
        }
    }
    out
}

fn check_iam(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut roles_seen = BTreeMap::<String, &str>::new();
    for (id, function) in functions(t) {
        let Some(binary_name) = binary(function) else {
            continue;
        };
        let Some(needs) = needs(binary_name) else {
            problems.push(format!(
                "{id}: no known AWS use for binary {binary_name}: add it to needs()"
            ));
            continue;
        };
        // SAM's generated role (Policies) also gets AWSLambdaBasicExecutionRole and, with SQS
        // events, AWSLambdaSQSQueueExecutionRole: both apply to every resource ("*").
        if function["Properties"].get("Policies").is_some() {
            problems.push(format!(
                "{id}: uses SAM's generated role (Policies), which adds managed policies on Resource \"*\"; give it its own role"
            ));
        }
        let role_refs = refs(&function["Properties"]["Role"]);
        let Some(role) = role_refs
            .iter()
            .next()
            .filter(|r| role_refs.len() == 1 && is_type(t, r, "AWS::IAM::Role"))
        else {
            problems.push(format!(
                "{id}: Role must be an AWS::IAM::Role of the template"
            ));
            continue;
        };
        if let Some(other) = roles_seen.insert(role.clone(), id) {
            problems.push(format!(
                "{id} and {other} share the role {role}: each function needs its own"
            ));
        }
        let role_props = &t["Resources"][role.as_str()]["Properties"];
        if role_props["ManagedPolicyArns"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            problems.push(format!(
                "{role}: managed policies are not limited to the function's own resources"
            ));
        }
        let principals: Vec<&str> = role_props["AssumeRolePolicyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| strings(&s["Principal"]["Service"]))
            .collect();
        if principals != ["lambda.amazonaws.com"] {
            problems.push(format!(
                "{role}: only lambda.amazonaws.com may assume it, not {principals:?}"
            ));
        }

        // What each target is, for this function.
        let mut targets = BTreeMap::<Target, BTreeSet<String>>::new();
        for (_, target) in &needs {
            let ids = match target {
                Target::Env(name) => env_refs(t, function, name),
                Target::EventQueue => event_queues(t, id),
                Target::LogGroup => function_prop(t, function, "LoggingConfig")
                    .map(|c| refs(&c["LogGroup"]))
                    .unwrap_or_default(),
            };
            if ids.is_empty() {
                problems.push(format!(
                    "{id}: {target:?} names no resource of the template"
                ));
            }
            targets.insert(*target, ids);
        }
        let allowed = |action: &str| -> Option<BTreeSet<String>> {
            let matching: Vec<_> = needs
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(action))
                .collect();
            (!matching.is_empty()).then(|| {
                matching
                    .iter()
                    .flat_map(|(_, target)| targets[target].clone())
                    .collect()
            })
        };

        let statements = role_statements(t, role);
        for statement in &statements {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let sid = statement["Sid"].as_str().unwrap_or("(no Sid)");
            let at = format!("{id} ({role} {sid})");
            if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
                problems.push(format!("{at}: NotAction/NotResource grant everything else"));
            }
            let resources: Vec<&Value> = match &statement["Resource"] {
                Value::Array(items) => items.iter().collect(),
                Value::Null => Vec::new(),
                other => vec![other],
            };
            if resources.is_empty() {
                problems.push(format!("{at}: no Resource"));
            }
            for resource in &resources {
                if let Value::String(literal) = resource {
                    problems.push(format!(
                        "{at}: names the literal resource {literal:?}; name the template's own resources instead"
                    ));
                } else if refs(resource).is_empty() {
                    problems.push(format!(
                        "{at}: a Resource refers to nothing of the template"
                    ));
                }
            }
            let named: BTreeSet<String> = resources.iter().flat_map(|r| refs(r)).collect();
            for action in strings(&statement["Action"]) {
                if action.contains('*') {
                    problems.push(format!("{at}: wildcard action {action}"));
                    continue;
                }
                let Some(allowed) = allowed(action) else {
                    problems.push(format!(
                        "{at}: grants {action}, which {binary_name} never uses"
                    ));
                    continue;
                };
                for other in named.difference(&allowed) {
                    problems.push(format!(
                        "{at}: grants {action} on {other}, not one of {id}'s own resources for it"
                    ));
                }
            }
        }
        for (action, target) in &needs {
            let ids = &targets[target];
            let granted = statements.iter().any(|s| {
                s["Effect"] == "Allow"
                    && strings(&s["Action"])
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(action))
                    && ids.is_subset(&refs(&s["Resource"]))
            });
            if !granted {
                problems.push(format!("{id}: lacks {action} on {ids:?} ({target:?})"));
            }
        }
    }
    problems
}

#[test]
fn every_statement_names_only_the_function_own_resources() {
    let t = template();
    assert_clean("iam", check_iam(&t));

    let role_of = |binary_name: &str| {
        let id = id_of(&t, binary_name);
        refs(&t["Resources"][id.as_str()]["Properties"]["Role"])
            .into_iter()
            .next()
            .expect("a role")
    };
    let add_statement = |binary_name: &str, statement: Value| {
        let role = role_of(binary_name);
        edited(
            &t,
            &format!("/Resources/{role}/Properties/Policies/0/PolicyDocument/Statement"),
            |s| {
                s.as_array_mut()
                    .expect("a list of statements")
                    .push(statement)
            },
        )
    };

    let broken = add_statement(
        "sfsync-map",
        json!({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}),
    );
    assert_reports("iam", check_iam(&broken), "literal resource \"*\"");

    let extract = id_of(&t, "sfsync-extract");
    let records = env_refs(&t, &t["Resources"][extract.as_str()], "RECORDS_QUEUE_URL")
        .into_iter()
        .next()
        .expect("the records queue");
    let broken = add_statement(
        "sfsync-deliver",
        json!({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": {"Fn::GetAtt": [records, "Arn"]}}),
    );
    assert_reports(
        "iam",
        check_iam(&broken),
        &format!("grants sqs:SendMessage on {records}"),
    );

    let table = env_refs(&t, &t["Resources"][extract.as_str()], "STATE_TABLE")
        .into_iter()
        .next()
        .expect("the table");
    let broken = add_statement(
        "sfsync-map",
        json!({"Effect": "Allow", "Action": ["dynamodb:Scan"], "Resource": {"Fn::GetAtt": [table, "Arn"]}}),
    );
    assert_reports(
        "iam",
        check_iam(&broken),
        "grants dynamodb:Scan, which sfsync-map never uses",
    );

    let broken = add_statement(
        "sfsync-extract",
        json!({"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": {"Fn::GetAtt": [table, "Arn"]}}),
    );
    assert_reports("iam", check_iam(&broken), "wildcard action dynamodb:*");

    // Removing a permission the code needs is reported too.
    let role = role_of("sfsync-deliver");
    let broken = edited(
        &t,
        &format!("/Resources/{role}/Properties/Policies/0/PolicyDocument/Statement"),
        |s| {
            for statement in s.as_array_mut().expect("statements") {
                if let Some(actions) = statement["Action"].as_array_mut() {
                    actions.retain(|a| a != "sqs:ChangeMessageVisibility");
                }
            }
        },
    );
    assert_reports(
        "iam",
        check_iam(&broken),
        "lacks sqs:ChangeMessageVisibility",
    );

    // SAM's generated role with a policy template instead of the function's own role.
    let map = id_of(&t, "sfsync-map");
    let broken = edited(&t, &format!("/Resources/{map}/Properties"), |p| {
        let props = p.as_object_mut().expect("properties");
        props.remove("Role");
        props.insert(
            "Policies".into(),
            json!([{"DynamoDBCrudPolicy": {"TableName": {"Ref": table}}}]),
        );
    });
    assert_reports("iam", check_iam(&broken), "SAM's generated role");
}

// ---------------------------------------------------------------------------------------
// Wiring, state table, alarms
// ---------------------------------------------------------------------------------------

fn check_wiring(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some((extract, e)), Some((map, m)), Some((deliver, d))) = (
        function_by_binary(t, "sfsync-extract"),
        function_by_binary(t, "sfsync-map"),
        function_by_binary(t, "sfsync-deliver"),
    ) else {
        return vec![
            "the template must deploy sfsync-extract, sfsync-map and sfsync-deliver".into(),
        ];
    };
    let records = env_refs(t, e, "RECORDS_QUEUE_URL");
    if records.is_empty() || records != event_queues(t, map) {
        problems.push(format!(
            "{extract}'s RECORDS_QUEUE_URL {records:?} must be {map}'s SQS event source"
        ));
    }
    let delivery = env_refs(t, m, "DELIVERY_QUEUE_URL");
    if delivery.is_empty()
        || delivery != event_queues(t, deliver)
        || delivery != env_refs(t, d, "DELIVERY_QUEUE_URL")
    {
        problems.push(format!(
            "{map}'s DELIVERY_QUEUE_URL {delivery:?} must be {deliver}'s SQS event source and its DELIVERY_QUEUE_URL"
        ));
    }
    // Dead calls land next to the poison messages, so one redrive retries both.
    let dead = env_refs(t, d, "DEAD_LETTER_QUEUE_URL");
    let delivery_dlq = delivery
        .iter()
        .next()
        .map(|q| redrive_target(t, q))
        .unwrap_or_default();
    if dead.is_empty() || dead != delivery_dlq {
        problems.push(format!(
            "{deliver}'s DEAD_LETTER_QUEUE_URL {dead:?} must be the delivery queue's dead-letter queue {delivery_dlq:?}"
        ));
    }
    for (id, function) in [(extract, e), (map, m), (deliver, d)] {
        for name in ["SFSYNC_SECRET_ID", "STATE_TABLE"] {
            if env_refs(t, function, name).is_empty() {
                problems.push(format!(
                    "{id}: environment variable {name} must name a resource or parameter"
                ));
            }
        }
    }
    problems
}

#[test]
fn the_stages_are_wired_queue_to_queue() {
    let t = template();
    assert_clean("wiring", check_wiring(&t));
    let deliver = id_of(&t, "sfsync-deliver");
    let extract = id_of(&t, "sfsync-extract");
    let records = env_refs(&t, &t["Resources"][extract.as_str()], "RECORDS_QUEUE_URL");
    let records_dlq = redrive_target(&t, records.iter().next().expect("records queue"))
        .into_iter()
        .next()
        .expect("records DLQ");
    let broken = edited(
        &t,
        &format!("/Resources/{deliver}/Properties/Environment/Variables"),
        |v| v["DEAD_LETTER_QUEUE_URL"] = json!({"Ref": records_dlq}),
    );
    assert_reports("wiring", check_wiring(&broken), "DEAD_LETTER_QUEUE_URL");
    let map = id_of(&t, "sfsync-map");
    let broken = edited(
        &t,
        &format!("/Resources/{map}/Properties/Environment/Variables"),
        |v| v["DELIVERY_QUEUE_URL"] = json!({"Ref": records.iter().next().expect("records queue")}),
    );
    assert_reports("wiring", check_wiring(&broken), "DELIVERY_QUEUE_URL");
}

/// Refs outside `Fn::If`: what a resource needs to exist whatever the conditions.
fn unconditional_refs(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) if map.contains_key("Fn::If") => BTreeSet::new(),
        Value::Object(map)
            if map.len() == 1 && (map.contains_key("Ref") || map.contains_key("Fn::GetAtt")) =>
        {
            refs(value)
        }
        Value::Object(map) if map.contains_key("Fn::Sub") => match &map["Fn::Sub"] {
            // A variable map may choose with Fn::If; the text's own variables are needed.
            Value::Array(parts) => {
                let locals: BTreeSet<String> = parts
                    .get(1)
                    .and_then(Value::as_object)
                    .map(|vars| vars.keys().cloned().collect())
                    .unwrap_or_default();
                let mut out = BTreeSet::new();
                if let Some(Value::String(text)) = parts.first() {
                    sub_variables(text, &locals, &mut out);
                }
                if let Some(vars) = parts.get(1) {
                    out.extend(unconditional_refs(vars));
                }
                out
            }
            _ => refs(value),
        },
        Value::Object(map) => map.values().flat_map(unconditional_refs).collect(),
        Value::Array(items) => items.iter().flat_map(unconditional_refs).collect(),
        _ => BTreeSet::new(),
    }
}

fn condition_of<'a>(t: &'a Value, id: &str) -> Option<&'a str> {
    t["Resources"][id]["Condition"].as_str()
}

fn check_stream(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some((stream, f)), Some((map, _))) = (
        function_by_binary(t, "sfsync-stream-function"),
        function_by_binary(t, "sfsync-map"),
    ) else {
        return vec!["the template must deploy sfsync-stream-function and sfsync-map".into()];
    };
    // Stacks without Change Data Capture do not run (or pay for) a subscriber.
    match condition_of(t, stream) {
        Some(c) if t["Conditions"].get(c).is_some() => {}
        _ => problems.push(format!(
            "{stream}: must have a Condition of the template (a parameter turns streaming off)"
        )),
    }
    let records = env_refs(t, f, "RECORDS_QUEUE_URL");
    if records.is_empty() || records != event_queues(t, map) {
        problems.push(format!(
            "{stream}'s RECORDS_QUEUE_URL {records:?} must be {map}'s SQS event source (the map function reads stream records like extracted ones)"
        ));
    }
    let ticks = env_refs(t, f, "TICK_QUEUE_URL");
    if ticks.is_empty() || ticks != event_queues(t, stream) {
        problems.push(format!(
            "{stream}'s TICK_QUEUE_URL {ticks:?} must be its own SQS event source (the chain)"
        ));
    }
    if ticks == records {
        problems.push(format!(
            "{stream}: TICK_QUEUE_URL must not be the records queue"
        ));
    }
    let scheduled = f["Properties"]["Events"]
        .as_object()
        .is_some_and(|events| events.values().any(|e| e["Type"] == "ScheduleV2"));
    if !scheduled {
        problems.push(format!(
            "{stream}: needs a ScheduleV2 event, which restarts a broken chain"
        ));
    }
    if f["Properties"]["RecursiveLoop"] != "Allow" {
        problems.push(format!(
            "{stream}: RecursiveLoop must be Allow, or Lambda stops the chain after 16 invocations"
        ));
    }
    let margin = sfsync_stream_function::STOP_MARGIN.as_secs();
    let timeout = as_u64(function_prop(t, f, "Timeout")).unwrap_or(3);
    if timeout < 4 * margin {
        problems.push(format!(
            "{stream}: Timeout {timeout} s leaves little streaming before the stop margin of {margin} s"
        ));
    }
    // Whatever needs a conditional resource must have its condition.
    let sections = [("Resources", &t["Resources"]), ("Outputs", &t["Outputs"])];
    for (section, items) in sections {
        let Some(items) = items.as_object() else {
            continue;
        };
        for (id, item) in items {
            let own = item["Condition"].as_str();
            for needed in unconditional_refs(item) {
                if let Some(needed_condition) = condition_of(t, &needed)
                    && own != Some(needed_condition)
                {
                    problems.push(format!(
                        "{section}/{id} refers to {needed}, which exists only with Condition {needed_condition}: give it the same Condition (or choose with Fn::If)"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn the_stream_function_chains_through_its_own_tick_queue_and_can_be_turned_off() {
    let t = template();
    assert_clean("stream", check_stream(&t));
    let stream = id_of(&t, "sfsync-stream-function");
    let extract = id_of(&t, "sfsync-extract");
    let records = env_refs(&t, &t["Resources"][extract.as_str()], "RECORDS_QUEUE_URL")
        .into_iter()
        .next()
        .expect("the records queue");
    let vars = format!("/Resources/{stream}/Properties/Environment/Variables");
    let broken = edited(&t, &vars, |v| v["TICK_QUEUE_URL"] = json!({"Ref": records}));
    assert_reports("stream", check_stream(&broken), "TICK_QUEUE_URL");
    let broken = edited(&t, &vars, |v| {
        if let Some(o) = v.as_object_mut() {
            o.remove("RECORDS_QUEUE_URL");
        }
    });
    assert_reports("stream", check_stream(&broken), "RECORDS_QUEUE_URL");
    let broken = without(&t, &format!("/Resources/{stream}/Properties/RecursiveLoop"));
    assert_reports("stream", check_stream(&broken), "RecursiveLoop");
    let broken = without(&t, &format!("/Resources/{stream}/Condition"));
    assert_reports("stream", check_stream(&broken), "must have a Condition");
    let (alarm, _) = resources_of(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, a)| refs(&a["Properties"]["Dimensions"]).contains(&stream))
        .expect("the stream function's Errors alarm");
    let broken = without(&t, &format!("/Resources/{alarm}/Condition"));
    assert_reports(
        "stream",
        check_stream(&broken),
        &format!("Resources/{alarm} refers to {stream}"),
    );
}

fn check_table(t: &Value) -> Vec<String> {
    let tables: BTreeSet<String> = functions(t)
        .iter()
        .flat_map(|(_, f)| env_refs(t, f, "STATE_TABLE"))
        .collect();
    let Some(table) = tables.iter().next().filter(|_| tables.len() == 1) else {
        return vec![format!(
            "every function's STATE_TABLE must name the same table, got {tables:?}"
        )];
    };
    if !is_type(t, table, "AWS::DynamoDB::Table") {
        return vec![format!("{table} is not an AWS::DynamoDB::Table")];
    }
    let props = &t["Resources"][table.as_str()]["Properties"];
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("{table}: {what}"));
        }
    };
    expect(
        "BillingMode must be PAY_PER_REQUEST",
        props["BillingMode"] == "PAY_PER_REQUEST",
    );
    expect(
        "keys must be pk (HASH) and sk (RANGE)",
        props["KeySchema"]
            == json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]),
    );
    let attributes: BTreeSet<(String, String)> = props["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap_or_default().into(),
                a["AttributeType"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    expect(
        "pk and sk must be strings (S)",
        attributes == BTreeSet::from([("pk".into(), "S".into()), ("sk".into(), "S".into())]),
    );
    expect(
        "TimeToLiveSpecification must be enabled on `ttl` (leases and run reports expire)",
        props["TimeToLiveSpecification"] == json!({"AttributeName": "ttl", "Enabled": true}),
    );
    expect(
        "point-in-time recovery must be on",
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == true,
    );
    problems
}

#[test]
fn the_state_table_matches_the_state_store() {
    let t = template();
    assert_clean("table", check_table(&t));
    let extract = id_of(&t, "sfsync-extract");
    let table = env_refs(&t, &t["Resources"][extract.as_str()], "STATE_TABLE")
        .into_iter()
        .next()
        .expect("the table");
    let broken = edited(
        &t,
        &format!("/Resources/{table}/Properties/TimeToLiveSpecification/AttributeName"),
        |a| *a = json!("expires"),
    );
    assert_reports("table", check_table(&broken), "ttl");
    let broken = edited(
        &t,
        &format!("/Resources/{table}/Properties/BillingMode"),
        |b| *b = json!("PROVISIONED"),
    );
    assert_reports("table", check_table(&broken), "PAY_PER_REQUEST");
}

/// Fires as soon as the metric is above zero.
fn fires_above_zero(alarm: &Value) -> bool {
    let threshold = alarm["Threshold"].as_f64();
    match alarm["ComparisonOperator"].as_str() {
        Some("GreaterThanThreshold") => threshold == Some(0.0),
        Some("GreaterThanOrEqualToThreshold") => threshold == Some(1.0),
        _ => false,
    }
}

fn has_alarm(t: &Value, namespace: &str, metric: &str, dimension: &str, id: &str) -> bool {
    resources_of(t, "AWS::CloudWatch::Alarm")
        .iter()
        .any(|(_, alarm)| {
            let p = &alarm["Properties"];
            p["Namespace"] == namespace
                && p["MetricName"] == metric
                && fires_above_zero(p)
                && p["Dimensions"].as_array().is_some_and(|dims| {
                    dims.iter()
                        .any(|d| d["Name"] == dimension && refs(&d["Value"]).contains(id))
                })
        })
}

fn dead_letter_queues(t: &Value) -> BTreeSet<String> {
    let mut dlqs: BTreeSet<String> = resources_of(t, "AWS::SQS::Queue")
        .iter()
        .flat_map(|(id, _)| redrive_target(t, id))
        .collect();
    for (_, function) in functions(t) {
        if let Some(events) = function["Properties"]["Events"].as_object() {
            for event in events.values() {
                dlqs.extend(refs(&event["Properties"]["DeadLetterConfig"]["Arn"]));
            }
        }
    }
    dlqs
}

fn check_alarms(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let dlqs = dead_letter_queues(t);
    if dlqs.is_empty() {
        problems.push("the template has no dead-letter queue".to_string());
    }
    for dlq in dlqs {
        if !has_alarm(
            t,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &dlq,
        ) {
            problems.push(format!(
                "{dlq}: no alarm on ApproximateNumberOfMessagesVisible > 0"
            ));
        }
    }
    for (id, _) in functions(t) {
        if !has_alarm(t, "AWS/Lambda", "Errors", "FunctionName", id) {
            problems.push(format!("{id}: no alarm on Errors > 0"));
        }
    }
    problems
}

#[test]
fn every_dead_letter_queue_and_function_has_an_alarm() {
    let t = template();
    assert_clean("alarms", check_alarms(&t));
    let mut dlqs = dead_letter_queues(&t);
    assert_eq!(
        dlqs.len(),
        4,
        "records, delivery, schedule and stream tick DLQs: {dlqs:?}"
    );
    let dlq = dlqs.pop_first().expect("a DLQ");
    let (alarm, _) = resources_of(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, a)| refs(&a["Properties"]["Dimensions"]).contains(&dlq))
        .expect("the DLQ's alarm");
    let broken = edited(
        &t,
        &format!("/Resources/{alarm}/Properties/Threshold"),
        |v| *v = json!(10),
    );
    assert_reports("alarms", check_alarms(&broken), &format!("{dlq}: no alarm"));
    let broken = without(&t, &format!("/Resources/{alarm}"));
    assert_reports("alarms", check_alarms(&broken), &format!("{dlq}: no alarm"));

    let map = id_of(&t, "sfsync-map");
    let (alarm, _) = resources_of(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, a)| {
            a["Properties"]["MetricName"] == "Errors"
                && refs(&a["Properties"]["Dimensions"]).contains(&map)
        })
        .expect("map's Errors alarm");
    let broken = without(&t, &format!("/Resources/{alarm}"));
    assert_reports(
        "alarms",
        check_alarms(&broken),
        &format!("{map}: no alarm on Errors"),
    );
}

// ---------------------------------------------------------------------------------------
// The operator's dashboard
// ---------------------------------------------------------------------------------------

/// The dashboard's body as JSON, each `${Name}` / `${Resource.Attribute}` of its `Fn::Sub`
/// replaced by the logical ids it names (`@Name`; a variable of the Sub's own map names what
/// its value refers to, under either condition).
struct DashboardBody {
    id: String,
    json: Value,
    /// `@Variable` → the logical ids it stands for.
    names: BTreeMap<String, BTreeSet<String>>,
}

impl DashboardBody {
    /// The logical ids a dimension value of the body names.
    fn named(&self, value: &Value) -> BTreeSet<String> {
        let Some(marker) = value.as_str().and_then(|v| v.strip_prefix('@')) else {
            return BTreeSet::new();
        };
        self.names.get(marker).cloned().unwrap_or_else(|| {
            BTreeSet::from([marker.split('.').next().unwrap_or(marker).to_string()])
        })
    }

    /// Every `[namespace, metric, dimension, value, …]` line of every metric widget.
    fn metric_lines(&self) -> Vec<&Vec<Value>> {
        self.widgets()
            .flat_map(|w| w["properties"]["metrics"].as_array().into_iter().flatten())
            .filter_map(Value::as_array)
            .filter(|line| line.first().is_some_and(Value::is_string))
            .collect()
    }

    /// Every metric math expression (`SEARCH(…)`).
    fn expressions(&self) -> Vec<&str> {
        self.widgets()
            .flat_map(|w| w["properties"]["metrics"].as_array().into_iter().flatten())
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|item| item["expression"].as_str())
            .collect()
    }

    fn widgets(&self) -> impl Iterator<Item = &Value> {
        self.json["widgets"].as_array().into_iter().flatten()
    }

    /// Whether a line shows `metric` of `namespace` for the resource `id`.
    fn shows(&self, namespace: &str, metric: &str, dimension: &str, id: &str) -> bool {
        self.metric_lines().iter().any(|line| {
            line.first().and_then(Value::as_str) == Some(namespace)
                && line.get(1).and_then(Value::as_str) == Some(metric)
                && line.get(2).and_then(Value::as_str) == Some(dimension)
                && line.get(3).is_some_and(|v| self.named(v).contains(id))
        })
    }
}

fn dashboard_body(t: &Value) -> Result<DashboardBody, String> {
    let dashboards = resources_of(t, "AWS::CloudWatch::Dashboard");
    let [(id, dashboard)] = dashboards.as_slice() else {
        return Err(format!(
            "the template must have one dashboard, not {}",
            dashboards.len()
        ));
    };
    let body = &dashboard["Properties"]["DashboardBody"];
    let (text, vars) = match &body["Fn::Sub"] {
        Value::String(text) => (text.as_str(), Map::new()),
        Value::Array(parts) => (
            parts.first().and_then(Value::as_str).unwrap_or_default(),
            parts
                .get(1)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ),
        _ => (body.as_str().unwrap_or_default(), Map::new()),
    };
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{id}: an unclosed ${{ in the body"))?;
        plain.push('@');
        plain.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    plain.push_str(rest);
    let json = serde_json::from_str(&plain)
        .map_err(|e| format!("{id}: DashboardBody is not JSON once substituted: {e}"))?;
    let names = vars.iter().map(|(k, v)| (k.clone(), refs(v))).collect();
    Ok(DashboardBody {
        id: id.to_string(),
        json,
        names,
    })
}

/// The names of the per-sync metrics the stages emit, read from the code: every counter set.
fn per_sync_metric_names() -> Vec<String> {
    let counts = sfsync_pipeline::report::RunCounts {
        extracted: 1,
        deleted_found: 1,
        messages: 1,
        mapped: 1,
        skipped: 1,
        skipped_deliberate: 1,
        delivered: 1,
        dead: 1,
        retried: 1,
        destination_requests: 1,
        delete_gaps: 1,
        conversions: 1,
        merges: 1,
        stream_missed: 1,
        stream_unknown: 1,
        ..Default::default()
    };
    let line = sfsync_pipeline::metrics::counts_line("extract", "contacts", &counts, 1);
    let emitted: Value = serde_json::from_str(&line).expect("EMF JSON");
    let directive = &emitted["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Dimensions"], json!([["Stage", "Sync"]]));
    directive["Metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Name"].as_str().map(str::to_string))
        .collect()
}

fn check_dashboard(t: &Value) -> Vec<String> {
    let body = match dashboard_body(t) {
        Ok(body) => body,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    let id = body.id.as_str();
    // Per stage and per sync: a SEARCH over the (Stage, Sync) dimensions of every metric.
    let schema = format!("{{{},Stage,Sync}}", sfsync_pipeline::metrics::NAMESPACE);
    for metric in per_sync_metric_names() {
        let searched = body.expressions().iter().any(|e| {
            e.starts_with("SEARCH(")
                && e.contains(&schema)
                && e.contains(&format!("MetricName=\"{metric}\""))
        });
        if !searched {
            problems.push(format!("{id}: no SEARCH of {schema} for {metric}"));
        }
    }
    for dlq in dead_letter_queues(t) {
        if !body.shows(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &dlq,
        ) {
            problems.push(format!("{id}: does not show the depth of {dlq}"));
        }
    }
    for (function, _) in functions(t) {
        if !body.shows("AWS/Lambda", "Errors", "FunctionName", function) {
            problems.push(format!("{id}: does not show the errors of {function}"));
        }
    }
    let linked = t["Outputs"]
        .as_object()
        .is_some_and(|outputs| outputs.values().any(|o| refs(&o["Value"]).contains(id)));
    if !linked {
        problems.push(format!("{id}: no stack output links to it"));
    }
    problems
}

#[test]
fn the_dashboard_shows_every_stage_per_sync_every_dead_letter_queue_and_every_function() {
    let t = template();
    assert_clean("dashboard", check_dashboard(&t));
    let body = dashboard_body(&t).expect("the dashboard");
    let id = body.id.clone();
    let pointer = format!("/Resources/{id}/Properties/DashboardBody/Fn::Sub/0");
    let text = t
        .pointer(&pointer)
        .and_then(Value::as_str)
        .expect("a Sub body with a variable map")
        .to_string();
    let broken = edited(&t, &pointer, |b| {
        *b = json!(text.replace(
            "MetricName=\\\"CallsDeadLettered\\\"",
            "MetricName=\\\"Calls\\\""
        ))
    });
    assert_reports("dashboard", check_dashboard(&broken), "CallsDeadLettered");
    let dlq = dead_letter_queues(&t).pop_last().expect("a DLQ");
    let broken = edited(&t, &pointer, |b| {
        *b = json!(text.replace(
            &format!("${{{dlq}.QueueName}}"),
            "${RecordsQueue.QueueName}"
        ))
    });
    assert_reports(
        "dashboard",
        check_dashboard(&broken),
        &format!("depth of {dlq}"),
    );
    let stream = id_of(&t, "sfsync-stream-function");
    let broken = edited(
        &t,
        &format!("/Resources/{id}/Properties/DashboardBody/Fn::Sub/1"),
        |vars| {
            for value in vars.as_object_mut().expect("variables").values_mut() {
                *value = json!("none");
            }
        },
    );
    assert_reports(
        "dashboard",
        check_dashboard(&broken),
        &format!("errors of {stream}"),
    );
    let broken = edited(&t, &pointer, |b| *b = json!(text.replacen('{', "", 1)));
    assert_reports("dashboard", check_dashboard(&broken), "not JSON");
    let broken = edited(&t, "/Outputs", |outputs| {
        if let Some(o) = outputs.as_object_mut() {
            o.retain(|_, v| !refs(&v["Value"]).contains(&id));
        }
    });
    assert_reports("dashboard", check_dashboard(&broken), "no stack output");
}

// ---------------------------------------------------------------------------------------
// Example events (infra/events): what `cargo lambda invoke --data-file` sends
// ---------------------------------------------------------------------------------------

fn event_file(name: &str) -> String {
    read(&infra().join("events").join(name))
}

fn example_config() -> Config {
    let path = sfsync_e2e::workspace_root().join("examples/sfsync.toml");
    Config::parse(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn extract_events_are_extract_inputs() {
    let scheduled: ExtractInput = serde_json::from_str(&event_file("extract-scheduled.json"))
        .expect("extract-scheduled.json");
    assert!(
        scheduled.scheduled_time.is_some() && scheduled.syncs.is_none() && !scheduled.full,
        "{scheduled:?}"
    );
    let replay: ExtractInput =
        serde_json::from_str(&event_file("extract-replay.json")).expect("extract-replay.json");
    assert!(replay.full, "a replay ignores checkpoints: {replay:?}");
    let config = example_config();
    for sync in replay.syncs.as_deref().expect("a replay names its syncs") {
        assert!(
            config.sync(sync).is_some(),
            "extract-replay.json names {sync}, not in examples/sfsync.toml"
        );
    }
}

fn sqs_event(name: &str) -> SqsEvent {
    let event: SqsEvent =
        serde_json::from_str(&event_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!event.records.is_empty(), "{name} has no Records");
    for record in &event.records {
        assert!(
            record
                .message_id
                .as_deref()
                .is_some_and(|id| !id.is_empty()),
            "{name}: a record without messageId"
        );
        assert!(
            record.receipt_handle.is_some(),
            "{name}: a record without receiptHandle"
        );
        assert_eq!(record.event_source.as_deref(), Some("aws:sqs"), "{name}");
        assert!(
            record
                .event_source_arn
                .as_deref()
                .is_some_and(|a| a.starts_with("arn:aws:sqs:")),
            "{name}"
        );
        assert!(
            record.aws_region.is_some(),
            "{name}: a record without awsRegion"
        );
        assert!(
            record.attributes.contains_key("ApproximateReceiveCount"),
            "{name}: attributes"
        );
    }
    event
}

#[test]
fn map_event_carries_records_messages_the_example_config_maps() {
    let config = example_config();
    let event = sqs_event("map-sqs.json");
    let mut mapped = 0;
    let mut compressed = 0;
    for record in event.records {
        let body = record.body.expect("a body");
        compressed += usize::from(body.contains("\"encoding\":\"gzip+base64\""));
        let mut message: RecordsMessage =
            decode(&body).unwrap_or_else(|e| panic!("map-sqs.json body: {e}"));
        let output = map_calls(&config, &mut message).expect("mappable with examples/sfsync.toml");
        mapped += output.counts.mapped;
        assert!(
            !output.calls.is_empty() && !output.destinations.is_empty(),
            "the calls go to at least one destination"
        );
    }
    assert!(mapped > 0, "no record of map-sqs.json was mapped");
    assert!(
        compressed > 0,
        "map-sqs.json should show the compressed wire form extract sends"
    );
}

#[test]
fn deliver_event_carries_calls_and_a_dead_letter() {
    let config = example_config();
    let event = sqs_event("deliver-sqs.json");
    let mut dead_letters = 0;
    for record in event.records {
        let body = record.body.expect("a body");
        dead_letters += usize::from(body.contains("\"reason\""));
        let calls = decode_delivery(&body).unwrap_or_else(|e| panic!("deliver-sqs.json body: {e}"));
        assert!(!calls.calls.is_empty());
        assert!(
            config.destination(&calls.destination).is_some(),
            "deliver-sqs.json names destination {}, not in examples/sfsync.toml",
            calls.destination
        );
    }
    assert!(
        dead_letters > 0,
        "deliver-sqs.json should show a redriven dead letter too"
    );
}

#[test]
fn stream_events_are_a_schedule_input_and_a_tick() {
    use sfsync_stream_function::{StreamOutput, Trigger, tick_body};
    let scheduled: Value =
        serde_json::from_str(&event_file("stream-scheduled.json")).expect("stream-scheduled.json");
    assert_eq!(Trigger::of(scheduled).ok(), Some(Trigger::Schedule));
    let tick = sqs_event("stream-tick.json");
    assert_eq!(
        tick.records.len(),
        1,
        "the tick queue's source takes one at a time"
    );
    let body = tick.records[0].body.as_deref().expect("a body");
    let sent_by = serde_json::from_str::<Value>(body).expect("JSON")["tick"]
        .as_str()
        .map(str::to_string)
        .expect("the tick names its sender");
    assert_eq!(body, tick_body(&sent_by), "the body the function sends");
    let payload: Value = serde_json::from_str(&event_file("stream-tick.json")).expect("JSON");
    let trigger = Trigger::of(payload).expect("a tick");
    assert_eq!(trigger, Trigger::Tick);
    assert_eq!(
        trigger.response(&StreamOutput::default()),
        json!({"batchItemFailures": []})
    );
}

/// A run that missed hard deletes (issue 11) is alarmed on: the metric the extract function
/// emits for it (name, namespace and stage-wide dimension taken from the code) has an alarm
/// that fires above zero and notifies.
#[test]
fn missed_hard_deletes_have_an_alarm_on_the_metric_the_code_emits() {
    let counts = sfsync_pipeline::report::RunCounts {
        delete_gaps: 1,
        ..Default::default()
    };
    let line = sfsync_pipeline::metrics::delete_gaps_line("extract", &counts)
        .expect("a gap emits a stage-wide line");
    let emitted: Value = serde_json::from_str(&line).expect("EMF JSON");
    let directive = &emitted["_aws"]["CloudWatchMetrics"][0];
    let namespace = directive["Namespace"].clone();
    let metric = directive["Metrics"][0]["Name"].clone();
    assert_eq!(directive["Dimensions"], json!([["Stage"]]));
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    let alarm = alarms
        .iter()
        .map(|(_, a)| &a["Properties"])
        .find(|p| p["Namespace"] == namespace && p["MetricName"] == metric)
        .unwrap_or_else(|| panic!("no alarm on {namespace}/{metric}"));
    assert!(fires_above_zero(alarm), "{alarm}");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "Stage", "Value": emitted["Stage"]}])
    );
    assert_eq!(alarm["TreatMissingData"], "notBreaching");
    assert!(!alarm["AlarmActions"].is_null(), "{alarm}");
}

/// Polling's proof of the stream: the extract function's stage-wide `StreamMissed` line has
/// an alarm on exactly the namespace, name and dimension it is emitted with, deployed with
/// the stream function.
#[test]
fn versions_the_stream_missed_have_an_alarm_on_the_metric_the_code_emits() {
    let counts = sfsync_pipeline::report::RunCounts {
        stream_missed: 2,
        ..Default::default()
    };
    let line = sfsync_pipeline::metrics::stream_missed_line("extract", &counts)
        .expect("a miss emits a stage-wide line");
    assert!(sfsync_pipeline::metrics::stream_missed_line("extract", &Default::default()).is_none());
    let emitted: Value = serde_json::from_str(&line).expect("EMF JSON");
    let directive = &emitted["_aws"]["CloudWatchMetrics"][0];
    let namespace = directive["Namespace"].clone();
    let metric = directive["Metrics"][0]["Name"].clone();
    assert_eq!(metric, "StreamMissed");
    assert_eq!(directive["Dimensions"], json!([["Stage"]]));
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    let (_, alarm) = alarms
        .iter()
        .find(|(_, a)| {
            a["Properties"]["Namespace"] == namespace && a["Properties"]["MetricName"] == metric
        })
        .unwrap_or_else(|| panic!("no alarm on {namespace}/{metric}"));
    assert_eq!(alarm["Condition"], "StreamEnabled");
    let alarm = &alarm["Properties"];
    assert!(fires_above_zero(alarm), "{alarm}");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "Stage", "Value": emitted["Stage"]}])
    );
    assert_eq!(alarm["TreatMissingData"], "notBreaching");
    assert!(!alarm["AlarmActions"].is_null(), "{alarm}");
}

/// The deliver function's auth-pause metric (its stage-wide line) has an alarm on exactly
/// the namespace, name and dimension it is emitted with.
#[test]
fn a_destination_refusing_the_credentials_raises_an_alarm() {
    let t = template();
    let [per_destination, stage_wide] = sfsync_pipeline::metrics::paused_lines("seg", 12);
    let line: Value = serde_json::from_str(&stage_wide).expect("EMF JSON");
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Dimensions"], json!([["Stage"]]));
    assert_eq!(line["Stage"], "deliver");
    assert_eq!(line["DestinationPaused"], 1);
    let per: Value = serde_json::from_str(&per_destination).expect("EMF JSON");
    assert_eq!(per["Destination"], "seg");
    assert_eq!(per["CallsPaused"], 12);
    let namespace = directive["Namespace"].as_str().expect("namespace");
    let alarm = resources_of(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| a["Properties"].clone())
        .find(|p| p["Namespace"] == namespace && p["MetricName"] == "DestinationPaused")
        .expect("an alarm on DestinationPaused");
    assert!(fires_above_zero(&alarm), "{alarm}");
    assert_eq!(
        alarm["Dimensions"],
        json!([{ "Name": "Stage", "Value": "deliver" }])
    );
    assert!(!alarm["AlarmActions"].is_null());
}
