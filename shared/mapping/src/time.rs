//! Salesforce's date and datetime formats.
//!
//! REST answers `2024-05-01T12:34:56.000+0000` (no colon in the offset, so not RFC 3339);
//! Bulk API CSV and SOQL literals use `2024-05-01T12:34:56.000Z`; date fields are
//! `YYYY-MM-DD`. Everything downstream gets RFC 3339 UTC with milliseconds.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Parses any datetime form Salesforce emits (and plain RFC 3339).
pub fn parse_salesforce_datetime(value: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => {
            DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z").map(|t| t.with_timezone(&Utc))
        }
    }
}

/// Parses a datetime, or a date (taken as midnight UTC), for event timestamps such as
/// `ActivityDate`.
pub fn parse_date_or_datetime(value: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    if value.len() == 10 {
        let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")?;
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_salesforce_datetime(value)
}

/// RFC 3339 in UTC with milliseconds: `2024-05-01T12:34:56.000Z`.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_salesforce_form_to_the_same_instant() {
        let forms = [
            "2024-05-01T12:34:56.000+0000",
            "2024-05-01T12:34:56.000Z",
            "2024-05-01T12:34:56Z",
            "2024-05-01T14:34:56.000+0200",
            "2024-05-01T14:34:56+02:00",
        ];
        for form in forms {
            let t = parse_salesforce_datetime(form).unwrap();
            assert_eq!(format_rfc3339(t), "2024-05-01T12:34:56.000Z", "{form}");
        }
    }

    #[test]
    fn keeps_milliseconds() {
        let t = parse_salesforce_datetime("2024-05-01T12:34:56.789+0000").unwrap();
        assert_eq!(format_rfc3339(t), "2024-05-01T12:34:56.789Z");
    }

    #[test]
    fn dates_are_midnight_utc() {
        let t = parse_date_or_datetime("2024-05-01").unwrap();
        assert_eq!(format_rfc3339(t), "2024-05-01T00:00:00.000Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_salesforce_datetime("yesterday").is_err());
        assert!(parse_salesforce_datetime("2024-13-01T00:00:00Z").is_err());
        assert!(parse_date_or_datetime("2024-02-30").is_err());
    }
}
