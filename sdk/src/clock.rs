//! Wall-clock time for plugins: seconds since the Unix epoch, and the
//! `YYYYMMDD-HHMMSS` (UTC) stamp that names artifacts and kept copies.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as `YYYYMMDD-HHMMSS`, in UTC: sortable, and
/// safe in a file name.
///
/// ```
/// assert_eq!(stackhost_sdk::clock::utc_stamp(951_782_400), "20000229-000000");
/// ```
pub fn utc_stamp(secs: u64) -> String {
    let (y, m, d) = civil(secs);
    let rest = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `secs` since the epoch as the UTC date `YYYY-MM-DD`.
///
/// ```
/// assert_eq!(stackhost_sdk::clock::utc_date(951_782_400), "2000-02-29");
/// ```
pub fn utc_date(secs: u64) -> String {
    let (y, m, d) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month and day (UTC) of `secs` since the epoch: Howard Hinnant's
/// civil_from_days.
fn civil(secs: u64) -> (i64, i64, i64) {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::{utc_date, utc_stamp};

    #[test]
    fn stamps_are_utc_dates_and_times() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_796_518_923), "2026-12-06");
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_546_740), "20261124-185900");
        assert_eq!(utc_stamp(1_796_520_792), "20261206-013312");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
