//! Seeded random numbers: one portable generator (ChaCha8) so a seed gives the same numbers on
//! every machine and every run, which makes initialisation, dropout and shuffling reproducible.

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded, portable random generator.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// A generator seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The seed and the position in the stream, enough to restore the generator exactly.
    pub fn state(&self) -> ([u8; 32], u128) {
        (self.inner.get_seed(), self.inner.get_word_pos())
    }

    /// Restores a generator from [`Rng::state`].
    pub fn from_state(seed: [u8; 32], word_pos: u128) -> Self {
        let mut inner = ChaCha8Rng::from_seed(seed);
        inner.set_word_pos(word_pos);
        Rng { inner }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        self.inner.random::<f32>()
    }

    /// Uniform in `[0, 1)` with double precision.
    pub fn uniform_f64(&mut self) -> f64 {
        self.inner.random::<f64>()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.inner.random_range(0..n)
    }

    /// Standard normal sample (Box-Muller in f64).
    pub fn normal(&mut self) -> f32 {
        loop {
            let u1 = self.uniform_f64();
            if u1 > f64::MIN_POSITIVE {
                let u2 = self.uniform_f64();
                let r = (-2.0 * u1.ln()).sqrt();
                return (r * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
