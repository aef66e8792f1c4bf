//! Small helpers shared across the core.

mod rng;

pub use rng::Rng;

/// The IEEE half-precision bits of `x` (round to nearest even).
pub fn f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}
