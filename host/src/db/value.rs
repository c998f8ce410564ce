//! Decoding PostgreSQL's binary result format into text for the types that travel as text
//! across the plugin boundary (numeric, uuid, date/time). Pure functions; the capability in
//! `plugin::sql` picks which one applies from the column type.

use std::error::Error;
use std::fmt::Write as _;

use tokio_postgres::types::{FromSql, Type};

/// A result cell as the raw binary value the server sent, for any column type.
pub struct RawCell<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawCell<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawCell(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawCell(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// `numeric` binary -> canonical text (e.g. "-12.50", "NaN", "Infinity").
pub fn numeric_to_text(b: &[u8]) -> Option<String> {
    let ndigits = usize::try_from(be_i16(b, 0)?).ok()?;
    let weight = i32::from(be_i16(b, 2)?);
    let sign = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
    let dscale = usize::from(u16::from_be_bytes(b.get(6..8)?.try_into().ok()?));
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| be_i16(b, 8 + 2 * i))
        .collect::<Option<_>>()?;
    let digit = |k: i32| -> i16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                write!(out, "{}", digit(k)).ok()?;
            } else {
                write!(out, "{:04}", digit(k)).ok()?;
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let groups = dscale.div_ceil(4) as i32;
        for j in 1..=groups {
            write!(frac, "{:04}", digit(weight + j)).ok()?;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// 16 bytes -> `8-4-4-4-12` hex.
pub fn uuid_to_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;

fn civil_from_days(days_since_unix: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm, proleptic Gregorian calendar.
    let z = days_since_unix + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn date_text(pg_days: i64) -> String {
    let (y, m, d) = civil_from_days(pg_days + PG_EPOCH_DAYS);
    format!("{y:04}-{m:02}-{d:02}")
}

fn time_text(usecs: i64) -> String {
    let (s, us) = (usecs / 1_000_000, usecs % 1_000_000);
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if us != 0 {
        let frac = format!("{us:06}");
        t.push('.');
        t.push_str(frac.trim_end_matches('0'));
    }
    t
}

/// `timestamp`/`timestamptz` binary -> ISO 8601 (`Z` suffix for `timestamptz`, in UTC).
pub fn timestamp_to_text(b: &[u8], with_tz: bool) -> Option<String> {
    let usecs = i64::from_be_bytes(b.try_into().ok()?);
    match usecs {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let days = usecs.div_euclid(USECS_PER_DAY);
    let rem = usecs.rem_euclid(USECS_PER_DAY);
    Some(format!(
        "{}T{}{}",
        date_text(days),
        time_text(rem),
        if with_tz { "Z" } else { "" }
    ))
}

/// `date` binary -> `YYYY-MM-DD`.
pub fn date_to_text(b: &[u8]) -> Option<String> {
    let days = i32::from_be_bytes(b.try_into().ok()?);
    match days {
        i32::MAX => Some("infinity".into()),
        i32::MIN => Some("-infinity".into()),
        d => Some(date_text(i64::from(d))),
    }
}

/// `time` binary -> `HH:MM:SS[.ffffff]`.
pub fn time_to_text(b: &[u8]) -> Option<String> {
    Some(time_text(i64::from_be_bytes(b.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        // 12345.678 = [1, 2345, 6780], weight 1, dscale 3
        assert_eq!(
            numeric_to_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.05 = [500], weight -1, dscale 2
        assert_eq!(
            numeric_to_text(&numeric(1, -1, 0x4000, 2, &[500])).unwrap(),
            "-0.05"
        );
        // 0.00001 = [1000], weight -2, dscale 5
        assert_eq!(
            numeric_to_text(&numeric(1, -2, 0, 5, &[1000])).unwrap(),
            "0.00001"
        );
        // 10000 = [1], weight 1, dscale 0
        assert_eq!(
            numeric_to_text(&numeric(1, 1, 0, 0, &[1])).unwrap(),
            "10000"
        );
        assert_eq!(numeric_to_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(
            numeric_to_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
        assert!(numeric_to_text(&[0, 1]).is_none());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date_to_text(&0i32.to_be_bytes()).unwrap(), "2000-01-01");
        assert_eq!(date_to_text(&(-1i32).to_be_bytes()).unwrap(), "1999-12-31");
        assert_eq!(date_to_text(&9556i32.to_be_bytes()).unwrap(), "2026-03-01");
        let ts = (9556 * USECS_PER_DAY) + 3_723_500_000;
        assert_eq!(
            timestamp_to_text(&ts.to_be_bytes(), true).unwrap(),
            "2026-03-01T01:02:03.5Z"
        );
        assert_eq!(
            timestamp_to_text(&(-1i64).to_be_bytes(), false).unwrap(),
            "1999-12-31T23:59:59.999999"
        );
        assert_eq!(
            time_to_text(&45_296_000_000i64.to_be_bytes()).unwrap(),
            "12:34:56"
        );
    }

    #[test]
    fn uuids() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_to_text(&b).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
    }
}
