"""Masked-language-model data: masking numpy batches, sentence splitting, sequence building.

Masking is reproducible by construction: the mask of a row depends only on
`(seed, epoch, sample_index)` and the row itself, never on batch composition, DataLoader worker,
rank or resume point. Pass the dataset index of each row as `sample_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from dataprep import _core

Strategy = Literal["bernoulli", "fixed", "whole_word", "span"]

_ID_DTYPES = (np.int64, np.int32, np.uint32, np.uint16)


def _u8_view(a: Any, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """A C-contiguous uint8 view of a 0/1 mask (bool arrays are viewed, not copied)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    return np.ascontiguousarray(a, dtype=np.uint8)


def mask_batch(
    input_ids: np.ndarray,
    sample_index: Sequence[int] | np.ndarray,
    *,
    mask_token_id: int,
    vocab_size: int,
    epoch: int = 0,
    seed: int = 0,
    special_tokens_mask: np.ndarray | None = None,
    word_start: np.ndarray | None = None,
    special_ids: Sequence[int] = (),
    probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    strategy: Strategy = "bernoulli",
    span_geometric_p: float = 0.2,
    max_span: int = 10,
    max_predictions: int | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks a batch of token ids for MLM training, in Rust, without the GIL.

    Args:
        input_ids: `(B, T)` ids, int64, int32, uint32 or uint16 (other integer dtypes are
            converted). Not modified.
        sample_index: `(B,)` dataset index of each row: with `seed` and `epoch`, the only source
            of randomness.
        mask_token_id: Id of `[MASK]`.
        vocab_size: Random replacements are drawn from `0..vocab_size` minus `special_ids`.
        epoch: Epoch number, so that dynamic masking changes between epochs.
        seed: Run seed.
        special_tokens_mask: `(B, T)` bool/0-1; nonzero positions are never masked.
        word_start: `(B, T)` bool/0-1; nonzero where a token begins a word (from
            `encode_with_word_starts` or `build_sequences`). Needed by `whole_word`; `span`
            without it draws spans of tokens.
        special_ids: Ids never masked (`[CLS]`, `[SEP]`, `[PAD]`, ...), in addition to
            `special_tokens_mask`; also never drawn as random replacements.
        probability: Share of (non-special) tokens to mask.
        mask_replace_prob: Share of masked tokens replaced by `[MASK]`.
        random_replace_prob: Share of masked tokens replaced by a random id; the rest are kept.
        strategy: `bernoulli` (each token independently, as HF `DataCollatorForLanguageModeling`),
            `fixed` (exactly round(probability x tokens) per row, original BERT), `whole_word`
            (each word independently, all its pieces), `span` (SpanBERT: geometric span lengths
            in words, `P(l) ∝ p(1-p)^(l-1)` on `1..max_span`).
        span_geometric_p: `p` of the span-length distribution (SpanBERT: 0.2, mean 3.8 words).
        max_span: Longest span in words.
        max_predictions: `fixed` only: at most this many masked tokens per row.
        threads: Rows are split across this many threads (same result for any count). Keep 1
            inside DataLoader workers.

    Returns:
        `(masked_ids, labels)`: `masked_ids` has the dtype and shape of `input_ids`; `labels` is
        int64 with the original id at masked positions and -100 elsewhere.

    >>> import numpy as np
    >>> ids = np.array([[1, 50, 51, 52, 53, 54, 55, 56, 2, 0]])
    >>> out, labels = mask_batch(ids, [7], mask_token_id=4, vocab_size=100,
    ...                          special_ids=[0, 1, 2], probability=0.5, seed=1)
    >>> bool(((labels == -100) | (labels == ids)).all())
    True
    >>> bool((labels[0, [0, 8, 9]] == -100).all())  # specials and padding are never masked
    True
    >>> again, _ = mask_batch(ids, [7], mask_token_id=4, vocab_size=100,
    ...                       special_ids=[0, 1, 2], probability=0.5, seed=1)
    >>> bool((again == out).all())  # same (seed, epoch, index): same mask
    True
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be 2-D (B, T), got shape {ids.shape}")
    if ids.dtype.type not in _ID_DTYPES:
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"input_ids must hold integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
    ids = np.ascontiguousarray(ids)
    index = np.ascontiguousarray(np.asarray(sample_index, dtype=np.uint64).reshape(-1))
    if index.shape[0] != ids.shape[0]:
        raise ValueError(f"sample_index has {index.shape[0]} entries for {ids.shape[0]} rows")
    if strategy == "whole_word" and word_start is None:
        # Without word starts every token would be its own word: plain Bernoulli, surely a mistake.
        raise ValueError("strategy 'whole_word' needs word_start (see encode_with_word_starts)")
    return _core.mask_batch(
        ids,
        index,
        epoch=epoch,
        seed=seed,
        mask_id=mask_token_id,
        vocab_size=vocab_size,
        special_tokens_mask=_u8_view(special_tokens_mask, ids.shape, "special_tokens_mask"),
        word_start=_u8_view(word_start, ids.shape, "word_start"),
        special_ids=list(special_ids),
        probability=probability,
        mask_prob=mask_replace_prob,
        random_prob=random_replace_prob,
        strategy=strategy,
        span_p=span_geometric_p,
        max_span=max_span,
        max_predictions=max_predictions,
        threads=threads,
    )


def split_sentences(text: str) -> list[str]:
    """Splits text into sentences by a small, documented rule (English and spaceless scripts).

    A line break ends a sentence; `.` `!` `?` `…` (with closing quotes/brackets) end one before
    whitespace, except a `.` after an initial, a common abbreviation (`Mr.`, `e.g.`) or before a
    lowercase letter; `。` `！` `？` and other full-width or non-Latin terminals (`।` `؟` `።`)
    end one with no whitespace needed. Whitespace after a sentence starts the next one, so the
    pieces concatenate back to the text (whitespace-only text gives no sentence).

    >>> split_sentences("Mr. Smith left. He was late!\\n今天很好。我们走吧！")
    ['Mr. Smith left.', ' He was late!', '\\n今天很好。', '我们走吧！']
    """
    return _core.split_sentences(text)


def encode_with_word_starts(tokenizer: _core.Tokenizer, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `text` and, per token, 1 when it begins a word.

    A token begins a word when it is the first token of a pre-tokenizer piece holding a letter or
    digit; punctuation and whitespace pieces continue the word before them.

    >>> import tempfile, pathlib
    >>> from dataprep import train_bpe
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("low lower lowest " * 50)
    >>> tok, _ = train_bpe(d, 262, holdout_every=0)
    >>> ids, ws = encode_with_word_starts(tok, "lower, lowest")
    >>> starts = [i for i, w in enumerate(ws) if w] + [len(ids)]
    >>> [tok.decode(ids[a:b].tolist()) for a, b in zip(starts, starts[1:])]
    ['lower,', ' lowest']
    """
    return _core.encode_with_word_starts(tokenizer, text)


def build_sequences(
    documents: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]],
    seq_len: int,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    layout: Literal["full_sentence", "nsp"] = "full_sentence",
    seed: int = 0,
    short_seq_prob: float = 0.1,
) -> dict[str, np.ndarray]:
    """Builds padded `[CLS] A [SEP] (B [SEP])` rows from tokenized documents.

    Args:
        documents: Each document a list of sentences, each `(ids, word_start)`.
        seq_len: Row length, specials included.
        cls_id: Id of `[CLS]` (`<s>`).
        sep_id: Id of `[SEP]` (`</s>`).
        pad_id: Id of `[PAD]`.
        layout: `full_sentence` (RoBERTa: sentences packed across documents, a `[SEP]` between
            documents) or `nsp` (BERT sentence pairs: B is the true continuation with
            probability 1/2, else a run of sentences from another document).
        seed: NSP draws; rows of document `d` depend only on `(seed, d)` and the corpus.
        short_seq_prob: NSP: probability of a shorter target length for a document.

    Returns:
        `input_ids` (uint32), `token_type_ids`, `special_tokens_mask`, `word_start` (uint8), all
        `(rows, seq_len)`; `nsp_label` (int8: 0 B is next, 1 B is random, -1 not NSP) and
        `length` (uint32, tokens before padding), `(rows,)`.

    >>> docs = [[([10, 11], [1, 0]), ([12], [1])], [([20, 21, 22], [1, 1, 0])]]
    >>> rows = build_sequences(docs, 9, cls_id=1, sep_id=2, pad_id=0)
    >>> rows["input_ids"].tolist()
    [[1, 10, 11, 12, 2, 20, 21, 22, 2]]
    """
    return _core.build_sequences(
        [[(list(map(int, i)), list(map(int, w))) for i, w in d] for d in documents],
        seq_len,
        cls_id=cls_id,
        sep_id=sep_id,
        pad_id=pad_id,
        layout=layout,
        seed=seed,
        short_seq_prob=short_seq_prob,
    )
