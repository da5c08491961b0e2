//! Identity lineage end to end (issue 14): a Lead converted and two Contacts merged between
//! two runs leave exactly one person per human in a destination that keeps profiles (a
//! Customer.io Track API v2 server that applies identify, merge and delete as Customer.io
//! documents them), and a merge never overtakes the identify of the person it merges into.

use chrono::Duration;
use serde_json::json;
use sfsync_e2e::fixtures::Fixture;
use sfsync_e2e::lineage::{converted_leads, humans, merge_two_contacts, unconverted_lead};
use sfsync_e2e::local::{CIO_API_KEY, CIO_SITE_ID, Local, org};
use sfsync_e2e::profiles::PeopleServer;
use sfsync_e2e::record_fields;
use sfsync_pipeline::report::RunStatus;
use sfsync_simulator::Faults;

/// The shared fixture's Leads and Contacts (the Lead sync written FIRST: a run must still
/// deliver the Contacts' identifies before the conversions' merges into them) to its
/// Customer.io Track destination, here the people server at `track_url`.
fn config(track_url: &str) -> String {
    Fixture::syncs(&["leads", "contacts"])
        .to("cio")
        .destination("endpoint", track_url)
        .text()
}

async fn run(w: &Local) -> Vec<sfsync_pipeline::report::RunReport> {
    let at = {
        let org = w.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.advance_clock(Duration::minutes(2));
        org.now()
    };
    let reports = w.run_at(at).await;
    for report in &reports {
        assert_eq!(report.status, RunStatus::Complete, "{report}");
        assert_eq!(report.counts.dead, 0, "{report}");
    }
    reports
}

/// (conversions, merges) a run's report of `sync` counted.
fn lineage_counts(reports: &[sfsync_pipeline::report::RunReport], sync: &str) -> (u64, u64) {
    let report = reports
        .iter()
        .find(|r| r.sync == sync)
        .unwrap_or_else(|| panic!("no report of {sync}"));
    (report.counts.conversions, report.counts.merges)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversion_and_a_merge_between_two_runs_leave_one_person_per_human() {
    let server = PeopleServer::start(CIO_SITE_ID, CIO_API_KEY).await;
    let w = Local::start(&config(&server.url), org(20), Faults::default()).await;

    // Run 1: the generated org already holds converted Leads; they merge into Contacts the
    // same run identifies.
    let converted_at_start = converted_leads(&w.sim) as u64;
    assert!(
        converted_at_start > 0,
        "the generated org has converted Leads"
    );
    let first = run(&w).await;
    assert_eq!(lineage_counts(&first, "leads"), (converted_at_start, 0));
    assert_eq!(server.people().ids(), humans(&w.sim));
    assert!(
        server.people().ignored.is_empty(),
        "{:?}",
        server.people().ignored
    );

    // Between the runs: a Lead is converted (a new Contact) and two Contacts are merged.
    let (lead, contact, winner, loser, email) = {
        let org = w.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.advance_clock(Duration::minutes(2));
        let lead_id = unconverted_lead(&org);
        org.update(
            "Lead",
            &lead_id,
            record_fields(json!({"Email": "converted.lead@example.com"})),
        );
        let converted = org
            .convert_lead(&lead_id, None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let (winner, loser) = merge_two_contacts(&mut org, &converted.contact_id);
        (
            lead_id,
            converted.contact_id,
            winner,
            loser,
            "converted.lead@example.com",
        )
    };
    assert!(server.people().ids().contains(&lead));
    assert!(server.people().ids().contains(&loser));

    let second = run(&w).await;
    assert_eq!(lineage_counts(&second, "leads").0, 1, "the new conversion");
    // The loser comes from queryAll and again from getDeleted (as the same merge call, the
    // same messageId): at least one merge is counted.
    let (conversions, merges) = lineage_counts(&second, "contacts");
    assert_eq!(conversions, 0);
    assert!(merges >= 1, "the merge was not counted");
    let people = server.people();
    assert!(
        people.ignored.is_empty(),
        "merges ignored: {:?}",
        people.ignored
    );
    let ids = server.people().ids();
    assert_eq!(ids, humans(&w.sim), "exactly one profile per human");
    assert!(
        !ids.contains(&lead),
        "the converted Lead lives on as its Contact"
    );
    assert!(
        !ids.contains(&loser),
        "the merged Contact is folded into the winner"
    );
    assert!(ids.contains(&winner) && ids.contains(&contact));
    let with_email: Vec<&String> = people
        .profiles
        .iter()
        .filter(|(_, p)| p.get("email") == Some(&json!(email)))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(with_email, vec![&contact]);
    // The merges were sent as merges, never as deletes of the people.
    let merges: Vec<(String, String)> = people
        .operations
        .iter()
        .filter(|o| o["action"] == "merge")
        .map(|o| {
            (
                o["secondary"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["primary"]["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        merges.contains(&(lead.clone(), contact.clone())),
        "{merges:?}"
    );
    assert!(
        merges.contains(&(loser.clone(), winner.clone())),
        "{merges:?}"
    );
    // getDeleted lists the merged loser too: it must come back as its merge (the same
    // call), never as a delete of the merged person.
    assert!(
        !people
            .operations
            .iter()
            .any(|o| o["action"] == "delete" && o["identifiers"]["id"] == json!(loser)),
        "the merged loser was deleted downstream: {:?}",
        people.operations
    );
}
