//! Test fixtures shared by every test crate (the files live in `tests/fixtures/`).
//!
//! Every end-to-end config is [`SFSYNC_TOML`] cut down and adjusted by a [`Fixture`]: a test
//! says which syncs it runs, which destination it delivers to and which settings it changes,
//! so a change to the shared config is made once, in the file.

use serde_json::json;
use sfsync_mapping::secrets::SecretMap;
use sfsync_simulator::Credentials;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// The sync config of the end-to-end tests, every sync and destination in it: people
/// (`leads`, `contacts` with deletes), objects (`accounts`) and relationships (`relations`)
/// from a simulator org, to the Segment-shaped receiver `seg`, the Customer.io Track server
/// `cio` or the JSON-lines `file`. Its references are secrets ([`secrets`]): `sf_url`,
/// `sf_client_id`, `sf_client_secret`, `receiver_url`, `seg_key`, `cio_url`, `cio_site_id`
/// and `cio_api_key`.
pub const SFSYNC_TOML: &str = include_str!("../fixtures/sfsync.toml");

/// The Segment write key of the fixture's `seg`: it must never appear in a log line.
pub const SEGMENT_WRITE_KEY: &str = "seg-write-key-8c41d0e2";
/// The Customer.io Track credentials of the fixture's `cio`.
pub const CIO_SITE_ID: &str = "cio-site-3f2a";
pub const CIO_API_KEY: &str = "cio-api-key-77b9e1";

/// The values of the fixture's references (`${secret:…}`), as the function secret holds
/// them: the simulator at `sim_url` (started with [`Credentials::demo`]), and both
/// destinations at `receiver_url` (a test with another server sets `cio_url` to it).
pub fn secrets(sim_url: &str, receiver_url: &str) -> serde_json::Value {
    let creds = Credentials::demo();
    json!({
        "sf_url": sim_url,
        "sf_client_id": creds.client_id,
        "sf_client_secret": creds.client_secret,
        "sf_refresh_token": creds.refresh_token,
        "receiver_url": receiver_url,
        "seg_key": SEGMENT_WRITE_KEY,
        "cio_url": receiver_url,
        "cio_site_id": CIO_SITE_ID,
        "cio_api_key": CIO_API_KEY,
    })
}

/// `text` (a fixture's) parsed and its references resolved from [`secrets`]`(sim_url,
/// receiver_url)`: the config an in-process pipeline runs.
pub fn resolve(text: &str, sim_url: &str, receiver_url: &str) -> sfsync_mapping::Config {
    let secrets = SecretMap::from_json(&secrets(sim_url, receiver_url).to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    sfsync_mapping::Config::parse(text)
        .and_then(|c| c.resolve_references(text, &secrets))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// [`SFSYNC_TOML`] with only the named syncs (in the file's order) and the destination
/// `seg`: a test states which syncs it runs, and what it counts (rows of `runs`, calls
/// delivered) follows from them.
pub fn config(syncs: &[&str]) -> String {
    Fixture::syncs(syncs).text()
}

/// [`SFSYNC_TOML`] as one test runs it. Each change names the sync, destination or key it
/// changes and panics when that is not in the config, so an adjustment can never silently
/// miss (as a text replacement would).
#[derive(Debug, Clone)]
pub struct Fixture {
    doc: DocumentMut,
}

impl Fixture {
    /// The named syncs (in the file's order) to the destination `seg`.
    pub fn syncs(names: &[&str]) -> Fixture {
        let mut doc: DocumentMut = SFSYNC_TOML
            .parse()
            .unwrap_or_else(|e| panic!("tests/fixtures/sfsync.toml: {e}"));
        for name in names {
            assert!(
                doc["syncs"]
                    .as_array_of_tables()
                    .is_some_and(|syncs| syncs.iter().any(|t| named(t, name))),
                "the fixture has no sync {name}"
            );
        }
        if let Some(syncs) = doc["syncs"].as_array_of_tables_mut() {
            syncs.retain(|t| names.iter().any(|n| named(t, n)));
        }
        Fixture { doc }.to("seg")
    }

    /// Delivers to the fixture's destination `name` (`seg`, `cio` or `file`) instead.
    pub fn to(mut self, name: &str) -> Fixture {
        let fixture = SFSYNC_TOML
            .parse::<DocumentMut>()
            .unwrap_or_else(|e| panic!("tests/fixtures/sfsync.toml: {e}"));
        let chosen = fixture["destinations"]
            .as_array_of_tables()
            .and_then(|all| all.iter().find(|t| named(t, name)).cloned())
            .unwrap_or_else(|| panic!("the fixture has no destination {name}"));
        let destinations = self.doc["destinations"]
            .as_array_of_tables_mut()
            .unwrap_or_else(|| panic!("the fixture has no [[destinations]]"));
        destinations.clear();
        destinations.push(chosen);
        self
    }

    /// Sets `key` of the `[salesforce]` table.
    pub fn salesforce(mut self, key: &str, value: impl Into<Value>) -> Fixture {
        let table = self.doc["salesforce"]
            .as_table_mut()
            .unwrap_or_else(|| panic!("the fixture has no [salesforce]"));
        table[key] = Item::Value(value.into());
        self
    }

    /// Sets `key` of the sync `name`.
    pub fn sync(mut self, name: &str, key: &str, value: impl Into<Value>) -> Fixture {
        self.sync_table(name)[key] = Item::Value(value.into());
        self
    }

    /// Sets the fields the sync `name` selects.
    pub fn fields(self, name: &str, fields: &[&str]) -> Fixture {
        self.sync(name, "fields", list(fields))
    }

    /// Removes `key` (which it must have) from the sync `name`.
    pub fn without(mut self, name: &str, key: &str) -> Fixture {
        let removed = self.sync_table(name).remove(key);
        assert!(removed.is_some(), "the sync {name} has no {key}");
        self
    }

    /// Sets `key` of the destination.
    pub fn destination(mut self, key: &str, value: impl Into<Value>) -> Fixture {
        let table = self.doc["destinations"]
            .as_array_of_tables_mut()
            .and_then(|all| all.get_mut(0))
            .unwrap_or_else(|| panic!("the fixture has no destination"));
        table[key] = Item::Value(value.into());
        self
    }

    /// The config's text.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    fn sync_table(&mut self, name: &str) -> &mut Table {
        self.doc["syncs"]
            .as_array_of_tables_mut()
            .and_then(|all| all.iter_mut().find(|t| named(t, name)))
            .unwrap_or_else(|| panic!("the config has no sync {name}"))
    }
}

/// A TOML array of strings, for a list setting (`fields`, a destination's `syncs`).
pub fn list(items: &[&str]) -> Array {
    items.iter().copied().collect()
}

fn named(table: &Table, name: &str) -> bool {
    table.get("name").and_then(Item::as_str) == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> sfsync_mapping::Config {
        sfsync_mapping::Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn config_keeps_the_named_syncs_and_the_segment_destination() {
        let text = config(&["contacts", "relations"]);
        let parsed = parse(&text);
        let names: Vec<&str> = parsed.syncs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["contacts", "relations"]);
        let destinations: Vec<&str> = parsed
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(destinations, ["seg"]);
        assert_eq!(parsed.salesforce.page_size, 200);
        // The kept tables are the file's own text.
        assert!(text.contains(
            "fields = [\"Email\", \"FirstName\", \"LastName\", \"Account.Name\"]\ndeletes = true\n"
        ));
    }

    #[test]
    fn the_file_holds_every_sync_and_destination() {
        let all = parse(SFSYNC_TOML);
        let syncs: Vec<&str> = all.syncs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(syncs, ["leads", "contacts", "accounts", "relations"]);
        let destinations: Vec<&str> = all.destinations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(destinations, ["seg", "cio", "file"]);
    }

    #[test]
    fn a_fixture_states_each_change_it_makes() {
        let text = Fixture::syncs(&["leads", "contacts"])
            .to("cio")
            .salesforce("page_size", 2000)
            .fields("contacts", &["Email", "Description"])
            .without("contacts", "deletes")
            .sync("leads", "api", "bulk")
            .destination("endpoint", "http://127.0.0.1:9")
            .text();
        let parsed = parse(&text);
        assert_eq!(parsed.salesforce.page_size, 2000);
        let contacts = parsed.sync("contacts").unwrap_or_else(|| panic!("{text}"));
        assert_eq!(contacts.fields, ["Email", "Description"]);
        assert!(!text.contains("deletes"), "{text}");
        assert!(text.contains("api = \"bulk\""), "{text}");
        assert_eq!(parsed.destinations.len(), 1);
        assert_eq!(parsed.destinations[0].name, "cio");
        assert!(text.contains("endpoint = \"http://127.0.0.1:9\""), "{text}");
    }

    #[test]
    #[should_panic(expected = "the fixture has no sync opportunities")]
    fn a_sync_the_file_lacks_is_refused() {
        Fixture::syncs(&["opportunities"]);
    }

    #[test]
    #[should_panic(expected = "the sync contacts has no api")]
    fn removing_a_setting_the_sync_lacks_is_refused() {
        Fixture::syncs(&["contacts"]).without("contacts", "api");
    }
}
