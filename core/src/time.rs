//! Dates and time buckets in a site's time zone (DST-correct).

use chrono::{DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// How time dimensions bucket events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeBucket {
    /// Local hours, labelled `2026-03-04T13:00:00+01:00`.
    Hour,
    /// Local days, labelled `2026-03-04`.
    Day,
    /// Weeks starting Monday, labelled by their Monday.
    Week,
    /// Calendar months, labelled by their first day.
    Month,
}

impl TimeBucket {
    /// The dimension name without `time:` (`"day"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            TimeBucket::Hour => "hour",
            TimeBucket::Day => "day",
            TimeBucket::Week => "week",
            TimeBucket::Month => "month",
        }
    }
}

/// The UTC instant at which local day `d` begins in `tz` (the first valid local
/// time at or after midnight, for zones whose DST change skips midnight).
pub fn day_start(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    for minutes in (0..=180).step_by(15) {
        match tz.from_local_datetime(&(midnight + Duration::minutes(minutes))) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    Utc.from_utc_datetime(&midnight)
}

/// The local date of `t` in `tz`.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// Time buckets covering local dates `from..=to`: boundaries in ms and labels.
#[derive(Debug, Clone)]
pub struct Buckets {
    bounds: Vec<i64>,
    labels: Vec<String>,
    /// Nominal bucket length in ms (hours, days, weeks), for an arithmetic first guess.
    step_ms: Option<i64>,
}

impl Buckets {
    /// Buckets of kind `bucket` covering `from..=to` in `tz`.
    pub fn new(tz: Tz, bucket: TimeBucket, from: NaiveDate, to: NaiveDate) -> Self {
        let end = day_start(tz, to.checked_add_days(Days::new(1)).unwrap_or(to));
        let mut bounds = Vec::new();
        let mut labels = Vec::new();
        match bucket {
            TimeBucket::Hour => {
                let mut t = day_start(tz, from);
                while t < end {
                    bounds.push(t.timestamp_millis());
                    labels.push(
                        t.with_timezone(&tz)
                            .format("%Y-%m-%dT%H:%M:%S%:z")
                            .to_string(),
                    );
                    t += Duration::hours(1);
                }
            }
            TimeBucket::Day | TimeBucket::Week | TimeBucket::Month => {
                let mut d = match bucket {
                    TimeBucket::Week => from.week(Weekday::Mon).first_day(),
                    TimeBucket::Month => from.with_day(1).unwrap_or(from),
                    _ => from,
                };
                while d <= to {
                    bounds.push(day_start(tz, d).timestamp_millis());
                    labels.push(d.format("%Y-%m-%d").to_string());
                    d = match bucket {
                        TimeBucket::Day => d.checked_add_days(Days::new(1)),
                        TimeBucket::Week => d.checked_add_days(Days::new(7)),
                        _ => d.checked_add_months(chrono::Months::new(1)),
                    }
                    .unwrap_or(NaiveDate::MAX);
                }
            }
        }
        bounds.push(end.timestamp_millis());
        let step_ms = match bucket {
            TimeBucket::Hour => Some(3_600_000),
            TimeBucket::Day => Some(86_400_000),
            TimeBucket::Week => Some(7 * 86_400_000),
            TimeBucket::Month => None,
        };
        Self {
            bounds,
            labels,
            step_ms,
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no buckets.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bucket holding `ts_ms`, if any.
    pub fn index(&self, ts_ms: i64) -> Option<usize> {
        let n = self.labels.len();
        if n == 0 || ts_ms < self.bounds[0] || ts_ms >= self.bounds[n] {
            return None;
        }
        let mut i = match self.step_ms {
            // Buckets are nominally equal; DST moves a bound by an hour at most, and
            // the first week may start before the range: step from the guess.
            Some(step) => (((ts_ms - self.bounds[0]) / step) as usize).min(n - 1),
            None => self.bounds.partition_point(|b| *b <= ts_ms) - 1,
        };
        while self.bounds[i] > ts_ms {
            i -= 1;
        }
        while self.bounds[i + 1] <= ts_ms {
            i += 1;
        }
        Some(i)
    }

    /// The bounds `[lo, hi)` of bucket `i`, in ms.
    pub fn bounds(&self, i: usize) -> (i64, i64) {
        (self.bounds[i], self.bounds[i + 1])
    }

    /// The label of bucket `i`.
    pub fn label(&self, i: usize) -> &str {
        &self.labels[i]
    }
}

/// Reading instants as chrono writes them (`2026-03-01T10:00:00Z`, with optional
/// fractional seconds) without chrono's general parser, which was a tenth of the time
/// spent decoding stored events. Any other RFC 3339 form goes to chrono.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, NaiveDate, Utc};
    use serde::{Deserialize, Deserializer};
    use std::borrow::Cow;

    fn digits(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }

    /// The canonical UTC form, or `None` for anything else.
    pub(crate) fn fast(s: &str) -> Option<DateTime<Utc>> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        let nanos = match &b[19..b.len() - 1] {
            [] => 0,
            [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
                digits(frac)? * 10u32.pow(9 - frac.len() as u32)
            }
            _ => return None,
        };
        let date = NaiveDate::from_ymd_opt(
            i32::try_from(digits(&b[0..4])?).ok()?,
            digits(&b[5..7])?,
            digits(&b[8..10])?,
        )?;
        let time = date.and_hms_nano_opt(
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
            nanos,
        )?;
        Some(time.and_utc())
    }

    /// Writes `t` exactly as chrono's serde does (`2026-03-01T10:00:00Z`, with 3, 6 or
    /// 9 fractional digits when there are any) for years 0 to 9999 without a leap
    /// second, or `None` to leave it to chrono. Returns the length written.
    pub(crate) fn format(t: &DateTime<Utc>, out: &mut [u8; 32]) -> Option<usize> {
        use chrono::{Datelike, Timelike};
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        let mut put = |at: usize, n: u32, width: usize| {
            let mut n = n;
            for i in (0..width).rev() {
                out[at + i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, year, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second(), 2);
        let (frac, width) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if width > 0 {
            put(20, frac, width);
        }
        out[4] = b'-';
        out[7] = b'-';
        out[10] = b'T';
        out[13] = b':';
        out[16] = b':';
        let mut len = 19;
        if width > 0 {
            out[19] = b'.';
            len = 20 + width;
        }
        out[len] = b'Z';
        Some(len + 1)
    }

    /// Serialises an instant as chrono does, through [`format`] when it can.
    pub(crate) fn serialize_instant<S: serde::Serializer>(
        t: &DateTime<Utc>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        match format(t, &mut buf) {
            // Only ASCII digits and separators were written.
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
            None => serde::Serialize::serialize(t, s),
        }
    }

    /// [`serialize_instant`] for an optional instant (`None` is skipped by the caller).
    pub(crate) fn serialize_optional_instant<S: serde::Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize_instant(t, s),
            None => s.serialize_none(),
        }
    }

    fn parse<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
        match fast(s) {
            Some(t) => Ok(t),
            None => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(E::custom),
        }
    }

    pub(crate) fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        parse(&Cow::<str>::deserialize(d)?)
    }

    pub(crate) fn optional_instant<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<Cow<'_, str>>::deserialize(d)?
            .map(|s| parse(&s))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The fast path reads back exactly what chrono writes, and never panics.
        #[test]
        fn fast_instants_read_what_chrono_writes(secs in -62_000_000_000i64..250_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = DateTime::from_timestamp(secs, nanos).expect("in range");
            let text = serde_json::to_string(&t).expect("json");
            let s = text.trim_matches('"');
            let mut buf = [0u8; 32];
            if let Some(n) = rfc3339::format(&t, &mut buf) {
                prop_assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), s);
            } else {
                prop_assert!(!(0..=9999).contains(&Datelike::year(&t)));
            }
            prop_assert_eq!(rfc3339::fast(s).or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())), Some(t));
        }

        #[test]
        fn fast_instants_never_panic(s in "\\PC{0,40}") {
            let _ = rfc3339::fast(&s);
        }
    }

    #[test]
    fn fast_instants_refuse_what_they_do_not_know() {
        use rfc3339::fast;
        assert!(fast("2026-03-01T10:00:00Z").is_some());
        assert!(fast("2026-03-01T10:00:00.5Z").is_some());
        assert!(fast("2026-02-30T10:00:00Z").is_none());
        assert!(fast("2026-03-01T10:00:00+01:00").is_none());
        assert!(fast("2026-03-01T25:00:00Z").is_none());
        assert!(fast("2026-03-01 10:00:00Z").is_none());
    }
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn berlin_dst_day_has_23_hours() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let b = Buckets::new(tz, TimeBucket::Hour, d(2026, 3, 29), d(2026, 3, 29));
        assert_eq!(b.len(), 23);
        assert_eq!(b.label(0), "2026-03-29T00:00:00+01:00");
        assert_eq!(b.label(2), "2026-03-29T03:00:00+02:00");
        let autumn = Buckets::new(tz, TimeBucket::Hour, d(2026, 10, 25), d(2026, 10, 25));
        assert_eq!(autumn.len(), 25);
        assert_eq!(autumn.label(2), "2026-10-25T02:00:00+02:00");
        assert_eq!(autumn.label(3), "2026-10-25T02:00:00+01:00");
    }

    #[test]
    fn days_weeks_months_and_index() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let days = Buckets::new(tz, TimeBucket::Day, d(2026, 3, 1), d(2026, 3, 3));
        assert_eq!(days.len(), 3);
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 4, 59, 0).unwrap(); // 23:59 local on Mar 1
        assert_eq!(days.index(t.timestamp_millis()), Some(0));
        let before = Utc.with_ymd_and_hms(2026, 3, 1, 4, 59, 0).unwrap();
        assert_eq!(days.index(before.timestamp_millis()), None);
        let weeks = Buckets::new(tz, TimeBucket::Week, d(2026, 3, 4), d(2026, 3, 20));
        assert_eq!(weeks.label(0), "2026-03-02");
        assert_eq!(weeks.len(), 3);
        let months = Buckets::new(tz, TimeBucket::Month, d(2026, 1, 15), d(2026, 3, 2));
        assert_eq!((months.len(), months.label(2)), (3, "2026-03-01"));
    }

    proptest::proptest! {
        #[test]
        fn index_equals_a_binary_search(
            zone in proptest::sample::select(vec!["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kolkata", "Australia/Lord_Howe", "America/New_York"]),
            kind in proptest::sample::select(vec![TimeBucket::Hour, TimeBucket::Day, TimeBucket::Week, TimeBucket::Month]),
            start_day in 0u64..700,
            len in 0u64..120,
            probe in any::<u32>(),
        ) {
            let tz: Tz = zone.parse().unwrap();
            let from = d(2025, 1, 1).checked_add_days(Days::new(start_day)).unwrap();
            let to = from.checked_add_days(Days::new(if kind == TimeBucket::Hour { len % 3 } else { len })).unwrap();
            let b = Buckets::new(tz, kind, from, to);
            let lo = b.bounds[0] - 3_600_000;
            let hi = *b.bounds.last().unwrap() + 3_600_000;
            let ts = lo + i64::from(probe) % (hi - lo);
            let i = b.bounds.partition_point(|x| *x <= ts);
            let want = (i > 0 && i < b.bounds.len()).then(|| i - 1);
            proptest::prop_assert_eq!(b.index(ts), want);
        }
    }

    #[test]
    fn day_start_when_midnight_is_skipped() {
        // Chile (America/Santiago) springs forward at midnight: 2026-09-06 00:00 does not exist.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let s = day_start(tz, d(2026, 9, 6));
        assert_eq!(s.with_timezone(&tz).date_naive(), d(2026, 9, 6));
    }
}
