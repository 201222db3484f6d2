//! The daemon's clock: the one place that reads real time.
//!
//! Maps the monotonic system clock to the core's [`Instant`] (nanoseconds
//! since the daemon started), optionally accelerated for simulations
//! (`speed = 60`: an hour of session time per real minute), and maps core
//! instants back to wall-clock time for payloads and logs. Formatting and
//! parsing those times is pure and lives in [`crate::time`].

use std::time::{Duration, SystemTime};

use crate::time::Instant;

/// Real time, scaled by a speed factor.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    wall_origin: SystemTime,
    speed: f64,
}

impl Clock {
    /// A clock starting now, running `speed` times faster than real time.
    pub fn start(speed: f64) -> Self {
        Clock {
            origin: std::time::Instant::now(),
            wall_origin: SystemTime::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    /// The acceleration factor.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The current core instant.
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// The core instant of a real monotonic instant.
    pub fn at(&self, real: std::time::Instant) -> Instant {
        let elapsed = real.saturating_duration_since(self.origin);
        Instant::from_nanos((elapsed.as_nanos() as f64 * self.speed) as u64)
    }

    /// The real monotonic instant at which the core reaches `t`.
    pub fn real_at(&self, t: Instant) -> std::time::Instant {
        let real = Duration::from_nanos((t.as_nanos() as f64 / self.speed) as u64);
        self.origin + real
    }

    /// Real time needed for `d` of core time to pass.
    pub fn real_duration(&self, d: Duration) -> Duration {
        d.div_f64(self.speed)
    }

    /// Wall-clock time of a core instant (session time for simulations).
    pub fn wall(&self, t: Instant) -> SystemTime {
        self.wall_origin + t.since_origin()
    }

    /// Wall-clock time when the clock started.
    pub fn wall_origin(&self) -> SystemTime {
        self.wall_origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_scales_both_ways() {
        let c = Clock::start(60.0);
        let t = Instant::from_secs(600);
        let real = c.real_at(t);
        let back = c.at(real);
        let diff = back.as_nanos().abs_diff(t.as_nanos());
        assert!(diff < 1_000_000, "{diff}");
        assert_eq!(
            c.real_duration(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }
}
