//! Salesforce's date and datetime formats.
//!
//! REST answers `2024-05-01T12:34:56.000+0000` (no colon in the offset, so not RFC 3339);
//! Bulk API CSV and SOQL literals use `2024-05-01T12:34:56.000Z`; date fields are
//! `YYYY-MM-DD`. Everything downstream gets RFC 3339 UTC with milliseconds.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};

/// Parses any datetime form Salesforce emits (and plain RFC 3339).
pub fn parse_salesforce_datetime(value: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    if let Some(t) = parse_rest_form(value) {
        return Ok(t);
    }
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => {
            DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z").map(|t| t.with_timezone(&Utc))
        }
    }
}

/// The REST form `2024-05-01T12:34:56.000+0000`, read by position. It is most of what a
/// sync parses (SystemModstamp and CreatedDate of every record), and chrono's
/// format-string parser costs several times more. Anything else, or anything out of range
/// (a leap second, a 13th month), is `None` and goes to the general parsers, which give
/// the error.
fn parse_rest_form(value: &str) -> Option<DateTime<Utc>> {
    let b = value.as_bytes();
    let shape = b.len() == 28
        && &b[23..] == b"+0000"
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.';
    if !shape {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    let time = NaiveTime::from_hms_milli_opt(
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 23)?,
    )?;
    Some(date.and_time(time).and_utc())
}

/// Parses a datetime, or a date (taken as midnight UTC), for event timestamps such as
/// `ActivityDate`.
pub fn parse_date_or_datetime(value: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    if value.len() == 10 {
        let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")?;
        return Ok(date.and_time(NaiveTime::MIN).and_utc());
    }
    parse_salesforce_datetime(value)
}

/// RFC 3339 in UTC with milliseconds: `2024-05-01T12:34:56.000Z`.
///
/// Written digit by digit: every call's timestamp goes through here, and chrono's
/// formatter (the fallback, for years outside 0–9999 and leap seconds) costs several times
/// more. `writes_what_chrono_writes` pins the two to the same text.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year as u32, 4);
    let rest = [
        ('-', t.month(), 2),
        ('-', t.day(), 2),
        ('T', t.hour(), 2),
        (':', t.minute(), 2),
        (':', t.second(), 2),
        ('.', nanos / 1_000_000, 3),
    ];
    for (separator, value, width) in rest {
        out.push(separator);
        push_digits(&mut out, value, width);
    }
    out.push('Z');
    out
}

/// `value` in `width` decimal digits, zero-padded (`value` < 10^`width`).
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
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
    fn the_positional_rest_parser_agrees_with_chrono() {
        // Every month end, leap days, midnight and the last millisecond of a day, and
        // values that are not valid instants (which must fall through to chrono's error).
        let mut checked = 0;
        for year in [1970, 1999, 2000, 2024, 2100] {
            for month in 1..=13u32 {
                for day in [1u32, 28, 29, 30, 31] {
                    for (h, m, s, ms) in [
                        (0, 0, 0, 0),
                        (23, 59, 59, 999),
                        (12, 34, 56, 7),
                        (24, 0, 0, 0),
                        (23, 60, 60, 0),
                    ] {
                        let text = format!(
                            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}+0000"
                        );
                        let general = DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%z")
                            .map(|t| t.with_timezone(&Utc))
                            .ok();
                        assert_eq!(parse_rest_form(&text), general, "{text}");
                        assert_eq!(parse_salesforce_datetime(&text).ok(), general, "{text}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 13 * 5 * 5);
        for odd in [
            "2024-05-01T12:34:56.000+0100",
            "2024-05-01T12:34:56.0000+000",
            "2024-05-01T12:34:5a.000+0000",
            "２０24-05-01T12:34:56.000+0000",
        ] {
            assert_eq!(parse_rest_form(odd), None, "{odd}");
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

    proptest::proptest! {
        /// From year 0 to 9999 and beyond either end (chrono's own text there), to the
        /// millisecond.
        #[test]
        fn writes_what_chrono_writes(
            millis in -70_000_000_000_000i64..260_000_000_000_000i64,
            nanos in 0u32..1_000_000,
        ) {
            let t = DateTime::from_timestamp_millis(millis).expect("in chrono's range");
            let t = t.with_nanosecond(t.nanosecond() + nanos).expect("within the second");
            proptest::prop_assert_eq!(
                format_rfc3339(t),
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
    }

    #[test]
    fn a_leap_second_and_far_years_are_written_as_chrono_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("a leap second")
            .and_utc();
        assert_eq!(format_rfc3339(leap), "2016-12-31T23:59:60.500Z");
        let far = NaiveDate::from_ymd_opt(12_345, 1, 2)
            .expect("a far date")
            .and_time(NaiveTime::MIN)
            .and_utc();
        assert_eq!(
            format_rfc3339(far),
            far.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        let first = DateTime::from_timestamp_millis(0).expect("the epoch");
        assert_eq!(format_rfc3339(first), "1970-01-01T00:00:00.000Z");
    }
}
