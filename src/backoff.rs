//! The reconnect delay every link uses (serial ports, the daemon's and the
//! displays' MQTT links): it doubles from a minimum to a cap, and starts
//! again from the minimum after a connection that worked. Pure: it only
//! computes delays; the caller sleeps.

use std::time::Duration;

/// The broker links' first reconnect delay ([`Backoff::default`]).
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The broker links' longest reconnect delay ([`Backoff::default`]).
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff between reconnection attempts.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// The broker links' bounds: [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
    fn default() -> Self {
        Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
    }
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The delay before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Connected (and it worked): start from the shortest delay again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let seq: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let d: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![250, 500, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }
}
