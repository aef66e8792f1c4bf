//! Small helpers shared across the core.

mod rng;

pub use rng::Rng;

/// The IEEE half-precision bits of `x` (round to nearest even).
pub fn f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// A 32-bit hash of a few words (for deriving independent seeds).
pub fn hash32(words: &[u32]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &w in words {
        let mut x = w.wrapping_add(0x9e37_79b9).wrapping_add(h.rotate_left(6));
        x = (x ^ (x >> 16)).wrapping_mul(0x7feb_352d);
        x = (x ^ (x >> 15)).wrapping_mul(0x846c_a68b);
        h = x ^ (x >> 16);
    }
    h
}
