//! One module per subcommand.

pub mod bench;
pub mod bench_compare;
pub mod bench_decode;
pub mod bench_train;
pub mod bench_tune;
pub mod devices;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod make_random_adapter;
pub mod make_tiny_model;
pub mod merge;
pub mod preflight;
pub mod report;
pub mod score;
pub mod tokenize;
pub mod train;
pub mod web;
