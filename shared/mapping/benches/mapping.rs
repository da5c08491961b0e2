//! Mapping throughput on realistic Contact records, beside the floor it cannot beat:
//! parsing the same JSON line and writing it back out (serde_json parse + re-serialize).
//!
//! Run: `cargo bench -p sfsync-mapping --bench mapping`; figures go to docs/benchmarks.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sfsync_mapping::config::ExtractApi;
use sfsync_mapping::{SyncConfig, SyncKind, map_record};
use std::hint::black_box;

const RECORDS: usize = 1_000;

/// About 25 fields, a nested Account, a compound address, some nulls and non-ASCII.
fn contact(i: usize) -> String {
    let first = ["Ada", "José", "Zoë", "Łukasz", "Grace", "山田"][i % 6];
    json!({
        "attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/003{i:015}")},
        "Id": format!("003{i:015}"),
        "SystemModstamp": format!("2024-05-01T12:{:02}:{:02}.000+0000", (i / 60) % 60, i % 60),
        "IsDeleted": false,
        "CreatedDate": "2023-11-02T09:00:00.000+0000",
        "LastModifiedDate": "2024-05-01T12:00:00.000+0000",
        "FirstName": first,
        "MiddleName": null,
        "LastName": format!("Lovelace-{i}"),
        "Suffix": null,
        "Email": format!("person{i}@example.com"),
        "Phone": "+44 20 7946 0000",
        "MobilePhone": null,
        "Title": "Head of Analytics",
        "Department": "Research & Development",
        "Description": "Met at the conference; interested in the enterprise plan.",
        "LeadSource": "Web",
        "HasOptedOutOfEmail": false,
        "DoNotCall": false,
        "Birthdate": "1990-12-10",
        "OwnerId": "005000000000001AAA",
        "AccountId": "001000000000001AAA",
        "Score__c": 87.5,
        "Segment__c": "Enterprise;EMEA",
        "Newsletter__c": true,
        "MailingAddress": {"city": "London", "country": "United Kingdom", "geocodeAccuracy": null,
            "latitude": 51.5074, "longitude": -0.1278, "postalCode": "SW1Y 4LE", "state": null,
            "street": "12 St James's Square"},
        "Account": {"attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001000000000001AAA"},
            "Name": "Analytical Engines Ltd", "Industry": "Technology"}
    })
    .to_string()
}

fn sync() -> SyncConfig {
    let fields = [
        "CreatedDate",
        "FirstName",
        "MiddleName",
        "LastName",
        "Suffix",
        "Email",
        "Phone",
        "MobilePhone",
        "Title",
        "Department",
        "Description",
        "LeadSource",
        "HasOptedOutOfEmail",
        "DoNotCall",
        "Birthdate",
        "OwnerId",
        "AccountId",
        "Score__c",
        "Segment__c",
        "Newsletter__c",
        "MailingAddress",
        "Account.Name",
        "Account.Industry",
    ];
    SyncConfig {
        name: "contacts".into(),
        object: "Contact".into(),
        kind: SyncKind::People,
        user_id: Some("Id".into()),
        group_id: None,
        object_type_id: None,
        event: None,
        event_field: None,
        timestamp_field: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        where_clause: None,
        deletes: true,
        api: ExtractApi::Auto,
        stream: false,
        conversions: None,
    }
}

fn bench(c: &mut Criterion) {
    let lines: Vec<String> = (0..RECORDS).map(contact).collect();
    let sync = sync();
    let mut group = c.benchmark_group("contacts");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let mut out = Vec::with_capacity(4 << 20);

    group.bench_function(
        BenchmarkId::new("baseline_parse_reserialize", RECORDS),
        |b| {
            b.iter(|| {
                out.clear();
                for line in &lines {
                    let v: Value = serde_json::from_str(line).unwrap();
                    serde_json::to_writer(&mut out, &v).unwrap();
                    out.push(b'\n');
                }
                black_box(out.len())
            })
        },
    );
    group.bench_function(BenchmarkId::new("map_record", RECORDS), |b| {
        b.iter(|| {
            out.clear();
            for line in &lines {
                let v: Value = serde_json::from_str(line).unwrap();
                let call = map_record(&sync, v).unwrap();
                serde_json::to_writer(&mut out, &call).unwrap();
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
