//! SplitMix64: the tiny seeded PRNG of the data pipeline (shuffle buffer), and its finalizer as a
//! hash (train/validation split). Identical on every platform, wasm included.

/// The SplitMix64 output function: a bijective 64-bit mixer with good avalanche.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of two words (seed, key), via two rounds of [`mix64`].
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    mix64(
        mix64(a ^ 0x5851_f42d_4c95_7f2d)
            .wrapping_add(b)
            .wrapping_add(GOLDEN),
    )
}

/// FNV-1a over bytes (stratum keys).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A 64-bit value as a uniform number in [0, 1) (53-bit precision).
pub(crate) fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Seeded SplitMix64 generator (Steele, Lea & Flood 2014).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform integer in `[0, n)`; `n > 0` (Lemire's multiply-shift, bias < n / 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}
