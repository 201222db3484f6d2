//! Rate-limited logging: under a flood (a chattering monitor, a display
//! sending thousands of bad commands) a log line per event would bury
//! everything else and cost more than the event. A [`LogLimit`] lets a few
//! lines through per window and counts the rest; the next line that gets
//! through says how many were suppressed.
//!
//! Pure: the caller passes the time, so tests and replays are exact.

use std::time::{Duration, Instant};

/// Lines allowed per window before suppression starts.
pub const DEFAULT_BURST: u32 = 10;
/// The window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Counts log lines of one kind and decides which to emit.
#[derive(Debug, Clone)]
pub struct LogLimit {
    burst: u32,
    window: Duration,
    started: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new(DEFAULT_BURST, DEFAULT_WINDOW)
    }
}

impl LogLimit {
    /// At most `burst` lines per `window`.
    pub const fn new(burst: u32, window: Duration) -> LogLimit {
        LogLimit {
            burst,
            window,
            started: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the number of
    /// lines suppressed since the last one that got through (say so in the
    /// line when it is not 0), `None` to stay quiet (counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window)
        {
            self.started = Some(now);
            self.in_window = 0;
        }
        if self.in_window < self.burst {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Lines suppressed and not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }
}

/// The suffix for a line after `n` suppressed ones ("" when none were).
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar line(s) suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_the_rest_is_counted() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(3, Duration::from_secs(10));
        let allowed: Vec<_> = (0..1000)
            .filter_map(|i| l.allow(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(allowed, vec![0, 0, 0]);
        assert_eq!(l.pending(), 997);
        // The next window's first line reports the suppressed count.
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), Some(997));
        assert_eq!(l.pending(), 0);
        assert_eq!(suppressed_note(997), " (997 similar line(s) suppressed)");
        assert_eq!(suppressed_note(0), "");
    }
}
