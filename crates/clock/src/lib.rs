//! Time for fleetprep: the one place that reads the system clock.
//!
//! Everything that needs "now" (the engine's timers and history timestamps, the simulated
//! fleet's instance timings, lease expiry) takes an `Arc<dyn Clock>`. Two implementations:
//!
//! - [`SystemClock`] reads the operating system's wall clock.
//! - [`VirtualClock`] holds a time that only moves when told to. The engine advances it to the
//!   next timer whenever every execution is waiting, so a 15-minute Sysprep takes milliseconds
//!   while history timestamps still advance by 15 minutes.
//!
//! The clock deliberately knows nothing about timers or sleeping: deciding *when* to jump is
//! the engine's job, and sleeping on a real clock is the engine's runtime's job. This crate
//! only answers "what time is it".
//!
//! It also owns the one RFC 3339 formatter ([`format_rfc3339`], [`format_rfc3339_millis`],
//! [`format_rfc3339_seconds`]): pure arithmetic on a given time, no clock read, shared by the
//! history events, JSONata's `$fromMillis`, the AWS history mapping and the simulated fleet.
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

use std::sync::atomic::{AtomicU64, Ordering};
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
    // Invariant: nanoseconds since the Unix epoch, only ever increased (fetch_max).
    nanos_since_epoch: AtomicU64,
}

impl VirtualClock {
    /// A virtual clock that reads `start` until advanced. Times before the epoch clamp to it.
    pub fn new(start: SystemTime) -> Self {
        Self {
            nanos_since_epoch: AtomicU64::new(to_nanos(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance_by(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos_since_epoch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }

    fn is_virtual(&self) -> bool {
        true
    }

    fn advance_to(&self, until: SystemTime) {
        self.nanos_since_epoch
            .fetch_max(to_nanos(until), Ordering::SeqCst);
    }
}

fn to_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
}
