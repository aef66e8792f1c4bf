//! One module per WGSL kernel family: its `Params` (mirroring the shader's uniform), the
//! dispatcher that queues it on a [`Recorder`](crate::gpu::Recorder), its CPU reference and the
//! tests that compare the two.

pub mod attention;
pub mod bf16;
pub mod elementwise;
pub mod embedding;
pub mod gemv;
pub mod logits;
pub mod matmul;
pub mod optim;
pub mod rmsnorm;
pub mod rope;
mod weights;

pub use weights::{
    GpuWeight, WeightFormat, WeightPart, pack_weight, packed_words, packed_words_u64, random_blocks,
};

#[cfg(test)]
pub(crate) mod testing;

/// Compile-time check that a `Params` struct has the size its WGSL twin has.
macro_rules! assert_params_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $n);
    };
}
pub(crate) use assert_params_size;
