//! The Q/K row permutation against llama.cpp's converter expression.

use super::super::permute::{gguf_to_hf_rows, hf_to_gguf_rows};
use super::values;

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

/// Expected values printed by numpy running the converter's own expression,
/// `w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)`
/// (`conversion/llama.py`, `LlamaModel.permute`), on `np.arange`.
#[test]
fn matches_the_converter_on_worked_examples() {
    // 2 heads of 4 rows: per head [x0 x1 | x2 x3] -> x0 x2 x1 x3.
    let got = hf_to_gguf_rows(&iota(8), 8, 2).unwrap();
    assert_eq!(got, [0., 2., 1., 3., 4., 6., 5., 7.]);
    // 2 heads of 6 rows (half 3): per head j-major, t-minor.
    let got = hf_to_gguf_rows(&iota(12), 12, 2).unwrap();
    assert_eq!(got, [0., 3., 1., 4., 2., 5., 6., 9., 7., 10., 8., 11.]);
    // 1 head of 6 rows, 2 columns: whole rows move.
    let got = hf_to_gguf_rows(&iota(12), 6, 1).unwrap();
    let expected = [[0., 1.], [6., 7.], [2., 3.], [8., 9.], [4., 5.], [10., 11.]];
    assert_eq!(got, expected.concat());
}

#[test]
fn inverse_undoes_it_both_ways() {
    // (rows, cols, heads), odd counts included.
    for (rows, cols, heads) in [
        (8, 1, 2),
        (24, 7, 3),
        (20, 5, 5),
        (64, 3, 1),
        (36, 13, 6),
        (576, 2, 9),
    ] {
        let w = values(rows * cols, (rows * cols) as u64);
        let g = hf_to_gguf_rows(&w, rows, heads).unwrap();
        assert_ne!(g, w, "{rows}x{cols}/{heads}: the permutation moved nothing");
        assert_eq!(gguf_to_hf_rows(&g, rows, heads).unwrap(), w);
        let h = gguf_to_hf_rows(&w, rows, heads).unwrap();
        assert_eq!(hf_to_gguf_rows(&h, rows, heads).unwrap(), w);
    }
}

#[test]
fn head_size_two_is_the_identity() {
    // One (t, j) pair per head: nothing moves.
    let w = iota(6 * 2);
    assert_eq!(hf_to_gguf_rows(&w, 6, 3).unwrap(), w);
}

#[test]
fn refuses_rows_that_do_not_split_into_even_heads() {
    let w = iota(12);
    assert_eq!(hf_to_gguf_rows(&w, 12, 4), None, "head size 3 is odd");
    assert_eq!(hf_to_gguf_rows(&w, 12, 5), None, "12 rows in 5 heads");
    assert_eq!(hf_to_gguf_rows(&w, 12, 0), None, "no heads");
    assert_eq!(hf_to_gguf_rows(&w, 0, 1), None, "no rows");
    assert_eq!(
        gguf_to_hf_rows(&w, 5, 1),
        None,
        "12 values are not 5 whole rows"
    );
    assert_eq!(gguf_to_hf_rows(&w, 24, 2), None, "more rows than values");
}

proptest::proptest! {
    #[test]
    fn inverts_for_any_head_layout(heads in 1usize..10, half in 1usize..9, cols in 1usize..6) {
        let rows = heads * 2 * half;
        let w = iota(rows * cols);
        let g = hf_to_gguf_rows(&w, rows, heads).unwrap();
        let mut sorted = g.clone();
        sorted.sort_by(f32::total_cmp);
        proptest::prop_assert_eq!(&sorted, &w, "a permutation of the rows");
        proptest::prop_assert_eq!(gguf_to_hf_rows(&g, rows, heads).unwrap(), w);
    }
}
