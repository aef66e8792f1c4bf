//! [`ShuffleBuffer`]: a streaming shuffle over a window of `capacity` items.
//!
//! The first `capacity` items fill the buffer; from then on each new item takes the place of a
//! uniformly chosen buffered one, which is emitted (the scheme of `tf.data`'s `shuffle` and
//! Hugging Face's `IterableDataset.shuffle`). At the end the rest comes out in a Fisher–Yates
//! order. Output order is a pure function of the input order and the seed. An item can move
//! earlier by at most `capacity` places, so a source sorted by topic needs a buffer that spans
//! topics; memory is `capacity` items.

use super::rng::SplitMix64;

/// Streaming shuffle, deterministic from a seed; `capacity` 0 passes items through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShuffleBuffer<T> {
    capacity: usize,
    rng: SplitMix64,
    items: Vec<T>,
}

impl<T> ShuffleBuffer<T> {
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity,
            rng: SplitMix64::new(seed),
            items: Vec::with_capacity(capacity.min(1 << 16)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an item; once the buffer is full, returns a uniformly chosen one of the buffered
    /// items and the new one.
    pub fn push(&mut self, item: T) -> Option<T> {
        if self.items.len() < self.capacity {
            self.items.push(item);
            return None;
        }
        if self.capacity == 0 {
            return Some(item);
        }
        let j = self.rng.below(self.capacity as u64 + 1) as usize;
        if j == self.capacity {
            // The new item itself is drawn: it leaves at once (every item, buffered or new, is
            // equally likely to be the one emitted).
            Some(item)
        } else {
            Some(std::mem::replace(&mut self.items[j], item))
        }
    }

    /// Empties the buffer in random order.
    pub fn drain(&mut self) -> Vec<T> {
        let mut items = std::mem::take(&mut self.items);
        for i in (1..items.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }
}
