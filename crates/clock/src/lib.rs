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
}
