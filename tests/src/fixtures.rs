//! Test fixtures shared by every test crate (the files live in `tests/fixtures/`).

/// The sync config of the end-to-end tests, every sync in it: people (`contacts`, with
/// deletes), objects (`accounts`) and relationships (`relations`) from a simulator org, to
/// the Segment-shaped receiver `seg`. Its references are secrets: `sf_url`,
/// `sf_client_id`, `sf_client_secret`, `receiver_url` and `seg_key`.
pub const SFSYNC_TOML: &str = include_str!("../fixtures/sfsync.toml");

/// [`SFSYNC_TOML`] with only the named syncs, in the file's order: a test states which
/// syncs it runs, and what it counts (rows of `runs`, calls delivered) follows from them.
pub fn config(syncs: &[&str]) -> String {
    let mut out = String::new();
    for table in tables(SFSYNC_TOML) {
        let keep = !table.starts_with("[[syncs]]")
            || table
                .lines()
                .filter_map(|l| l.strip_prefix("name = "))
                .any(|name| syncs.iter().any(|s| name == format!("\"{s}\"")));
        if keep {
            out.push_str(table);
        }
    }
    out
}

/// The text split before each `[table]` or `[[array]]` header (comments stay with the
/// table after them).
fn tables(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = text.match_indices("\n[").map(|(i, _)| i + 1).collect();
    starts.insert(0, 0);
    starts.push(text.len());
    starts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_the_named_syncs_and_everything_else() {
        let text = config(&["contacts", "relations"]);
        let parsed = sfsync_mapping::Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = parsed.syncs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["contacts", "relations"]);
        assert_eq!(parsed.destinations.len(), 1);
        assert_eq!(parsed.salesforce.page_size, 200);
        let all = sfsync_mapping::Config::parse(SFSYNC_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.syncs.len(), 3);
    }
}
