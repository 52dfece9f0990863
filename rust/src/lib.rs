//! dataprep's core: corpus readers, pre-tokenizers, byte-level BPE (training, encoding, file
//! formats), dedup, MLM masking, row builders (causal packing, MLM sequences), shards and the
//! tokenize pipeline. Pure Rust; the Python bindings live in `py/`
//! behind the `python` feature and are the only code that knows about Python.

pub mod bpe;
pub mod corpus;
pub mod dedup;
pub mod error;
pub mod fsutil;
pub mod hash;
pub mod lock;
pub mod mask;
pub mod options;
pub mod pipeline;
pub mod pretokenize;
pub mod progress;
pub mod rows;
pub mod shards;
pub mod tokenizer;
pub mod unitfile;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};

/// Worker threads when none are asked for: every core (the one definition of that default).
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
