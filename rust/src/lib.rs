//! dataprep's core: corpus readers, pre-tokenizers, byte-level BPE (training, encoding, file
//! formats), MLM masking and sequence building. Pure Rust; the Python bindings live in `py/`
//! behind the `python` feature and are the only code that knows about Python.

pub mod bpe;
pub mod corpus;
pub mod dedup;
pub mod error;
pub mod fsutil;
pub mod lock;
pub mod mask;
pub mod options;
pub mod pack;
pub mod pipeline;
pub mod pretokenize;
pub mod progress;
pub mod shards;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
