//! The org's side of the identity-lineage tests (issue 14), local and in AWS: who the
//! humans are, and the conversions and merges a test makes between two runs.

use serde_json::json;
use sfsync_simulator::{Org, SimulatorHandle};

/// The ids of the humans the simulated org holds, sorted: its live Contacts and its live
/// Leads not converted — a store of people must hold exactly one profile for each.
pub fn humans(sim: &SimulatorHandle) -> Vec<String> {
    let org = sim.org();
    let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    let mut ids: Vec<String> = org
        .records("Contact")
        .into_iter()
        .chain(
            org.records("Lead")
                .into_iter()
                .filter(|l| l["IsConverted"] != json!(true)),
        )
        .filter_map(|r| r["Id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// How many Leads of the org are converted (the generated org starts with some).
pub fn converted_leads(sim: &SimulatorHandle) -> usize {
    let org = sim.org();
    let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    org.records("Lead")
        .iter()
        .filter(|l| l["IsConverted"] == json!(true))
        .count()
}

/// The id of a Lead not converted yet.
pub fn unconverted_lead(org: &Org) -> String {
    org.records("Lead")
        .into_iter()
        .find(|l| l["IsConverted"] == json!(false))
        .and_then(|l| l["Id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no unconverted lead"))
}

/// Merges two Contacts other than `except`, as Salesforce's merge does (the loser goes to
/// the Recycle Bin with `MasterRecordId` = the winner); returns (winner, loser).
pub fn merge_two_contacts(org: &mut Org, except: &str) -> (String, String) {
    let contacts: Vec<String> = org
        .records("Contact")
        .iter()
        .filter_map(|c| c["Id"].as_str().map(str::to_string))
        .filter(|id| id != except)
        .take(2)
        .collect();
    let [winner, loser] = [contacts[0].clone(), contacts[1].clone()];
    org.merge("Contact", &winner, &[&loser])
        .unwrap_or_else(|e| panic!("{e}"));
    (winner, loser)
}
