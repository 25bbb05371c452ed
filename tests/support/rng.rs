//! The tests' random numbers: splitmix64, deterministic and allocation-free (a test
//! running with `CgMalloc` as the global allocator may draw numbers inside a group at its
//! limit). A failing randomized test names its seed, and the same seed replays it.

/// splitmix64 with its state in the open: `Rng(seed)`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with a probability of `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Log-uniform in `lo..=hi` (every octave equally likely).
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let lo_bits = 63 - lo.leading_zeros() as u64;
        let hi_bits = 63 - hi.leading_zeros() as u64;
        let b = self.range(lo_bits, hi_bits);
        let a = (1u64 << b).max(lo);
        let z = ((1u64 << (b + 1)) - 1).min(hi);
        self.range(a, z)
    }

    /// An element of `v` (not empty), uniformly.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}
