//! SOQL text and Salesforce's datetime forms.

use chrono::{DateTime, Timelike, Utc};

use crate::cursor::Cursor;

/// A SOQL datetime literal (unquoted): `2024-01-01T00:00:00Z`, with milliseconds only when
/// they are not zero.
pub fn soql_datetime(t: DateTime<Utc>) -> String {
    if t.nanosecond() / 1_000_000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// The form REST results use: `2024-01-01T00:00:00.000+0000`.
pub fn rest_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A quoted SOQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The lower bound of a query window (exclusive): where its first record may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LowerBound {
    /// From the first record.
    Start,
    /// After a record: `(SystemModstamp, Id) > (T, ID)`; an empty id means `>= T`.
    Keyset(Cursor),
    /// Strictly after an instant: `SystemModstamp > T` (second half of a split window).
    AfterTime(DateTime<Utc>),
}

/// The keyset condition of a window, plus the user's condition.
pub(crate) fn window_condition(
    lower: &LowerBound,
    until: DateTime<Utc>,
    user_where: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    match lower {
        LowerBound::Start => {}
        LowerBound::Keyset(cursor) if cursor.id.is_empty() => {
            parts.push(format!(
                "SystemModstamp >= {}",
                soql_datetime(cursor.modstamp)
            ));
        }
        LowerBound::Keyset(cursor) => {
            let t = soql_datetime(cursor.modstamp);
            parts.push(format!(
                "(SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > {}))",
                quote(&cursor.id)
            ));
        }
        LowerBound::AfterTime(t) => parts.push(format!("SystemModstamp > {}", soql_datetime(*t))),
    }
    parts.push(format!("SystemModstamp <= {}", soql_datetime(until)));
    if let Some(w) = user_where.map(str::trim).filter(|w| !w.is_empty()) {
        parts.push(format!("({w})"));
    }
    parts.join(" AND ")
}

pub(crate) fn select(fields: &[String], object: &str, condition: &str, order: bool) -> String {
    let mut soql = format!(
        "SELECT {} FROM {object} WHERE {condition}",
        fields.join(", ")
    );
    if order {
        soql.push_str(" ORDER BY SystemModstamp, Id");
    }
    soql
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).single().unwrap()
    }

    #[test]
    fn datetime_forms() {
        let x = Utc
            .timestamp_millis_opt(1_704_067_200_123)
            .single()
            .unwrap();
        assert_eq!(soql_datetime(x), "2024-01-01T00:00:00.123Z");
        assert_eq!(soql_datetime(t(1_704_067_200)), "2024-01-01T00:00:00Z");
        assert_eq!(rest_datetime(x), "2024-01-01T00:00:00.123+0000");
    }

    #[test]
    fn keyset_condition() {
        let c = Cursor {
            modstamp: t(1_704_067_200),
            id: "003000000000001AAA".into(),
        };
        assert_eq!(
            window_condition(
                &LowerBound::Keyset(c),
                t(1_704_067_260),
                Some("IsActive = true")
            ),
            "(SystemModstamp > 2024-01-01T00:00:00Z OR (SystemModstamp = 2024-01-01T00:00:00Z \
             AND Id > '003000000000001AAA')) AND SystemModstamp <= 2024-01-01T00:01:00Z AND \
             (IsActive = true)"
        );
        let c = Cursor {
            modstamp: t(1_704_067_200),
            id: String::new(),
        };
        assert_eq!(
            window_condition(&LowerBound::Keyset(c), t(1_704_067_260), None),
            "SystemModstamp >= 2024-01-01T00:00:00Z AND SystemModstamp <= 2024-01-01T00:01:00Z"
        );
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote("O'Brien\\"), "'O\\'Brien\\\\'");
    }
}
