//! A small seeded pseudo-random number generator for the simulated patients
//! and devices (SplitMix64), with uniform and normal (Box-Muller) draws.
//!
//! Two ways to use it:
//!
//! - sequentially: [`Rng::new`] and then draw after draw;
//! - counter-based: [`Rng::derive`] gives an independent generator for a
//!   `(seed, stream, index)` triple, so "the noise of second 812" or "the
//!   garbage burst 3 of event 2" is the same however often and in whatever
//!   order the simulator asks for it. Same seed, same values.
//!
//! Not for cryptography. Pure: depends on nothing but `core`.

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit mixer.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 generator.
#[derive(Clone, Debug, PartialEq)]
pub struct Rng {
    state: u64,
    /// The second value of the last Box-Muller pair.
    spare: Option<f64>,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng {
            state: seed,
            spare: None,
        }
    }

    /// An independent generator for `index` within `stream` under `seed`.
    pub const fn derive(seed: u64, stream: u64, index: u64) -> Self {
        let s = mix64(seed ^ mix64(stream.wrapping_add(GAMMA)));
        Rng::new(mix64(s ^ index.wrapping_mul(GAMMA)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n` (0 when `n` is 0), without modulo bias
    /// worth speaking of for the small `n` the simulator uses.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// Standard normal (mean 0, standard deviation 1), by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - uniform() is in (0, 1]: the logarithm stays finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = core::f64::consts::TAU * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// Normal with standard deviation `sd`, cut at `limit` standard
    /// deviations either side (simulated noise never runs away).
    pub fn normal_clamped(&mut self, sd: f64, limit: f64) -> f64 {
        self.normal().clamp(-limit, limit) * sd
    }

    /// Appends `n` random bytes to `out`.
    pub fn fill_bytes(&mut self, out: &mut Vec<u8>, n: usize) {
        out.extend((0..n).map(|_| (self.next_u64() >> 56) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let a: Vec<u64> = (0..8).map(|i| Rng::derive(7, 1, i).next_u64()).collect();
        let b: Vec<u64> = (0..8).map(|i| Rng::derive(7, 1, i).next_u64()).collect();
        let c: Vec<u64> = (0..8).map(|i| Rng::derive(7, 2, i).next_u64()).collect();
        let d: Vec<u64> = (0..8).map(|i| Rng::derive(8, 1, i).next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn uniform_stays_in_range_and_below_is_bounded() {
        let mut r = Rng::new(42);
        for _ in 0..10_000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            let x = r.range(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&x));
            assert!(r.below(7) < 7);
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn normal_has_mean_zero_and_unit_variance() {
        let mut r = Rng::new(3);
        let n = 200_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let z = r.normal();
            sum += z;
            sq += z * z;
        }
        let mean = sum / f64::from(n);
        let var = sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        for _ in 0..1000 {
            assert!(r.normal_clamped(2.0, 2.5).abs() <= 5.0);
        }
    }
}
