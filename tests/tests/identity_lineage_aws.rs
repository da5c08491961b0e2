//! Identity lineage in AWS (issue 14): the extract, map and deliver Lambda handlers against
//! moto and the Salesforce simulator, delivering to a Customer.io Track API v2 server that
//! keeps people. SQS keeps no order and several deliveries run at once, so the calls message
//! holding a conversion's merge can be delivered before the message holding the identify of
//! the Contact it merges into — and Customer.io ignores a merge whose primary does not exist.
//! Here every message holding a merge is delivered first, alone; the test asserts on the
//! server's state that there is still exactly one person per human, holding the Contact's
//! attributes and the Lead's attributes and history, and that delivering the merge again
//! (SQS delivers at least once) changes nothing.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::{Value, json};
use sfsync_e2e::aws_harness::AwsStack;
use sfsync_e2e::fixtures::{CIO_API_KEY, CIO_SITE_ID, Fixture, secrets};
use sfsync_e2e::lineage::{converted_leads, humans, merge_two_contacts, unconverted_lead};
use sfsync_e2e::local::org;
use sfsync_e2e::profiles::PeopleServer;
use sfsync_e2e::{receive_event, record_fields, send_body};
use sfsync_extract::ExtractInput;
use sfsync_mapping::{Call, CallType};
use sfsync_pipeline::deliver::decode_delivery;
use sfsync_pipeline::report::RunStatus;
use sfsync_simulator::{Credentials, Faults, Simulator, SimulatorHandle};

struct World {
    aws: AwsStack,
    sim: SimulatorHandle,
    cio: PeopleServer,
}

/// The shared fixture's Leads and Contacts to its Customer.io Track destination (the people
/// server), each queue dead-lettering after 3 receives.
async fn world() -> World {
    let sim = Simulator::start(org(20), Credentials::demo(), Faults::default())
        .await
        .unwrap_or_else(|e| panic!("simulator: {e}"));
    let cio = PeopleServer::start(CIO_SITE_ID, CIO_API_KEY).await;
    let config = Fixture::syncs(&["leads", "contacts"]).to("cio").text();
    // The people server stands for every destination of the fixture; `cio` is the one used.
    let mut secret = secrets(&sim.url(), &cio.url);
    secret["sfsync_config"] = json!(config);
    World {
        aws: AwsStack::create("sfsync-lineage", 3, &secret).await,
        sim,
        cio,
    }
}

impl World {
    /// One scheduled run: extract every sync, then map everything it enqueued. Returns the
    /// calls messages waiting for delivery (received, not yet acknowledged).
    async fn extract_and_map(&self) -> Vec<SqsMessage> {
        let state = self.aws.extract_state().await;
        let input: ExtractInput =
            serde_json::from_value(json!({})).unwrap_or_else(|e| panic!("{e}"));
        let out = sfsync_extract::handle(&state, input, "req-1", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for report in &out.reports {
            assert_eq!(report.status, RunStatus::Complete, "{report}");
        }
        let failed = self.aws.map_all().await;
        assert!(failed.is_empty(), "map failures: {failed:?}");
        self.aws.receive_all(&self.aws.delivery_q()).await
    }

    /// One invocation of the deliver function with `messages` as its event; acknowledges
    /// what it settled, as the event source mapping does.
    async fn deliver(&self, messages: Vec<SqsMessage>) {
        let state = self.aws.deliver_state().await;
        let mut event = SqsEvent::default();
        event.records = messages;
        let failed = self.aws.deliver_event(&state, event).await;
        assert!(failed.is_empty(), "deliver failures: {failed:?}");
    }

    /// Delivers a run's calls messages in the worst order SQS may choose: every message
    /// holding a merge first, each alone, then the others.
    async fn deliver_merges_first(&self, messages: Vec<SqsMessage>) {
        let (merges, others): (Vec<SqsMessage>, Vec<SqsMessage>) = messages
            .into_iter()
            .partition(|m| calls(m).iter().any(|c| c.call_type == CallType::Merge));
        assert!(!merges.is_empty(), "the run has merges");
        for message in merges {
            self.deliver(vec![message]).await;
        }
        for chunk in others.chunks(10) {
            self.deliver(chunk.to_vec()).await;
        }
    }
}

/// The calls a calls message carries.
fn calls(message: &SqsMessage) -> Vec<Call> {
    let body = message.body.as_deref().unwrap_or_default();
    decode_delivery(body)
        .unwrap_or_else(|e| panic!("not a calls message: {e}"))
        .calls
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_delivered_before_its_survivors_identify_still_leaves_one_person_per_human() {
    let w = world().await;

    // Run 1. The generated org already holds converted Leads: their merges are delivered
    // before the identifies of the Contacts they merge into.
    assert!(converted_leads(&w.sim) > 0, "the org has converted Leads");
    let waiting = w.extract_and_map().await;
    w.deliver_merges_first(waiting).await;
    let people = w.cio.people();
    assert!(people.ignored.is_empty(), "ignored: {:?}", people.ignored);
    assert_eq!(people.ids(), humans(&w.sim), "one person per human");

    // Between the runs: a Lead with a history in Customer.io is converted (the Contact then
    // gets an address of its own), and two Contacts are merged.
    let (lead, contact, winner, loser) = {
        let org = w.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let lead_id = unconverted_lead(&org);
        let converted = org
            .convert_lead(&lead_id, None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        org.update(
            "Contact",
            &converted.contact_id,
            record_fields(json!({"Email": "ada@customer.example"})),
        );
        let (winner, loser) = merge_two_contacts(&mut org, &converted.contact_id);
        (lead_id, converted.contact_id, winner, loser)
    };
    // What Customer.io holds of the Lead besides sfsync's attributes: its activity.
    w.cio.apply(json!({
        "type": "person", "identifiers": {"id": lead}, "action": "event",
        "name": "Webinar Attended", "id": "01JDQ0000000000000000WEBNR", "timestamp": 1764000000,
    }));
    // The Lead's attributes as Customer.io holds them (from run 1: a converted Lead's new
    // version is sent as its merge only).
    let lead_company = w
        .cio
        .people()
        .profiles
        .get(&lead)
        .and_then(|p| p.get("Company").cloned())
        .unwrap_or_else(|| panic!("the Lead {lead} has no profile with a Company"));

    // Run 2: the message with the conversion's merge is delivered before the one with the
    // new Contact's identify.
    let waiting = w.extract_and_map().await;
    let merge_message = waiting
        .iter()
        .find(|m| {
            calls(m).iter().any(|c| {
                c.call_type == CallType::Merge && c.previous_id.as_deref() == Some(lead.as_str())
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no message with the conversion's merge"));
    assert!(
        !calls(&merge_message).iter().any(|c| {
            c.call_type == CallType::Identify && c.user_id.as_deref() == Some(contact.as_str())
        }),
        "the Contact's identify travels in another message"
    );
    w.deliver_merges_first(waiting).await;

    let people = w.cio.people();
    assert!(people.ignored.is_empty(), "ignored: {:?}", people.ignored);
    let merged_at = people
        .operations
        .iter()
        .position(|o| o["action"] == "merge" && o["secondary"]["id"] == json!(lead));
    let identified_at = people.operations.iter().position(|o| {
        o["action"] == "identify"
            && o["identifiers"]["id"] == json!(contact)
            && o["attributes"].is_object()
    });
    assert!(
        matches!((merged_at, identified_at), (Some(m), Some(i)) if m < i),
        "the merge reached Customer.io before the Contact's identify: {merged_at:?} {identified_at:?}"
    );
    assert_eq!(people.ids(), humans(&w.sim), "one person per human");
    assert!(
        !people.profiles.contains_key(&lead),
        "the Lead lives on as its Contact"
    );
    assert!(
        !people.profiles.contains_key(&loser),
        "the merged Contact is folded in"
    );
    assert!(people.profiles.contains_key(&winner));
    let ada = &people.profiles[&contact];
    assert_eq!(
        ada["email"], "ada@customer.example",
        "the Contact's own attributes"
    );
    assert_eq!(ada["Company"], lead_company, "the Lead's attributes");
    let history: Vec<&Value> = people
        .events
        .get(&contact)
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    assert!(
        history.iter().any(|e| e["name"] == "Webinar Attended"),
        "the Lead's history moved to the Contact: {history:?}"
    );

    // SQS delivers at least once: the merge's message again changes nothing.
    let body = merge_message.body.clone().unwrap_or_default();
    send_body(&w.aws.sqs, &w.aws.delivery_q(), body).await;
    let again = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    assert_eq!(again.records.len(), 1);
    w.deliver(again.records).await;
    let after = w.cio.people();
    assert!(after.ignored.is_empty(), "ignored: {:?}", after.ignored);
    assert_eq!(
        after.profiles, people.profiles,
        "a re-sent merge is harmless"
    );
    assert_eq!(after.events, people.events);
}
