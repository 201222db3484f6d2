//! The daemon's clock: the one place that reads real time.
//!
//! Maps the monotonic system clock to the core's [`Instant`] (nanoseconds
//! since the daemon started), optionally accelerated for simulations
//! (`speed = 60`: an hour of session time per real minute), and maps core
//! instants back to wall-clock time for payloads and logs.

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

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds,
/// e.g. `2026-11-23T19:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = crate::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses an RFC 3339 timestamp (`2026-11-23T19:04:05.123Z`,
/// `2026-11-23T20:04:05+01:00`). `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset_s: i64 = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = crate::time::days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_460_645_123);
        assert_eq!(rfc3339(t), "2026-11-23T19:04:05.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

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
