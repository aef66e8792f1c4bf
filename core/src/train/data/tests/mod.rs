//! Tests of the data pipeline. `fake` holds a character-level [`TextEncoder`] with a ChatML
//! template; `chunks` feeds a reader the same bytes split in different ways.

mod encode;
mod fake;
mod format;
mod memory;
mod pack;
mod pipeline;
mod reader;
mod shuffle_split;
