//! The tokenize pipeline, stage by stage:
//!
//! ```text
//! read ─────────> (dedup) ──────────> encode ─────> row sink ─────> shard writer
//! corpus::        dedup::             encode.rs     sink.rs         shards/
//! read_batches    find_duplicates                   + rows/
//! ```
//!
//! - read: [`crate::corpus::read_batches`] (one reader thread, batches in corpus order);
//! - dedup (optional): [`crate::dedup::find_duplicates`], a first pass that lists the documents
//!   to leave out;
//! - encode (`encode.rs`): one encoder per objective, on the worker threads;
//! - row sink (`sink.rs`): one per split, a row builder of [`crate::rows`] (causal packer, MLM
//!   full-sentence packer, NSP pairs) feeding its shard writer ([`crate::shards`]);
//! - `resume.rs`: the output directory's journal, configuration check and manifest commit;
//! - `units.rs`: work units, the read and encode stages run on a slice of the inputs (on any
//!   machine: `--engine ray`) and stored in a file that the row sinks read back.
//!
//! [`tokenize::tokenize`] wires the stages together.

mod encode;
mod resume;
mod sink;
pub mod tokenize;
pub mod units;
