//! Fixed-capacity sample windows: the rate-of-change window and the baseline
//! collector. Both allocate once, at construction, and never again.
//!
//! Depends on [`crate::time`] only.

use core::time::Duration;

use crate::time::Instant;

/// Number of buckets a rate window is divided into.
const BUCKETS: usize = 32;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Bucket number (time / width); `u64::MAX` when unused.
    number: u64,
    min: f32,
    max: f32,
}

const EMPTY: Bucket = Bucket {
    number: u64::MAX,
    min: f32::INFINITY,
    max: f32::NEG_INFINITY,
};

/// Minimum and maximum of the values seen over a sliding time window.
///
/// Time is cut into `BUCKETS` buckets per window, each keeping its minimum and
/// maximum, so memory is fixed whatever the sample rate. The window is
/// resolved to `window / 32`: a sample counts while it is at most
/// `window + window / 32` old.
#[derive(Clone, Debug)]
pub struct RateWindow {
    width_nanos: u64,
    buckets: [Bucket; BUCKETS + 1],
    /// Bucket number the cache below was computed for (`u64::MAX`: none).
    cached_for: u64,
    /// Minimum and maximum over the window's buckets OTHER than the current
    /// one; they only change when time enters a new bucket.
    others: (f32, f32),
}

impl RateWindow {
    /// A window of the given length (at least 32 ns).
    pub fn new(window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        RateWindow {
            width_nanos: (nanos / BUCKETS as u64).max(1),
            buckets: [EMPTY; BUCKETS + 1],
            cached_for: u64::MAX,
            others: (f32::INFINITY, f32::NEG_INFINITY),
        }
    }

    /// Forget every sample (after a gap or a reconfiguration).
    pub fn clear(&mut self) {
        self.buckets = [EMPTY; BUCKETS + 1];
        self.cached_for = u64::MAX;
    }

    /// Adds a sample and returns the (minimum, maximum) over the window,
    /// the new sample included.
    pub fn push(&mut self, at: Instant, value: f32) -> (f32, f32) {
        let number = at.as_nanos() / self.width_nanos;
        let slot = (number % (BUCKETS as u64 + 1)) as usize;
        let b = &mut self.buckets[slot];
        if b.number != number {
            *b = Bucket {
                number,
                min: value,
                max: value,
            };
        } else {
            b.min = b.min.min(value);
            b.max = b.max.max(value);
        }
        let current = (b.min, b.max);
        if self.cached_for != number {
            // Entered a new bucket: recompute the other buckets' extremes once.
            let oldest = number.saturating_sub(BUCKETS as u64);
            let mut lo = f32::INFINITY;
            let mut hi = f32::NEG_INFINITY;
            for b in &self.buckets {
                if b.number != u64::MAX && b.number >= oldest && b.number < number {
                    lo = lo.min(b.min);
                    hi = hi.max(b.max);
                }
            }
            self.others = (lo, hi);
            self.cached_for = number;
        }
        let lo = self.others.0.min(current.0);
        let hi = self.others.1.max(current.1);
        (lo, hi)
    }
}

/// Collects a vital's values during the baseline phase for a median.
///
/// Capacity is fixed. When full, every other stored value is dropped and only
/// every second later value is kept (the stride doubles), so the stored values
/// stay spread evenly over the whole phase however long it lasts.
#[derive(Clone, Debug)]
pub struct BaselineCollector {
    values: Vec<f32>,
    capacity: usize,
    stride: u32,
    skipped: u32,
    seen: u32,
}

impl BaselineCollector {
    /// A collector storing at most `capacity` values (at least 2).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        BaselineCollector {
            values: Vec::with_capacity(capacity),
            capacity,
            stride: 1,
            skipped: 0,
            seen: 0,
        }
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.values.clear();
        self.stride = 1;
        self.skipped = 0;
        self.seen = 0;
    }

    /// How many values were offered since the last clear.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// Offers one value.
    pub fn push(&mut self, value: f32) {
        self.seen = self.seen.saturating_add(1);
        self.skipped += 1;
        if self.skipped < self.stride {
            return;
        }
        self.skipped = 0;
        if self.values.len() == self.capacity {
            let mut keep = 0;
            for i in (0..self.values.len()).step_by(2) {
                self.values[keep] = self.values[i];
                keep += 1;
            }
            self.values.truncate(keep);
            self.stride = self.stride.saturating_mul(2);
        }
        self.values.push(value);
    }

    /// The median of the stored values, sorting them in `scratch` (which is
    /// reused, so no allocation once it has grown to the capacity).
    pub fn median(&self, scratch: &mut Vec<f32>) -> Option<f32> {
        if self.values.is_empty() {
            return None;
        }
        scratch.clear();
        scratch.extend_from_slice(&self.values);
        scratch.sort_unstable_by(f32::total_cmp);
        let n = scratch.len();
        Some(if n % 2 == 1 {
            scratch[n / 2]
        } else {
            (scratch[n / 2 - 1] + scratch[n / 2]) / 2.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_forgets_old_samples() {
        let mut w = RateWindow::new(Duration::from_secs(60));
        assert_eq!(w.push(Instant::from_secs(0), 97.0), (97.0, 97.0));
        assert_eq!(w.push(Instant::from_secs(30), 95.0), (95.0, 97.0));
        assert_eq!(w.push(Instant::from_secs(59), 92.0), (92.0, 97.0));
        // 97 at t=0 is more than a window (plus one bucket) old at t=70.
        assert_eq!(w.push(Instant::from_secs(70), 93.0), (92.0, 95.0));
        // After a long gap only the new sample counts.
        assert_eq!(w.push(Instant::from_secs(1000), 99.0), (99.0, 99.0));
        w.clear();
        assert_eq!(w.push(Instant::from_secs(1001), 50.0), (50.0, 50.0));
    }

    #[test]
    fn baseline_median_of_few_values() {
        let mut c = BaselineCollector::new(8);
        let mut scratch = Vec::new();
        assert_eq!(c.median(&mut scratch), None);
        for v in [120.0, 130.0, 110.0] {
            c.push(v);
        }
        assert_eq!(c.median(&mut scratch), Some(120.0));
        c.push(140.0);
        assert_eq!(c.median(&mut scratch), Some(125.0));
        assert_eq!(c.seen(), 4);
    }

    #[test]
    fn baseline_collector_thins_evenly_when_full() {
        let mut c = BaselineCollector::new(16);
        for i in 0..1000 {
            c.push(i as f32);
        }
        assert!(c.values.len() <= 16);
        assert!(c.values.capacity() == 16, "never grows");
        // The values stay spread over the whole range: median near the middle.
        let m = c.median(&mut Vec::new()).unwrap();
        assert!((400.0..600.0).contains(&m), "median {m}");
        assert_eq!(c.seen(), 1000);
    }
}
