//! Time, injected: the refresh memory (grace, hand-off, ended marks) and the session limits read
//! it through [`Clock`], so tests move time forward instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current time: monotonic for in-process expiries, Unix seconds for what is
/// written into cookies and compared with token expiries.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch.
    fn unix(&self) -> u64;
    /// Milliseconds since the Unix epoch: the time several instances share (a store's expiries).
    fn unix_millis(&self) -> u64 {
        self.unix().saturating_mul(1000)
    }
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    fn unix_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests). Both readings advance together.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    unix_start: u64,
    elapsed_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// Starts at the machine's current time.
    pub fn new() -> Self {
        ManualClock { start: Instant::now(), unix_start: SystemClock.unix(), elapsed_ms: Arc::default() }
    }

    /// Moves time forward by `by` for every clone of this clock.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn unix(&self) -> u64 {
        self.unix_start.saturating_add(self.elapsed().as_secs())
    }

    fn unix_millis(&self) -> u64 {
        self.unix_start.saturating_mul(1000).saturating_add(u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// The clock the process uses unless told otherwise.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_for_every_clone() {
        let clock = ManualClock::new();
        let other = clock.clone();
        let (t0, u0) = (clock.now(), clock.unix());
        assert_eq!(clock.now(), t0);
        other.advance(Duration::from_secs(61));
        assert_eq!(clock.now() - t0, Duration::from_secs(61));
        assert_eq!(clock.unix() - u0, 61);
    }
}
