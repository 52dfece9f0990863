//! Encode stage: the documents of a read batch -> the objective's encoded documents, on the
//! worker threads (one [`EncodeCache`] each). One [`Encoder`] per objective, each with its batch
//! type, so nothing downstream branches on the objective: the row sinks of the objective take
//! that batch type ([`super::sink::RowSink::Batch`]).

use super::units::UnitBatch;
use crate::error::Result;
use crate::mask::sentences::split_sentences;
use crate::rows::mlm::Documents;
use crate::tokenizer::EncodeCache;
use crate::tokenizer::{Tokenizer, DOCUMENT_TEXT};

/// Encodes documents for one objective.
pub(super) trait Encoder: Sync {
    /// The encoded documents of one batch, in order.
    type Batch: Send + UnitBatch;
    /// An empty batch for up to `docs` documents of `text_bytes` bytes of text in all.
    fn batch(&self, text_bytes: usize, docs: usize) -> Self::Batch;
    /// Encodes `text` as the next document of `out`.
    fn encode(&self, cache: &mut EncodeCache, text: &str, out: &mut Self::Batch) -> Result<()>;
    /// Tokens in `batch` (progress).
    fn tokens(batch: &Self::Batch) -> u64;
}

/// Causal LM: the token ids of each document.
pub(super) struct Ids<'a>(pub &'a Tokenizer);

impl Encoder for Ids<'_> {
    type Batch = Vec<Vec<u32>>;

    fn batch(&self, _text_bytes: usize, docs: usize) -> Self::Batch {
        Vec::with_capacity(docs)
    }

    fn encode(&self, cache: &mut EncodeCache, text: &str, out: &mut Self::Batch) -> Result<()> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        self.0.encode_into(text, DOCUMENT_TEXT, cache, &mut ids)?;
        out.push(ids);
        Ok(())
    }

    fn tokens(batch: &Self::Batch) -> u64 {
        batch.iter().map(Vec::len).sum::<usize>() as u64
    }
}

/// MLM: the sentences of each document ([`split_sentences`]), encoded with word starts. Empty
/// sentences are left out: they hold no token.
pub(super) struct Sentences<'a>(pub &'a Tokenizer);

impl Encoder for Sentences<'_> {
    type Batch = Documents;

    fn batch(&self, text_bytes: usize, _docs: usize) -> Self::Batch {
        // About a token per 4 bytes of text; the buffers grow if need be.
        Documents::with_capacity(text_bytes / 4)
    }

    fn encode(&self, cache: &mut EncodeCache, text: &str, out: &mut Self::Batch) -> Result<()> {
        for r in split_sentences(text) {
            let (ids, ws) = out.tokens_mut();
            self.0.encode_with_word_starts(&text[r], cache, ids, ws)?;
            if out.open_sentence_len() > 0 {
                out.end_sentence();
            }
        }
        out.end_document();
        Ok(())
    }

    fn tokens(batch: &Self::Batch) -> u64 {
        batch.ids().len() as u64
    }
}
