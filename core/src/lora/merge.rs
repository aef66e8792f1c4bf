//! Merging an adapter into its base weights: `W + s·B·A`, for loading an adapted model and for
//! writing a merged GGUF file.

use super::{LoraAdapter, LoraError, LoraPair};
use crate::formats::{GgmlType, Gguf, GgufWriter};

/// `w[rows, cols] += scale · B·A` for a pair with A [r, cols] and B [rows, r] (GGUF row order).
pub fn add_scaled_product(w: &mut [f32], cols: usize, scale: f32, pair: &LoraPair) {
    let r = pair.rank();
    for (row, w_row) in w.chunks_mut(cols).enumerate() {
        for (k, b) in pair.b[row * r..(row + 1) * r].iter().enumerate() {
            let f = scale * b;
            let a_row = &pair.a[k * cols..(k + 1) * cols];
            w_row.iter_mut().zip(a_row).for_each(|(x, a)| *x += f * a);
        }
    }
}

/// A GGUF file equal to `gguf` (whose bytes are `file`) with `adapter` merged into the
/// projections it adapts, those stored as `ty` (F16, BF16, Q8_0, Q4_K, Q6_K, F32: any type
/// afinador encodes); every other tensor and all metadata are copied unchanged.
pub fn merge_into_gguf(
    gguf: &Gguf,
    file: &[u8],
    adapter: &LoraAdapter,
    ty: GgmlType,
) -> Result<Vec<u8>, LoraError> {
    adapter.validate()?;
    let mut out = GgufWriter::new();
    for (key, value) in gguf.metadata().iter() {
        if key == "general.alignment" {
            out.set_alignment(gguf.alignment() as u32)?;
        } else {
            out.add_metadata(key, value.clone())?;
        }
    }
    let scale = adapter.config.scale();
    for info in gguf.tensors() {
        let pair = adapter
            .tensors
            .iter()
            .find(|p| p.gguf_weight_name() == info.name);
        match pair {
            Some(pair) => {
                let cols = info.dims.first().copied().unwrap_or(0) as usize;
                if cols != pair.in_features || info.n_elements as usize != cols * pair.out_features
                {
                    return Err(LoraError::InvalidAdapter {
                        problem: format!(
                            "the adapter's {} is [{}, {}], the model's tensor has dims {:?}",
                            info.name, pair.out_features, pair.in_features, info.dims
                        ),
                    });
                }
                check_row_width(&info.name, cols, ty)?;
                let mut w = gguf.tensor_f32(info, file)?;
                add_scaled_product(&mut w, cols, scale, pair);
                out.add_tensor_f32(info.name.clone(), &info.dims, ty, &w)?;
            }
            None => {
                let bytes = gguf.tensor_bytes(info, file)?.to_vec();
                out.add_tensor(info.name.clone(), &info.dims, info.ty, bytes)?;
            }
        }
    }
    Ok(out.to_bytes())
}

/// The types a merge can fall back to when `ty`'s blocks do not fit the rows.
const NARROW_BLOCKS: [GgmlType; 4] = [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32];

/// Blocks never span rows, so the merged rows (`width` values) must hold whole blocks of `ty`:
/// the k-quants' 256 fit the usual model widths but not every one (576 for SmolLM2-135M).
/// Checked before any work, with the types that would fit.
fn check_row_width(tensor: &str, width: usize, ty: GgmlType) -> Result<(), LoraError> {
    let width = width as u64;
    if width.is_multiple_of(ty.block_size()) {
        return Ok(());
    }
    let fits: Vec<&str> = NARROW_BLOCKS
        .iter()
        .filter(|t| width.is_multiple_of(t.block_size()))
        .map(|t| t.name())
        .collect();
    Err(LoraError::MergedRowWidth {
        tensor: tensor.to_owned(),
        ty: ty.name(),
        width,
        block: ty.block_size(),
        fits: fits.join(", "),
    })
}
