//! From a position in the config text to a key path and back: serde and toml report byte
//! offsets, `validate` reports key paths (`syncs[1].fields[2]`), the user wants both the key
//! and its line.

use super::ConfigProblem;
use super::destinations::COMMON_KEYS;

/// The problem a toml/serde error describes, with its key path and line.
pub(super) fn problem_from_toml(text: &str, e: &toml::de::Error) -> ConfigProblem {
    let locator = Locator::new(text);
    let message = e.message().trim();
    let key = e.span().and_then(|span| locator.key_at(span.start));
    if let Some(table) = key.as_deref().filter(|k| is_destination_table(k))
        && let Some((key, message)) = locator.destination_problem(table, message)
    {
        return ConfigProblem {
            line: locator.line_of(&key),
            key,
            message,
        };
    }
    ConfigProblem {
        key: key.unwrap_or_else(|| "(file)".to_string()),
        line: e.span().map(|span| line_of_offset(text, span.start)),
        message: with_suggestion(message),
    }
}

/// `destinations[N]`, the table itself rather than a key in it.
fn is_destination_table(key: &str) -> bool {
    key.strip_prefix("destinations[")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// The names serde puts between backticks in a message, in order.
fn backticked(message: &str) -> impl Iterator<Item = &str> {
    message.split('`').skip(1).step_by(2)
}

/// Adds the closest valid name to serde's "unknown field `client_sercet`, expected one of
/// `login_url`, …" (and to "unknown variant …" for misspelt values such as a `kind`), so
/// the user reads the fix instead of searching the list.
fn with_suggestion(message: &str) -> String {
    let is_unknown_name =
        message.starts_with("unknown field `") || message.starts_with("unknown variant `");
    if !is_unknown_name {
        return message.to_string();
    }
    // serde names the unknown one first, then every valid one, each between backticks.
    let mut names = backticked(message);
    let Some(unknown) = names.next() else {
        return message.to_string();
    };
    format!("{message}{}", crate::suggest::did_you_mean(unknown, names))
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path in the original text, using toml_edit's spans.
pub(super) struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Locator {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of `key` (e.g. `syncs[1].fields[2]`); when the key is absent, the line of
    /// the deepest key or table that exists on the path.
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let mut best: Option<std::ops::Range<usize>> = None;
        for segment in key.split('.') {
            let (name, index) = match segment.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            let Some((k, item)) = table.get_key_value(name) else {
                break;
            };
            best = k.span().or(best);
            let next: Option<&dyn toml_edit::TableLike> = match (index, item) {
                (Some(i), toml_edit::Item::ArrayOfTables(tables)) => tables.get(i).map(|t| {
                    best = t.span().or(best.clone());
                    t as &dyn toml_edit::TableLike
                }),
                (Some(i), item) => {
                    if let Some(elem) = item.as_array().and_then(|a| a.get(i)) {
                        best = elem.span().or(best.clone());
                    }
                    None
                }
                (None, item) => item.as_table_like(),
            };
            match next {
                Some(t) => table = t,
                None => break,
            }
        }
        best.map(|span| line_of_offset(self.text, span.start))
    }

    /// The key path whose key or value contains `offset` (for serde errors).
    fn key_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let mut found = None;
        visit_table(doc.as_table(), "", offset, &mut found);
        found
    }
}

impl Locator<'_> {
    /// The table at `path` (`destinations[0]`).
    fn table_at(&self, path: &str) -> Option<&toml_edit::Table> {
        let (name, rest) = path.split_once('[')?;
        let index: usize = rest.strip_suffix(']')?.parse().ok()?;
        self.doc
            .as_ref()?
            .get(name)?
            .as_array_of_tables()?
            .get(index)
    }

    /// Serde reads a destination's `type` and settings from a buffered copy of its table
    /// (the enum is tagged by a key inside the table), so those errors point at the table,
    /// not at the key. Names the key the message is about, and says what the type takes.
    fn destination_problem(&self, table_path: &str, message: &str) -> Option<(String, String)> {
        let table = self.table_at(table_path)?;
        let kind = table.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            .filter(|m| *m != "type")
        {
            return Some((
                format!("{table_path}.{missing}"),
                format!("missing field `{missing}`: required by type = \"{kind}\""),
            ));
        }
        if message.starts_with("unknown field `") {
            let mut names = backticked(message);
            let unknown = names.next()?;
            let own: Vec<&str> = names.collect();
            let own_list = match own.as_slice() {
                [] => "none".to_string(),
                own => own
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let suggestion =
                crate::suggest::did_you_mean(unknown, own.iter().chain(COMMON_KEYS).copied());
            return Some((
                format!("{table_path}.{unknown}"),
                format!(
                    "unknown field `{unknown}`: not used by type = \"{kind}\" (its own keys: \
                     {own_list}; every type takes {}){suggestion}",
                    COMMON_KEYS.join(", ")
                ),
            ));
        }
        // "unknown variant `ap`, expected …", "invalid type: string \"x\", expected …": the
        // key whose value the message names before "expected".
        let unknown_variant = message
            .strip_prefix("unknown variant `")
            .and_then(|m| m.split('`').next());
        let unexpected = message.split(", expected").next().unwrap_or(message);
        let key = table.iter().find_map(|(key, item)| {
            let named = match item.as_value()? {
                toml_edit::Value::String(s) => match unknown_variant {
                    Some(variant) => s.value() == variant,
                    None => unexpected.ends_with(&format!("string {:?}", s.value())),
                },
                toml_edit::Value::Integer(i) => {
                    unexpected.ends_with(&format!("integer `{}`", i.value()))
                }
                toml_edit::Value::Boolean(b) => {
                    unexpected.ends_with(&format!("boolean `{}`", b.value()))
                }
                toml_edit::Value::Float(f) => {
                    unexpected.ends_with(&format!("floating point `{}`", f.value()))
                }
                _ => false,
            };
            named.then(|| key.to_string())
        })?;
        Some((format!("{table_path}.{key}"), with_suggestion(message)))
    }
}

fn visit_table(table: &toml_edit::Table, prefix: &str, offset: usize, found: &mut Option<String>) {
    for (k, item) in table.iter() {
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let key_span = table.key(k).and_then(|key| key.span());
        let contains = |span: Option<std::ops::Range<usize>>| {
            span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
        };
        match item {
            toml_edit::Item::Table(t) => {
                if contains(key_span.clone()) {
                    *found = Some(path.clone());
                }
                visit_table(t, &path, offset, found);
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    if contains(t.span()) {
                        *found = Some(p.clone());
                    }
                    visit_table(t, &p, offset, found);
                }
            }
            toml_edit::Item::Value(v) => {
                if contains(key_span) || contains(v.span()) {
                    *found = Some(path);
                }
            }
            toml_edit::Item::None => {}
        }
    }
}
