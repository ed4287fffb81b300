//! The generator's own PRNG: xoshiro256** seeded through SplitMix64, so that output never
//! depends on a third-party crate's algorithm choices. Every stream is derived from
//! (seed, stream tag, index): persons, regions and records generate independently.

/// SplitMix64 step.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit mix of several words (for ids and per-record decisions).
pub fn mix(words: &[u64]) -> u64 {
    let mut x = 0x6A09_E667_F3BC_C909u64;
    let mut out = 0;
    for w in words {
        x ^= w.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        out = splitmix(&mut x);
        x ^= out;
    }
    out
}

/// xoshiro256**.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The stream for (seed, tag, index).
    pub fn new(seed: u64, tag: u64, index: u64) -> Rng {
        let mut x = mix(&[seed, tag, index]);
        let s = [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)];
        Rng { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// An index drawn with the given integer weights (not all zero).
    pub fn weighted(&mut self, weights: impl Iterator<Item = u64> + Clone) -> usize {
        let total: u64 = weights.clone().sum();
        let mut x = self.below(total.max(1));
        for (i, w) in weights.enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        0
    }

    /// Approximately standard normal (Irwin–Hall, 12 uniforms): no transcendental functions,
    /// so results are bit-identical on every platform.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }

    /// A count with mean `mean` (sum of Bernoulli trials; adequate for small means).
    pub fn count(&mut self, mean: f64) -> u32 {
        let trials = (mean * 4.0).ceil().max(1.0) as u32;
        let p = mean / f64::from(trials);
        (0..trials).filter(|_| self.chance(p)).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::new(1, 2, 3);
        let mut y = Rng::new(1, 2, 4);
        let mut z = Rng::new(2, 2, 3);
        let (x0, y0, z0) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert_ne!(x0, y0);
        assert_ne!(x0, z0);
    }

    #[test]
    fn below_and_weighted_stay_in_range() {
        let mut r = Rng::new(9, 9, 9);
        let mut hist = [0u32; 3];
        for _ in 0..30_000 {
            assert!(r.below(7) < 7);
            hist[r.weighted([1u64, 0, 3].into_iter())] += 1;
        }
        assert_eq!(hist[1], 0);
        assert!(hist[2] > hist[0] * 2, "{hist:?}");
        let mean: f64 = (0..10_000).map(|_| r.normal()).sum::<f64>() / 10_000.0;
        assert!(mean.abs() < 0.05);
    }
}
