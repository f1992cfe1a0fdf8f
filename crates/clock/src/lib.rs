//! Time for fleetprep: the one place that reads the system clock.
//!
//! Everything that needs "now" (the engine's timers and history timestamps, the simulated
//! fleet's instance timings, lease expiry) takes an `Arc<dyn Clock>`. Two implementations:
//!
//! - [`SystemClock`] reads the operating system's wall clock.
//! - [`VirtualClock`] holds a time that only moves when told to. The engine advances it to the
//!   next timer whenever every execution is waiting, so a 15-minute Sysprep takes milliseconds
//!   while history timestamps still advance by 15 minutes. A ticking one
//!   ([`VirtualClock::ticking`]) stops only on whole ticks: the time step of the simulated
//!   fleet, whose thousands of jittered retries would otherwise each be an instant of their own.
//!
//! The clock deliberately knows nothing about timers or sleeping: deciding *when* to jump is
//! the engine's job, and sleeping on a real clock is the engine's runtime's job. This crate
//! only answers "what time is it".
//!
//! It also owns the one RFC 3339 formatter ([`format_rfc3339`], [`format_rfc3339_millis`],
//! [`format_rfc3339_seconds`]) and the one parser ([`parse_rfc3339`], [`parse_rfc3339_nanos`]):
//! pure arithmetic on a given time or text, no clock read, shared by the history events, the
//! ASL Choice and Wait states, JSONata's `$fromMillis`/`$toMillis`, the AWS history mapping and
//! the simulated fleet.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use clock::{Clock, VirtualClock};
//!
//! let clock = VirtualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let start = clock.now();
//! clock.advance_by(Duration::from_secs(900));
//! assert_eq!(clock.now().duration_since(start).unwrap(), Duration::from_secs(900));
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// True when time only moves when the owner advances it (see [`VirtualClock`]).
    fn is_virtual(&self) -> bool;

    /// Moves a virtual clock forward to `until` (never backwards). A real clock ignores this:
    /// real time cannot be pushed.
    fn advance_to(&self, until: SystemTime);
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the system clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn is_virtual(&self) -> bool {
        false
    }

    fn advance_to(&self, _until: SystemTime) {}
}

/// A clock that stands still until advanced. Thread-safe; time never moves backwards.
#[derive(Debug)]
pub struct VirtualClock {
    // Invariant: only ever increased. Held as a `SystemTime` (not u64 nanoseconds, which
    // saturate in 2554) so every time the OS type can represent is reachable exactly.
    now: Mutex<SystemTime>,
    // Zero: `advance_to` reaches the time asked for exactly. Otherwise it stops only at
    // whole multiples of the tick since the epoch (see `ticking`).
    tick: Duration,
}

impl VirtualClock {
    /// A virtual clock that reads `start` until advanced. Times before the epoch clamp to it.
    pub fn new(start: SystemTime) -> Self {
        Self::ticking(start, Duration::ZERO)
    }

    /// A virtual clock that [`Clock::advance_to`] moves in whole ticks: asked to go to a
    /// time between two multiples of `tick` (counted from the epoch), it goes to the later
    /// one, so everything due within one tick becomes due at once, at most one tick late.
    ///
    /// This is the time step of a discrete-time simulation. A fleet whose retries are
    /// jittered asks for a different instant per attempt, and the engine spends a round (a
    /// store commit) per instant it stops at: with a tick, the instants a run stops at are
    /// bounded by its simulated time over the tick, not by its number of timers. A zero tick
    /// is [`VirtualClock::new`].
    pub fn ticking(start: SystemTime, tick: Duration) -> Self {
        Self {
            now: Mutex::new(start.max(UNIX_EPOCH)),
            tick,
        }
    }

    /// `time` rounded up to the next whole tick (itself when it is one, or with no tick).
    fn on_tick(&self, time: SystemTime) -> SystemTime {
        let tick = self.tick.as_nanos();
        if tick == 0 {
            return time;
        }
        let since = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let late = (tick - since % tick) % tick;
        // Nanoseconds of less than one tick: a u64 holds any tick a Duration does not overflow.
        time.checked_add(Duration::from_nanos(
            u64::try_from(late).unwrap_or(u64::MAX),
        ))
        .unwrap_or(time)
    }

    /// Moves the clock forward by exactly `by`, tick or not; a move past the latest
    /// representable time leaves the clock where it is (saturating, never panicking).
    pub fn advance_by(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(later) = now.checked_add(by) {
            *now = later;
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_virtual(&self) -> bool {
        true
    }

    fn advance_to(&self, until: SystemTime) {
        let until = self.on_tick(until);
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if until > *now {
            *now = until;
        }
    }
}

/// Days since 1970-01-01 → `(year, month, day)` in the proleptic Gregorian calendar
/// (Howard Hinnant's civil-from-days algorithm; keeps this crate dependency-free).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 for a proleptic Gregorian date; `month` is 1–12 (the inverse of
/// [`civil_from_days`]; the callers' RFC 3339 parsers range-check their fields first).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for whole seconds since the epoch, followed by `.mmm` when
/// `millis` is given, then `Z`.
fn format_secs(secs: i64, millis: Option<i64>) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let frac = millis.map(|ms| format!(".{ms:03}")).unwrap_or_default();
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// AWS-style RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z` (the
/// `timestamp` of Step Functions history events). Times before the epoch format as the epoch.
pub fn format_rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format_secs(d.as_secs() as i64, Some(i64::from(d.subsec_millis())))
}

/// [`format_rfc3339`] for milliseconds since the epoch (negative values are before it), as
/// JSONata's `$fromMillis` and the AWS SDK's `DateTime::to_millis` use.
pub fn format_rfc3339_millis(millis: i64) -> String {
    format_secs(millis.div_euclid(1000), Some(millis.rem_euclid(1000)))
}

/// RFC 3339 UTC to whole seconds, e.g. `2024-05-01T12:00:00Z` (the precision of EC2 console
/// output lines). Times before the epoch format as the epoch.
pub fn format_rfc3339_seconds(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format_secs(secs as i64, None)
}

/// Parses an RFC 3339 timestamp to nanoseconds since the epoch (negative before it), or `None`
/// when the text is not one.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1 to 9 digits, then `Z` or a
/// `±HH:MM` offset, e.g. `2016-03-14T01:59:00Z`, `2016-03-14T01:59:00.123+02:00`. Rejected:
/// a lowercase `t` or `z`, a space instead of `T`, a missing offset, a date that does not exist
/// (`2019-02-29`), out-of-range fields. These are Step Functions' rules for every timestamp
/// an ASL definition or its input gives it: "Timestamps must conform to the RFC3339 profile
/// of ISO 8601, with the further restrictions that an uppercase T must separate the date and
/// time portions, and an uppercase Z must denote that a numeric time zone offset is not
/// present" (developer guide, "Choice workflow state" timestamp comparisons and "Wait workflow
/// state" `Timestamp`), and the timestamps Step Functions writes itself (history events,
/// `$$.Execution.StartTime`, `$$.State.EnteredTime`) are of that form (`…T…` with milliseconds
/// and `Z`). One rule, so one parser, with no leniency switch.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60: RFC 3339 allows a leap second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let digits = &text[start..pos];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset_secs: i64 = match b.get(pos) {
        Some(b'Z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let (h, m) = (num(pos + 1, 2)?, num(pos + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// [`parse_rfc3339_nanos`] as a `SystemTime` (times before the epoch included).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let nanos = parse_rfc3339_nanos(text)?;
    let magnitude = Duration::new(
        u64::try_from(nanos.unsigned_abs() / 1_000_000_000).ok()?,
        (nanos.unsigned_abs() % 1_000_000_000) as u32,
    );
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_never_moves_backwards() {
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let clock = VirtualClock::new(start);
        clock.advance_to(UNIX_EPOCH + Duration::from_secs(50));
        assert_eq!(clock.now(), start);
        clock.advance_to(UNIX_EPOCH + Duration::from_secs(160));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(160));
        clock.advance_by(Duration::from_millis(1500));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(161_500));
    }

    #[test]
    fn virtual_clock_reaches_times_past_2554_and_saturates_without_panicking() {
        // u64 nanoseconds since the epoch end in 2554; the year 2595 must still be reachable
        // exactly, or a timer due then would never be reached.
        let y2595 = UNIX_EPOCH + Duration::from_secs(19_723_132_800); // 2595-01-01
        let clock = VirtualClock::new(UNIX_EPOCH);
        clock.advance_to(y2595);
        assert_eq!(clock.now(), y2595);
        assert_eq!(format_rfc3339_seconds(clock.now()), "2595-01-01T00:00:00Z");
        clock.advance_by(Duration::from_secs(86_400));
        assert_eq!(clock.now(), y2595 + Duration::from_secs(86_400));
        // A move past the latest representable time leaves the clock where it is.
        let before = clock.now();
        clock.advance_by(Duration::MAX);
        assert_eq!(clock.now(), before);
    }

    #[test]
    fn a_ticking_clock_stops_only_on_whole_ticks() {
        let start = UNIX_EPOCH + Duration::from_millis(100_250);
        let clock = VirtualClock::ticking(start, Duration::from_secs(1));
        // Reads its start as given, whatever the tick.
        assert_eq!(clock.now(), start);
        // Two timers within one second: both reach the same instant, the second's end.
        clock.advance_to(UNIX_EPOCH + Duration::from_millis(100_300));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(101));
        clock.advance_to(UNIX_EPOCH + Duration::from_millis(100_900));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(101));
        // A whole tick is reached exactly, never a tick later.
        clock.advance_to(UNIX_EPOCH + Duration::from_secs(160));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(160));
        clock.advance_to(UNIX_EPOCH + Duration::from_nanos(160_000_000_001));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(161));
        // advance_by is exact: only the jumps to a timer are stepped.
        clock.advance_by(Duration::from_millis(1));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(161_001));
    }

    #[test]
    fn real_clock_ignores_advance() {
        let clock = SystemClock;
        let before = clock.now();
        clock.advance_to(before + Duration::from_secs(3600));
        assert!(clock.now() < before + Duration::from_secs(3600));
        assert!(!clock.is_virtual());
    }

    #[test]
    fn rfc3339_formats_agree_and_handle_leap_days_and_negative_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_001);
        assert_eq!(format_rfc3339(t), "2000-02-29T00:00:00.001Z");
        assert_eq!(
            format_rfc3339_millis(951_782_400_001),
            "2000-02-29T00:00:00.001Z"
        );
        assert_eq!(format_rfc3339_seconds(t), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_714_564_800_999),
            "2024-05-01T12:00:00.999Z"
        );
        // One millisecond before the epoch: the fraction stays positive, the second rolls back.
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // Before the epoch a SystemTime clamps to the epoch rather than failing.
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(format_rfc3339_seconds(before), "1970-01-01T00:00:00Z");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
        for days in [-800_000, -1, 0, 59, 60, 11_016, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn rfc3339_parsing_accepts_the_step_functions_profile() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_nanos("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2016-03-14T01:59:00.123456789Z"),
            Some(1_457_920_740_123_456_789)
        );
        assert!(parse_rfc3339_nanos("2020-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339_nanos("2016-12-31T23:59:60Z").is_some());
        assert_eq!(
            parse_rfc3339_nanos("1969-12-31T23:59:59.5Z"),
            Some(-500_000_000)
        );
    }

    #[test]
    fn rfc3339_parsing_rejects_what_step_functions_rejects() {
        for bad in [
            "2016-03-14t01:59:00Z",
            "2016-03-14T01:59:00z",
            "2016-03-14 01:59:00Z",
            "2016-03-14T01:59:00",
            "2016-03-14T01:59Z",
            "2016-03-14T01:59:00.Z",
            "2016-03-14T01:59:00.1234567891Z",
            "2016-03-14T01:59:00+0100",
            "2016-03-14T01:59:00+24:00",
            "2019-02-29T00:00:00Z",
            "2016-04-31T00:00:00Z",
            "2016-13-01T00:00:00Z",
            "2016-03-14T24:00:00Z",
            "2016-03-14T01:59:00Z ",
            "2016-03-14T01:5é:00Z",
            "",
            "x",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad:?}");
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_parsing_inverts_formatting_on_both_sides_of_the_epoch() {
        for millis in [0, 1, 999, 1_700_000_000_123, -1, -86_400_001] {
            let text = format_rfc3339_millis(millis);
            assert_eq!(
                parse_rfc3339_nanos(&text),
                Some(i128::from(millis) * 1_000_000),
                "{text}"
            );
        }
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(parse_rfc3339(&format_rfc3339(time)), Some(time));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_system_time_form_is_the_same_parse() {
        for text in [
            "2023-11-14T22:13:20.123Z",
            "2023-11-14T23:13:20+01:00",
            "1969-12-31T23:59:59Z",
            "2023-11-14t22:13:20Z",
            "2023-11-14T22:13:20z",
            "2023-02-30T00:00:00Z",
            "2023-11-14T22:13:20.1234567891Z",
        ] {
            let nanos = parse_rfc3339_nanos(text);
            let time = parse_rfc3339(text);
            assert_eq!(nanos.is_some(), time.is_some(), "{text}");
            if let (Some(nanos), Some(time)) = (nanos, time) {
                let since = match time.duration_since(UNIX_EPOCH) {
                    Ok(after) => after.as_nanos() as i128,
                    Err(before) => -(before.duration().as_nanos() as i128),
                };
                assert_eq!(since, nanos, "{text}");
            }
        }
    }
}
