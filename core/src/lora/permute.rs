//! The RoPE row order of llama's Q and K projections: Hugging Face vs GGUF.
//!
//! Hugging Face's llama applies RoPE to the two halves of each head (`rotate_half`): within a head
//! of HS rows, row `j` pairs with row `j + HS/2`. GGUF (llama.cpp) rotates adjacent pairs: row
//! `2j` pairs with `2j + 1`. llama.cpp's converter therefore reorders the rows of `q_proj` and
//! `k_proj` (`conversion/llama.py`, `LlamaModel.permute`):
//!
//! ```text
//! w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)
//! ```
//!
//! with `n_head` the attention heads for Q and the KV heads for K. Per head `h` (HS = rows /
//! n_head, half = HS/2), for `t ∈ {0, 1}` and `j < half`:
//!
//! ```text
//! gguf[h·HS + 2j + t] = hf[h·HS + t·half + j]
//! ```
//!
//! A LoRA update `ΔW = B·A` has the rows of `W`, so only lora_B's rows move; lora_A is untouched.

/// How a base model's GGUF orders the rows of q_proj and k_proj relative to Hugging Face (the
/// model's [`crate::model::ModelConfig::qk_order`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkOrder {
    /// As Hugging Face (qwen2 and every NEOX-rope architecture).
    Same,
    /// Permuted per head by llama's converter: `n_head` heads in q_proj, `n_head_kv` in k_proj.
    Permuted { n_head: usize, n_head_kv: usize },
}

/// The Hugging Face row that GGUF row `g` comes from, for `rows` rows in `n_head` heads; `None`
/// when `rows` is not a multiple of `2·n_head`.
fn hf_row_of_gguf_row(rows: usize, n_head: usize) -> Option<impl Fn(usize) -> usize> {
    let head = rows.checked_div(n_head)?;
    if head == 0 || head * n_head != rows || !head.is_multiple_of(2) {
        return None;
    }
    let half = head / 2;
    Some(move |g: usize| {
        let (h, r) = (g / head, g % head);
        let (j, t) = (r / 2, r % 2);
        h * head + t * half + j
    })
}

/// Reorders the rows of a row-major `[rows, w.len() / rows]` matrix from Hugging Face order to
/// GGUF order (what llama.cpp's converter does). `None` when the rows cannot be split into
/// `n_head` heads of an even size, or `w` is not a whole number of rows.
pub fn hf_to_gguf_rows(w: &[f32], rows: usize, n_head: usize) -> Option<Vec<f32>> {
    let cols = whole_rows(w, rows)?;
    let src = hf_row_of_gguf_row(rows, n_head)?;
    let mut out = Vec::with_capacity(w.len());
    for g in 0..rows {
        let s = src(g);
        out.extend_from_slice(&w[s * cols..(s + 1) * cols]);
    }
    Some(out)
}

/// The exact inverse of [`hf_to_gguf_rows`]: GGUF row order back to Hugging Face's.
pub fn gguf_to_hf_rows(w: &[f32], rows: usize, n_head: usize) -> Option<Vec<f32>> {
    let cols = whole_rows(w, rows)?;
    let dst = hf_row_of_gguf_row(rows, n_head)?;
    let mut out = vec![0.0; w.len()];
    for g in 0..rows {
        let d = dst(g);
        out[d * cols..(d + 1) * cols].copy_from_slice(&w[g * cols..(g + 1) * cols]);
    }
    Some(out)
}

/// The column count of `w` as `rows` rows, if it divides evenly.
fn whole_rows(w: &[f32], rows: usize) -> Option<usize> {
    let cols = w.len().checked_div(rows)?;
    (cols * rows == w.len()).then_some(cols)
}
