//! Extraction throughput from the simulator, REST and Bulk API 2.0, and Salesforce API calls
//! per 10,000 records.
//!
//! Run: `cargo bench -p sfsync-salesforce --bench extract` (SFSYNC_BENCH_CONTACTS to change
//! the org size, default 100,000). The simulator runs in the same process, so both share the
//! machine: the figures are a lower bound for the client.

use std::time::Instant;

use sfsync_mapping::config::{ExtractApi, SyncConfig, SyncKind};
use sfsync_salesforce::{Client, ClientConfig, Credentials, Window};
use sfsync_simulator::{Faults, Org, OrgSpec, Simulator};

fn sync() -> SyncConfig {
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
        fields: [
            "Email",
            "FirstName",
            "LastName",
            "Title",
            "Phone",
            "CreatedDate",
            "Department",
            "LeadSource",
            "AccountId",
            "Account.Name",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        where_clause: None,
        deletes: false,
        api: ExtractApi::Rest,
        stream: false,
        conversions: None,
    }
}

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("SFSYNC_BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let org = Org::generate(&OrgSpec::with_contacts(contacts));
    let creds = sfsync_simulator::Credentials::demo();
    let sim = match Simulator::start(org, creds.clone(), Faults::default()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("cannot start the simulator: {e}");
            std::process::exit(1);
        }
    };
    println!("org: {contacts} contacts");
    for api in [ExtractApi::Rest, ExtractApi::Bulk] {
        let client = match Client::new(ClientConfig::new(
            sim.url(),
            Credentials::ClientCredentials {
                client_id: creds.client_id.clone(),
                client_secret: creds.client_secret.clone(),
            },
        )) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("client: {e}");
                std::process::exit(1);
            }
        };
        let mut sync = sync();
        sync.api = api;
        let plan = match client.plan(&sync).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("plan: {e}");
                std::process::exit(1);
            }
        };
        let calls_before = client.usage().calls;
        let start = Instant::now();
        let mut extraction = client.extract(
            &plan,
            Window {
                after: None,
                until: chrono::Utc::now(),
                include_deleted: false,
                api,
                where_clause: None,
            },
        );
        let mut records = 0usize;
        loop {
            match extraction.next_page().await {
                Ok(Some(page)) => records += page.records.len(),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("extract: {e}");
                    std::process::exit(1);
                }
            }
        }
        // A finished Bulk job is deleted, as the extract stage does once its results are
        // enqueued: that call counts too.
        if let Err(e) = extraction.delete_finished_bulk_job().await {
            eprintln!("delete the Bulk job: {e}");
            std::process::exit(1);
        }
        let secs = start.elapsed().as_secs_f64();
        let calls = client.usage().calls - calls_before;
        println!(
            "{:<5} {records} records in {secs:.2} s = {:.0} records/s; {calls} API calls = {:.1} per 10,000 records",
            format!("{api:?}"),
            records as f64 / secs,
            calls as f64 * 10_000.0 / records.max(1) as f64
        );
    }
    sim.shutdown().await;
}
