//! "Did you mean …?": the names closest to a misspelt one, for every place a user types a
//! name sfsync must know (config keys, sync and destination names, Salesforce fields).

/// Up to three candidates close to `name`, best first (case-insensitive; `Foo` matches
/// `Foo__c`, Salesforce's custom suffix). Nothing when no candidate is close.
pub fn suggestions<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let mut scored: Vec<(f64, &str)> = Vec::new();
    for candidate in candidates {
        let lower = candidate.to_ascii_lowercase();
        let bare = lower
            .strip_suffix("__c")
            .or_else(|| lower.strip_suffix("__r"))
            .unwrap_or(&lower);
        let score = if bare == wanted || lower == wanted {
            1.0
        } else {
            let jw = strsim::jaro_winkler(&wanted, &lower).max(strsim::jaro_winkler(&wanted, bare));
            let lev = strsim::levenshtein(&wanted, &lower).min(strsim::levenshtein(&wanted, bare));
            // Two typos in a name longer than a couple of letters are still that name
            // (`client_sercet`), even when Jaro-Winkler, which favours shared prefixes, is
            // lukewarm about it.
            if lev <= 2 && wanted.len() > 2 {
                jw.max(0.9)
            } else {
                jw
            }
        };
        if score >= 0.88 && !scored.iter().any(|(_, c)| *c == candidate) {
            scored.push((score, candidate));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The suggestions as the end of a sentence: `; did you mean "Email"?`, or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let found = suggestions(name, candidates);
    match found.as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean {one:?}?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names() {
        let fields = ["Email", "FirstName", "LastName", "Phone", "Score__c"];
        assert_eq!(suggestions("Emial", fields), vec!["Email"]);
        assert_eq!(suggestions("firstname", fields), vec!["FirstName"]);
        assert_eq!(suggestions("Score", fields), vec!["Score__c"]);
        assert!(suggestions("Zzzzzz", fields).is_empty());
        assert_eq!(did_you_mean("Emial", fields), "; did you mean \"Email\"?");
        assert_eq!(did_you_mean("Zzzzzz", fields), "");
    }

    #[test]
    fn suggests_config_keys_and_sync_names() {
        let keys = ["client_id", "client_secret", "username", "private_key"];
        assert_eq!(suggestions("client_sercet", keys), vec!["client_secret"]);
        let syncs = ["contacts", "leads", "accounts", "tasks"];
        assert_eq!(suggestions("contcts", syncs), vec!["contacts"]);
    }
}
