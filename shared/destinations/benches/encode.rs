//! Encoding throughput per destination: 10,000 calls (a realistic mix of identify, track,
//! object, relationship and delete calls) encoded and packed into requests, without
//! sending. Prints how many requests each destination needs for those 10,000 calls when
//! batches are filled to its limits.
//!
//! Run: `cargo bench -p sfsync-destinations --bench encode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sfsync_destinations::Destination;
use sfsync_mapping::{Call, DestinationConfig, DestinationKind};

const CALLS: usize = 10_000;

fn source(kind: &str, object: &str, i: usize) -> Value {
    json!({ "sfsync": { "sync": format!("{kind}-sync"), "object": object, "kind": kind, "recordId": format!("003{i:015}") } })
}

/// Call `i` of the mix: 40% identify, 30% track, 15% object, 10% relationship, 5% delete.
fn call(i: usize) -> Call {
    let message_id = format!("6f1d3c2a-9b7e-4c5d-8a41-{i:012}");
    let ts = "2024-05-01T12:34:56.789Z";
    let value = match i % 20 {
        0..=7 => json!({
            "type": "identify", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"),
            "traits": { "email": format!("person{i}@example.com"), "firstName": "Ada", "lastName": "Lovelace",
                        "title": "VP Engineering", "phone": "+44 20 7946 0958", "LeadSource": "Web",
                        "created_at": 1_700_000_000, "Account.Name": "Acme Corporation" },
            "context": source("people", "Contact", i),
        }),
        8..=13 => json!({
            "type": "track", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "event": "Call Logged",
            "properties": { "Subject": "Quarterly review", "Status": "Completed", "Priority": "Normal",
                            "CallDurationInSeconds": 1260, "Description": "Discussed renewal terms and next steps." },
            "context": source("events", "Task", i),
        }),
        14..=16 => json!({
            "type": "group", "messageId": message_id, "timestamp": ts,
            "groupId": format!("001A{i:014}"), "anonymousId": format!("sfsync-object-1-001A{i:014}"),
            "traits": { "name": "Acme Corporation", "Industry": "Manufacturing", "AnnualRevenue": 125_000_000,
                        "NumberOfEmployees": 4200, "BillingCountry": "United Kingdom", "object_type_id": "1" },
            "context": source("objects", "Account", i),
        }),
        17 | 18 => json!({
            "type": "group", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "groupId": format!("001A{i:014}"),
            "traits": { "object_type_id": "1", "relationshipAttributes": { "Roles": "Decision Maker", "IsDirect": true } },
            "context": source("relationships", "AccountContactRelation", i),
        }),
        _ => json!({
            "type": "delete", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "entity": "person",
            "context": source("people", "Contact", i),
        }),
    };
    serde_json::from_value(value).expect("a valid call")
}

fn config(kind: DestinationKind) -> DestinationConfig {
    let mut c = DestinationConfig {
        name: kind.as_str().to_string(),
        kind,
        region: None,
        endpoint: None,
        syncs: None,
        api_key: None,
        site_id: None,
        write_key: None,
        project_token: None,
        project_id: None,
        username: None,
        secret: None,
        secret_key: None,
        group_key: None,
        id_merge: None,
        url: None,
        path: None,
        gzip: None,
        max_batch_calls: None,
        max_batch_bytes: None,
        timeout_seconds: None,
        retry_budget_seconds: None,
    };
    match kind {
        DestinationKind::Customerio => c.api_key = Some("bench-key".into()),
        DestinationKind::Amplitude => {
            c.api_key = Some("bench-key".into());
            // Person deletes go to the User Privacy API (without it they are refused unsent).
            c.secret_key = Some("bench-secret-key".into());
        }
        DestinationKind::CustomerioTrack => {
            c.site_id = Some("bench-site".into());
            c.api_key = Some("bench-key".into());
        }
        DestinationKind::Segment => c.write_key = Some("bench-key".into()),
        DestinationKind::Rudderstack => {
            c.write_key = Some("bench-key".into());
            c.endpoint = Some("https://dataplane.example.com".into());
        }
        DestinationKind::Mixpanel => c.project_token = Some("bench-token".into()),
        DestinationKind::Webhook => {
            c.url = Some("https://hooks.example.com/sfsync".into());
            c.secret = Some("whsec_YmVuY2gtc2lnbmluZy1rZXk=".into());
        }
        DestinationKind::File => c.path = Some("/dev/null".into()),
    }
    c
}

const KINDS: [DestinationKind; 8] = [
    DestinationKind::Customerio,
    DestinationKind::CustomerioTrack,
    DestinationKind::Segment,
    DestinationKind::Rudderstack,
    DestinationKind::Mixpanel,
    DestinationKind::Amplitude,
    DestinationKind::Webhook,
    DestinationKind::File,
];

fn encode(c: &mut Criterion) {
    let calls: Vec<Call> = (0..CALLS).map(call).collect();
    let http = sfsync_destinations::http_client().expect("client");
    let destinations: Vec<Destination> = KINDS
        .iter()
        .map(|k| Destination::new(&config(*k), http.clone()).expect("destination"))
        .collect();

    println!("\nrequests per {CALLS} calls (mixed workload, batches filled to each API's limits):");
    for d in &destinations {
        let plan = d.plan(&calls);
        let bytes: usize = plan.requests.iter().map(|r| r.body_bytes).sum();
        let limits = d.limits();
        println!(
            "  {:<17} {:>5} requests  {:>6.1} MB  (rejected {}; limits: {} calls, {} B/batch, {} B/call)",
            d.kind().as_str(),
            plan.requests.len(),
            bytes as f64 / 1e6,
            plan.rejected.len(),
            limits.max_calls,
            limits.max_batch_bytes,
            limits.max_call_bytes,
        );
    }

    let mut group = c.benchmark_group("encode_10k_calls");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(20);
    for d in &destinations {
        group.bench_function(d.kind().as_str(), |b| {
            b.iter(|| black_box(d.plan(black_box(&calls))))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
