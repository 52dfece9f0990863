//! Row builders: encoded documents in, fixed-length training rows out. One module per objective:
//! - [`causal`]: `[BOS] doc [EOS]` concatenated and cut every `seq_len` tokens, with the offsets
//!   where documents start in each row (causal LM);
//! - [`mlm`]: `[CLS] A [SEP] (B [SEP])` rows with token types, special-tokens mask, word starts
//!   and NSP labels, packed across documents (full sentences) or as BERT sentence pairs (NSP).
//!
//! Invariants shared by both: the rows are a pure function of the documents in order (and, for
//! NSP, of the seed), never of how documents were batched or which thread encoded them; a
//! streaming builder's whole state is a small carry, which is what a resumed `tokenize` restores.
//! Writing rows to shards is not their business (see [`crate::shards`] and
//! [`crate::pipeline::tokenize`]).

pub mod causal;
pub mod mlm;
