//! The causal-LM row builder (the MLM one is [`super::mlm`]): concatenate `[BOS] doc [EOS]` and
//! cut every `seq_len` tokens. No token is lost: every token of every document lands in exactly one
//! row, in order. Each row records where documents start inside it (`doc_starts`), which is what
//! a trainer needs for per-document attention masks and position resets.
//!
//! The last, partial row follows [`LastRow`]: padded (default; `n_tokens` says how many are
//! real) or dropped (the count is reported, never silent).

/// What happens to the final row when fewer than `seq_len` tokens remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LastRow {
    /// Pad with the pad id; the row's `n_tokens` is its real length.
    Pad,
    /// Leave it out and count its tokens as dropped.
    Drop,
}

/// One packed row, borrowed from the packer.
#[derive(Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub ids: &'a [u32],
    /// Offsets in `ids` where a document begins (its BOS, or first token without BOS).
    pub doc_starts: &'a [u32],
    /// Real tokens in `ids` (less than `ids.len()` only for a padded last row).
    pub n_tokens: usize,
}

/// The causal-LM packer. Its whole state is the carry (< `seq_len` tokens) and where documents
/// start in it, which is what a resumed run restores.
#[derive(Debug, Clone)]
pub struct Packer {
    seq_len: usize,
    buf: Vec<u32>,
    starts: Vec<u32>,
}

impl Packer {
    pub fn new(seq_len: usize) -> Self {
        assert!(seq_len > 0, "seq_len must be positive");
        Self { seq_len, buf: Vec::with_capacity(2 * seq_len), starts: Vec::new() }
    }

    /// A packer that continues from a saved carry.
    pub fn with_carry(seq_len: usize, buf: Vec<u32>, starts: Vec<u32>) -> Self {
        Self { seq_len, buf, starts }
    }

    /// The tokens not yet in a row, and the document starts among them.
    pub fn carry(&self) -> (&[u32], &[u32]) {
        (&self.buf, &self.starts)
    }

    /// Appends one document and emits every row it completes.
    pub fn push_doc(&mut self, ids: &[u32], bos: Option<u32>, eos: u32, mut emit: impl FnMut(Row<'_>)) {
        self.starts.push(self.buf.len() as u32);
        self.buf.extend(bos);
        self.buf.extend_from_slice(ids);
        self.buf.push(eos);
        let n_rows = self.buf.len() / self.seq_len;
        if n_rows == 0 {
            return;
        }
        let mut s = 0; // index into self.starts
        for r in 0..n_rows {
            let (lo, hi) = ((r * self.seq_len) as u32, ((r + 1) * self.seq_len) as u32);
            let first = s;
            while s < self.starts.len() && self.starts[s] < hi {
                s += 1;
            }
            // Starts are stored relative to the row.
            let rel: Vec<u32> = self.starts[first..s].iter().map(|&x| x - lo).collect();
            emit(Row { ids: &self.buf[lo as usize..hi as usize], doc_starts: &rel, n_tokens: self.seq_len });
        }
        let cut = n_rows * self.seq_len;
        self.buf.drain(..cut);
        self.starts.drain(..s);
        for x in &mut self.starts {
            *x -= cut as u32;
        }
    }

    /// Handles the last partial row; returns the number of tokens dropped (0 unless `Drop`).
    pub fn finish(mut self, rule: LastRow, pad: u32, mut emit: impl FnMut(Row<'_>)) -> u64 {
        if self.buf.is_empty() {
            return 0;
        }
        match rule {
            LastRow::Drop => self.buf.len() as u64,
            LastRow::Pad => {
                let n = self.buf.len();
                self.buf.resize(self.seq_len, pad);
                emit(Row { ids: &self.buf, doc_starts: &self.starts, n_tokens: n });
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Rows = Vec<(Vec<u32>, Vec<u32>, usize)>;

    fn pack(docs: &[Vec<u32>], seq_len: usize, rule: LastRow) -> (Rows, u64) {
        let mut rows = Vec::new();
        let mut p = Packer::new(seq_len);
        for d in docs {
            p.push_doc(d, Some(1000), 1001, |r| rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens)));
        }
        let dropped = p.finish(rule, 0, |r| rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens)));
        (rows, dropped)
    }

    proptest! {
        #[test]
        fn every_token_in_order_and_starts_are_right(
            docs in prop::collection::vec(prop::collection::vec(0u32..999, 0..40), 0..20),
            seq_len in 1usize..17,
        ) {
            let (rows, dropped) = pack(&docs, seq_len, LastRow::Pad);
            prop_assert_eq!(dropped, 0);
            let mut stream = Vec::new();
            let mut expected_starts = Vec::new();
            for d in &docs {
                expected_starts.push(stream.len());
                stream.push(1000);
                stream.extend_from_slice(d);
                stream.push(1001);
            }
            let mut got = Vec::new();
            let mut got_starts = Vec::new();
            for (ids, starts, n) in &rows {
                prop_assert_eq!(ids.len(), seq_len);
                for &s in starts {
                    got_starts.push(got.len() + s as usize);
                }
                got.extend_from_slice(&ids[..*n]);
            }
            prop_assert_eq!(got, stream);
            prop_assert_eq!(got_starts, expected_starts);
        }
    }

    #[test]
    fn drop_rule_counts_the_tail() {
        let (rows, dropped) = pack(&[vec![5, 6, 7]], 4, LastRow::Drop);
        assert_eq!(rows.len(), 1);
        assert_eq!(dropped, 1);
        assert_eq!(rows[0].0, vec![1000, 5, 6, 7]);
    }

    #[test]
    fn carry_restores_the_same_rows() {
        let docs: Vec<Vec<u32>> = (0..10).map(|i| (0..=(i * 3)).collect()).collect();
        let (all, _) = pack(&docs, 7, LastRow::Pad);
        let mut rows = Vec::new();
        let mut p = Packer::new(7);
        for d in &docs[..4] {
            p.push_doc(d, Some(1000), 1001, |r| rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens)));
        }
        let (b, s) = p.carry();
        let mut p = Packer::with_carry(7, b.to_vec(), s.to_vec());
        for d in &docs[4..] {
            p.push_doc(d, Some(1000), 1001, |r| rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens)));
        }
        p.finish(LastRow::Pad, 0, |r| rows.push((r.ids.to_vec(), r.doc_starts.to_vec(), r.n_tokens)));
        assert_eq!(rows, all);
    }
}
