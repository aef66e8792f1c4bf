//! Small helpers shared across the core.

mod rng;

pub use rng::Rng;
