//! Stored field values and the textual formats Salesforce uses for them.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// One stored field value. Strings are `Arc<str>` so that the generator can share pooled
/// values (names, picklist values, owner ids) between a million rows without copying them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(Arc<str>),
    /// Milliseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// Days since 1970-01-01.
    Date(i32),
}

impl Val {
    pub(crate) fn str(s: &str) -> Val {
        Val::Str(Arc::from(s))
    }

    pub(crate) fn opt_str(s: Option<&Arc<str>>) -> Val {
        match s {
            Some(s) => Val::Str(s.clone()),
            None => Val::Null,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub(crate) fn as_bool(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// Appends the value as JSON text to `out` (the hot path of query pages).
    pub(crate) fn write_json(&self, out: &mut String) {
        match self {
            Val::Null => out.push_str("null"),
            Val::Bool(true) => out.push_str("true"),
            Val::Bool(false) => out.push_str("false"),
            Val::Int(i) => out.push_str(&i.to_string()),
            Val::Num(n) => write_json_number(*n, out),
            Val::Str(s) => write_json_string(s, out),
            Val::DateTime(ms) => {
                out.push('"');
                out.push_str(&format_rest_datetime(*ms));
                out.push('"');
            }
            Val::Date(d) => {
                out.push('"');
                out.push_str(&format_date(*d));
                out.push('"');
            }
        }
    }

    /// The value as a Bulk API CSV cell (null is the empty string).
    pub(crate) fn to_csv(&self) -> String {
        match self {
            Val::Null => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Num(n) => format_number(*n),
            Val::Str(s) => s.to_string(),
            Val::DateTime(ms) => format_bulk_datetime(*ms),
            Val::Date(d) => format_date(*d),
        }
    }

    /// SOQL ordering between two non-null values of one field: strings ignore case, as
    /// Salesforce's default collation does for ORDER BY and range filters.
    pub(crate) fn cmp_soql(&self, other: &Val, case_sensitive: bool) -> Option<Ordering> {
        match (self, other) {
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
            (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
            (Val::Int(a), Val::Num(b)) => (*a as f64).partial_cmp(b),
            (Val::Num(a), Val::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Val::DateTime(a), Val::DateTime(b)) => Some(a.cmp(b)),
            (Val::Date(a), Val::Date(b)) => Some(a.cmp(b)),
            (Val::Str(a), Val::Str(b)) => {
                if case_sensitive {
                    Some(a.as_bytes().cmp(b.as_bytes()))
                } else {
                    Some(cmp_ignore_case(a, b))
                }
            }
            _ => None,
        }
    }
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    let mut ai = a.chars().flat_map(char::to_lowercase);
    let mut bi = b.chars().flat_map(char::to_lowercase);
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Doubles keep a fractional part (`1000.0`) as Salesforce's JSON does.
fn format_number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.1}")
    } else {
        format!("{n}")
    }
}

fn write_json_number(n: f64, out: &mut String) {
    if n.is_finite() {
        out.push_str(&format_number(n));
    } else {
        out.push_str("null");
    }
}

pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(crate) fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `2024-05-01T12:34:56.000+0000`: REST datetimes have no colon in the offset.
pub(crate) fn format_rest_datetime(ms: i64) -> String {
    to_datetime(ms)
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// `2024-05-01T12:34:56.000Z`: the Bulk API's CSV datetime form.
pub(crate) fn format_bulk_datetime(ms: i64) -> String {
    to_datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(crate) fn format_date(days: i32) -> String {
    match epoch_date().checked_add_signed(chrono::Duration::days(i64::from(days))) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => String::new(),
    }
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

pub(crate) fn date_to_days(d: NaiveDate) -> i32 {
    (d - epoch_date()).num_days() as i32
}

/// Parses the datetime spellings that appear in SOQL literals, REST payloads and the
/// `/deleted` parameters: `…Z`, `…+00:00`, `…+0000`, with or without fractional seconds.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    None
}

/// A datetime without any offset, as tests may write it in `insert` payloads.
pub(crate) fn parse_naive_datetime(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn formats_match_salesforce() {
        let ms = parse_datetime("2024-05-01T12:34:56Z")
            .map(|d| d.timestamp_millis())
            .unwrap_or_default();
        assert_eq!(format_rest_datetime(ms), "2024-05-01T12:34:56.000+0000");
        assert_eq!(format_bulk_datetime(ms), "2024-05-01T12:34:56.000Z");
        assert_eq!(
            parse_datetime("2024-05-01T12:34:56.000+0000").map(|d| d.timestamp_millis()),
            Some(ms)
        );
        assert_eq!(
            parse_datetime("2024-05-01T14:34:56+02:00").map(|d| d.timestamp_millis()),
            Some(ms)
        );
        let mut s = String::new();
        Val::Num(1000.0).write_json(&mut s);
        assert_eq!(s, "1000.0");
        assert_eq!(Val::Num(12.5).to_csv(), "12.5");
        let days = parse_date("2024-02-29")
            .map(date_to_days)
            .unwrap_or_default();
        assert_eq!(format_date(days), "2024-02-29");
    }

    #[test]
    fn json_strings_escape_controls() {
        let mut s = String::new();
        write_json_string("a\"b\\c\nd\u{1}", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\"");
        let parsed: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
        assert_eq!(parsed, Value::String("a\"b\\c\nd\u{1}".to_string()));
    }
}
