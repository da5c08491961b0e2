//! CloudWatch Embedded Metric Format: one JSON line on stdout per report, which Lambda's log
//! pipeline turns into metrics without any API call (no PutMetricData latency or cost).
//! Format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

use serde_json::{Map, Value, json};

use crate::report::RunCounts;

pub const NAMESPACE: &str = "sfsync";

/// Builds one EMF line: `metrics` are (name, unit, value); `dimensions` are set as both the
/// dimension set and top-level members, as the specification requires.
pub fn emf_line(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, u64)],
    timestamp_ms: i64,
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_string(), Value::from(*value));
    }
    Value::Object(root).to_string()
}

/// The counters of one stage's work on one sync, as metrics.
pub fn counts_line(
    stage: &str,
    sync: &str,
    counts: &RunCounts,
    salesforce_api_calls: u64,
) -> String {
    let metrics: Vec<(&str, &str, u64)> = [
        ("RecordsExtracted", counts.extracted),
        ("RecordsMapped", counts.mapped),
        ("RecordsSkipped", counts.skipped + counts.skipped_deliberate),
        ("CallsDelivered", counts.delivered),
        ("CallsDeadLettered", counts.dead),
        ("CallsRetried", counts.retried),
        ("DestinationRequests", counts.destination_requests),
        ("SalesforceApiCalls", salesforce_api_calls),
        // Hard deletes Salesforce can no longer list: alarmed on (infra/template.yaml).
        ("HardDeleteGaps", counts.delete_gaps),
        // Identity lineage sent as merges (sfsync_mapping::mapper, rules 2 and 3).
        ("LeadConversions", counts.conversions),
        ("RecordMerges", counts.merges),
        // Polling's proof of the stream (crate::ledger): versions the stream had not
        // delivered, and versions the ledger could not be read for.
        ("StreamMissed", counts.stream_missed),
        ("StreamUnknown", counts.stream_unknown),
    ]
    .into_iter()
    .filter(|(_, v)| *v > 0)
    .map(|(n, v)| (n, "Count", v))
    .collect();
    emf_line(
        &[("Stage", stage), ("Sync", sync)],
        &metrics,
        chrono::Utc::now().timestamp_millis(),
    )
}

/// Salesforce API calls a whole stage made (dimension `Stage` only: its syncs share one
/// client, so the calls cannot be told apart per sync); nothing when it made none.
pub fn emit_stage_salesforce_calls(stage: &str, calls: u64) {
    if calls > 0 {
        let line = emf_line(
            &[("Stage", stage)],
            &[("SalesforceApiCalls", "Count", calls)],
            chrono::Utc::now().timestamp_millis(),
        );
        println!("{line}");
    }
}

/// The lines of one auth pause: `DestinationPaused` and `CallsPaused` for `destination`
/// (dimension `Destination`: which one), and `DestinationPaused` stage-wide (dimension
/// `Stage` = `deliver`), which the alarm in `infra/template.yaml` watches: an alarm names its
/// dimensions exactly, and destination names are the user's.
pub fn paused_lines(destination: &str, calls: u64) -> [String; 2] {
    let now = chrono::Utc::now().timestamp_millis();
    [
        emf_line(
            &[("Destination", destination)],
            &[
                ("DestinationPaused", "Count", 1),
                ("CallsPaused", "Count", calls),
            ],
            now,
        ),
        emf_line(
            &[("Stage", "deliver")],
            &[("DestinationPaused", "Count", 1)],
            now,
        ),
    ]
}

/// The stage-wide line of `HardDeleteGaps` (dimension `Stage` only), when a run missed hard
/// deletes. A CloudWatch alarm names its metric's dimensions exactly, and sync names are the
/// user's: the alarm in `infra/template.yaml` watches this line, the per-sync line says which.
pub fn delete_gaps_line(stage: &str, counts: &RunCounts) -> Option<String> {
    (counts.delete_gaps > 0).then(|| {
        emf_line(
            &[("Stage", stage)],
            &[("HardDeleteGaps", "Count", counts.delete_gaps)],
            chrono::Utc::now().timestamp_millis(),
        )
    })
}

/// The stage-wide line of `StreamMissed` (dimension `Stage` only), when polling found record
/// versions the stream had not delivered (`crate::ledger`): the alarm in
/// `infra/template.yaml` watches it, the per-sync line says which sync.
pub fn stream_missed_line(stage: &str, counts: &RunCounts) -> Option<String> {
    (counts.stream_missed > 0).then(|| {
        emf_line(
            &[("Stage", stage)],
            &[("StreamMissed", "Count", counts.stream_missed)],
            chrono::Utc::now().timestamp_millis(),
        )
    })
}

/// Prints the counters as an EMF line (Lambda only: locally they are in the run report).
pub fn emit(stage: &str, sync: &str, counts: &RunCounts, salesforce_api_calls: u64) {
    println!("{}", counts_line(stage, sync, counts, salesforce_api_calls));
    if let Some(line) = delete_gaps_line(stage, counts) {
        println!("{line}");
    }
    if let Some(line) = stream_missed_line(stage, counts) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let counts = RunCounts {
            extracted: 2000,
            mapped: 1990,
            skipped: 10,
            ..Default::default()
        };
        let line = counts_line("extract", "contacts", &counts, 3);
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], json!("sfsync"));
        assert_eq!(directive["Dimensions"], json!([["Stage", "Sync"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "RecordsExtracted",
                "RecordsMapped",
                "RecordsSkipped",
                "SalesforceApiCalls"
            ]
        );
        // Every metric and dimension is a top-level member.
        assert_eq!(v["RecordsExtracted"], json!(2000));
        assert_eq!(v["SalesforceApiCalls"], json!(3));
        assert_eq!(v["Sync"], json!("contacts"));
        assert!(v["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_delete_gap_is_a_per_sync_and_a_stage_wide_metric() {
        let counts = RunCounts {
            delete_gaps: 1,
            ..Default::default()
        };
        let line = counts_line("extract", "contacts", &counts, 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["HardDeleteGaps"], json!(1));
        let stage = delete_gaps_line("extract", &counts).unwrap();
        let v: Value = serde_json::from_str(&stage).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], json!([["Stage"]]));
        assert_eq!(directive["Metrics"][0]["Name"], json!("HardDeleteGaps"));
        assert_eq!(v["HardDeleteGaps"], json!(1));
        assert!(delete_gaps_line("extract", &RunCounts::default()).is_none());
    }

    #[test]
    fn conversions_and_merges_are_metrics_of_the_map_stage() {
        let counts = RunCounts {
            mapped: 3,
            conversions: 2,
            merges: 1,
            ..Default::default()
        };
        let line = counts_line("map", "leads", &counts, 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["LeadConversions"], json!(2));
        assert_eq!(v["RecordMerges"], json!(1));
        let report = crate::report::RunReport {
            counts,
            ..crate::report::RunReport::new("20260101T000000Z-abc", "leads", chrono::Utc::now())
        };
        let text = report.to_string();
        assert!(
            text.contains("(2 Lead conversions, 1 record merge sent as merges)"),
            "{text}"
        );
    }
}
