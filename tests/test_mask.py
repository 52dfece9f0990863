"""MLM masking and sequence building: statistics over >= 1M tokens, invariants, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep import build_sequences, mask_batch, split_sentences

PAD, CLS, SEP, UNK, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, CLS, SEP, UNK, MASK]
VOCAB = 30_000
B, T = 2048, 512  # 1,048,576 tokens


def make_batch(rows: int = B, seq: int = T, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] A [SEP] B [SEP] [PAD]..` rows of random ids and word starts: `(ids, ws)`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(SPECIALS), VOCAB, size=(rows, seq), dtype=np.int64)  # (B, T)
    ws = (rng.random((rows, seq)) < 0.5).astype(np.uint8)  # ~2 pieces per word on average
    lengths = rng.integers(seq // 2, seq + 1, size=rows)
    mid = lengths // 2
    r = np.arange(rows)
    ids[:, 0] = CLS
    ids[r, mid] = SEP
    ids[r, lengths - 1] = SEP
    ids[np.arange(seq)[None, :] >= lengths[:, None]] = PAD
    ws[np.isin(ids, SPECIALS)] = 0
    return ids, ws


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    return make_batch()


def run(ids: np.ndarray, ws: np.ndarray | None = None, **kw) -> tuple[np.ndarray, np.ndarray]:
    kw.setdefault("special_ids", SPECIALS)
    return mask_batch(
        ids, np.arange(ids.shape[0]), mask_token_id=MASK, vocab_size=VOCAB, word_start=ws, **kw
    )


STRATEGIES = ["bernoulli", "fixed", "whole_word", "span"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("probability", [0.15, 0.3])
def test_shares_over_a_million_tokens(batch, strategy, probability):
    ids, ws = batch
    out, labels = run(ids, ws, strategy=strategy, probability=probability, seed=3)
    special = np.isin(ids, SPECIALS)
    masked = labels != -100
    # No special token (padding included) is ever masked or changed.
    assert not masked[special].any()
    assert (out[special] == ids[special]).all()
    # Labels: the original id where masked; unmasked positions are untouched.
    assert (labels[masked] == ids[masked]).all()
    assert (out[~masked] == ids[~masked]).all()
    share = masked.sum() / (~special).sum()
    assert abs(share - probability) < 0.002, share
    n = masked.sum()
    as_mask = (out[masked] == MASK).sum() / n
    as_random = ((out[masked] != MASK) & (out[masked] != ids[masked])).sum() / n
    assert abs(as_mask - 0.8) < 0.005, as_mask
    assert abs(as_random - 0.1) < 0.005, as_random  # a random draw equal to the id counts as kept
    assert not np.isin(out[masked], [PAD, CLS, SEP, UNK]).any()  # random ids are never specials


def test_configurable_split_and_explicit_special_mask(batch):
    ids, _ = batch
    ids = ids[:512]  # 262k tokens
    stm = np.isin(ids, SPECIALS)
    out, labels = run(
        ids, special_ids=[], special_tokens_mask=stm, mask_replace_prob=0.5, random_replace_prob=0.4
    )
    masked = labels != -100
    assert not masked[stm].any()
    n = masked.sum()
    assert abs((out[masked] == MASK).sum() / n - 0.5) < 0.01
    assert abs(((out[masked] != MASK) & (out[masked] != ids[masked])).sum() / n - 0.4) < 0.01


def test_whole_word_masks_every_piece_of_a_chosen_word(batch):
    ids, ws = batch
    _, labels = run(ids, ws, strategy="whole_word", probability=0.2)
    masked = labels != -100
    special = np.isin(ids, SPECIALS)
    # A piece continues a word: not a start, and neither it nor the piece before is special.
    cont = (ws[:, 1:] == 0) & ~special[:, 1:] & ~special[:, :-1]
    assert (masked[:, 1:][cont] == masked[:, :-1][cont]).all()
    # Words, not pieces, are drawn: a masked word of k pieces masks k tokens.
    assert masked[:, 1:][cont].sum() > 0.1 * masked.sum()


def test_span_lengths_follow_the_configured_distribution():
    # Token-level spans (no word starts) at a low density, so that spans rarely touch and the
    # runs of masked tokens are the drawn spans. Long rows keep the budget-cut last span rare.
    p, max_span, prob = 0.2, 10, 0.04
    ids = np.random.default_rng(1).integers(10, VOCAB, size=(256, 4096), dtype=np.int64)  # 1M
    _, labels = mask_batch(
        ids,
        np.arange(256),
        mask_token_id=MASK,
        vocab_size=VOCAB,
        strategy="span",
        probability=prob,
        span_geometric_p=p,
        max_span=max_span,
    )
    m = np.pad(labels != -100, ((0, 0), (1, 1))).astype(np.int8)
    d = np.diff(m, axis=1)
    runs = np.nonzero(d == -1)[1] - np.nonzero(d == 1)[1]  # row-major: starts and ends pair up
    pmf = p * (1 - p) ** np.arange(max_span)
    pmf /= pmf.sum()
    hist = np.bincount(runs, minlength=2 * max_span + 2)[1:] / len(runs)
    assert runs.max() <= 2 * max_span  # only touching spans exceed max_span
    assert abs(runs.mean() - (np.arange(1, max_span + 1) * pmf).sum()) < 0.25, runs.mean()
    assert np.abs(hist[:max_span] - pmf).max() < 0.015, (hist[:max_span], pmf)


def test_span_masking_respects_words_and_specials(batch):
    ids, ws = batch
    ids, ws = ids[:512], ws[:512]
    _, labels = run(ids, ws, strategy="span")
    masked = labels != -100
    special = np.isin(ids, SPECIALS)
    assert not masked[special].any()
    cont = (ws[:, 1:] == 0) & ~special[:, 1:] & ~special[:, :-1]
    assert (masked[:, 1:][cont] == masked[:, :-1][cont]).all()


def test_fixed_count_is_exact_per_row():
    ids, _ = make_batch(64, 128)
    _, labels = run(ids, strategy="fixed", probability=0.5, max_predictions=20)
    assert ((labels != -100).sum(axis=1) == 20).all()


def test_mask_depends_only_on_seed_epoch_and_index(batch):
    ids, ws = batch
    ids, ws = ids[:256], ws[:256]
    index = np.arange(1000, 1256)
    kw = dict(mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, seed=11, epoch=2)
    for strategy in STRATEGIES:
        out, labels = mask_batch(ids, index, word_start=ws, strategy=strategy, **kw)
        # Another batch composition: reversed order, different batch size, several threads.
        perm = np.arange(255, -1, -1)
        o2, l2 = mask_batch(
            ids[perm], index[perm], word_start=ws[perm], strategy=strategy, threads=4, **kw
        )
        assert (o2 == out[perm]).all() and (l2 == labels[perm]).all()
        o3, _ = mask_batch(ids[17:18], index[17:18], word_start=ws[17:18], strategy=strategy, **kw)
        assert (o3[0] == out[17]).all()
        # Another epoch or seed gives another mask.
        o4, _ = mask_batch(ids, index, word_start=ws, strategy=strategy, **{**kw, "epoch": 3})
        assert (o4 != out).any()


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.int64])
def test_id_dtypes_give_the_same_mask(dtype):
    ids, _ = make_batch(32, 64)
    ids = ids % 60_000
    ref, ref_labels = run(ids)
    out, labels = run(ids.astype(dtype))
    assert out.dtype == dtype and labels.dtype == np.int64
    assert (out.astype(np.int64) == ref).all() and (labels == ref_labels).all()


def test_input_is_not_modified_and_errors_are_clear():
    ids, _ = make_batch(4, 16)
    before = ids.copy()
    run(ids, probability=1.0)
    assert (ids == before).all()
    with pytest.raises(ValueError, match="mask probability"):
        run(ids, probability=1.5)
    with pytest.raises(ValueError, match="unknown masking strategy"):
        run(ids, strategy="nope")
    with pytest.raises(ValueError, match="needs word_start"):
        run(ids, strategy="whole_word")
    with pytest.raises(ValueError, match="sample_index"):
        mask_batch(ids, [0], mask_token_id=MASK, vocab_size=VOCAB)


def test_matches_hf_collator_semantics_in_distribution(batch):
    """Same shares as HF `DataCollatorForLanguageModeling` on the same batch (not same draws)."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])}
    vocab.update({f"w{i}": i for i in range(len(vocab), VOCAB)})
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(
            tokenizers.models.WordLevel(vocab, unk_token="[UNK]")
        ),
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        mask_token="[MASK]",
    )
    coll = transformers.DataCollatorForLanguageModeling(tok, return_tensors="np", seed=0)
    ids, _ = batch
    ids = ids[:512]
    stm = np.isin(ids, SPECIALS)
    hf_out, hf_labels = coll.numpy_mask_tokens(ids.copy(), special_tokens_mask=stm)
    out, labels = run(ids, special_tokens_mask=stm)
    for o, lab in ((hf_out, hf_labels), (out, labels)):
        m = lab != -100
        assert abs(m.sum() / (~stm).sum() - 0.15) < 0.003
        assert abs((o[m] == MASK).mean() - 0.8) < 0.01
        assert not m[stm].any()


# ---- sequences -------------------------------------------------------------------------------


def make_docs(n: int, seed: int = 0) -> list[list[tuple[list[int], list[int]]]]:
    """Token id = 10 + doc * 100_000 + sentence * 100 + position: every token names its origin."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n):
        sents = []
        for s in range(int(rng.integers(1, 12))):
            k = int(rng.integers(1, 40))
            sents.append(([10 + d * 100_000 + s * 100 + j for j in range(k)], [1] * k))
        docs.append(sents)
    return docs


def test_nsp_labels_are_balanced_and_random_b_is_from_another_document():
    docs = make_docs(1000)
    rows = build_sequences(docs, 128, cls_id=CLS, sep_id=SEP, pad_id=PAD, layout="nsp", seed=5)
    labels = rows["nsp_label"]
    assert set(np.unique(labels)) == {0, 1}
    assert abs(labels.mean() - 0.5) < 0.02, labels.mean()
    for r in range(len(labels)):
        row, tt, n = rows["input_ids"][r], rows["token_type_ids"][r], rows["length"][r]
        assert row[0] == CLS and row[n - 1] == SEP and (row[n:] == PAD).all()
        sep = int(np.argmax(row == SEP))
        a, b = row[1:sep].astype(np.int64), row[sep + 1 : n - 1].astype(np.int64)
        assert (tt[: sep + 1] == 0).all() and (tt[sep + 1 : n] == 1).all()
        a_doc, b_doc = (a - 10) // 100_000, (b - 10) // 100_000
        assert (a_doc == a_doc[0]).all()
        if labels[r] == 1:
            assert (b_doc != a_doc[0]).all()
        else:
            assert (b_doc == a_doc[0]).all() and b[0] > a[-1]
    again = build_sequences(docs, 128, cls_id=CLS, sep_id=SEP, pad_id=PAD, layout="nsp", seed=5)
    assert (again["input_ids"] == rows["input_ids"]).all()


def test_full_sentence_rows_pack_documents_in_order():
    docs = make_docs(50, seed=1)
    rows = build_sequences(docs, 64, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    ids, stm = rows["input_ids"], rows["special_tokens_mask"]
    assert (rows["nsp_label"] == -1).all() and (rows["token_type_ids"] == 0).all()
    assert (stm == np.isin(ids, [CLS, SEP, PAD])).all()
    assert (rows["word_start"][stm == 1] == 0).all()
    body = ids[stm == 0]  # row-major order
    assert body.tolist() == [t for d in docs for s, _ in d for t in s]


def test_masking_a_built_batch_never_touches_its_specials():
    rows = build_sequences(make_docs(200, 2), 128, cls_id=CLS, sep_id=SEP, pad_id=PAD, layout="nsp")
    ids = rows["input_ids"]
    _, labels = mask_batch(
        ids,
        np.arange(len(ids)),
        mask_token_id=MASK,
        # The ids name their origin (make_docs), so the vocabulary must hold them all: ids
        # outside it are refused.
        vocab_size=int(ids.max()) + 1,
        special_tokens_mask=rows["special_tokens_mask"],
        word_start=rows["word_start"],
        strategy="whole_word",
    )
    assert (labels[rows["special_tokens_mask"] == 1] == -100).all()


def test_split_sentences():
    text = 'He said "Hi." Then he left! Dr. Who? 3.5 pts.\n今天下雨。明天晴！ यह है। ठीक।'
    assert split_sentences(text) == [
        'He said "Hi."',
        " Then he left!",
        " Dr. Who?",
        " 3.5 pts.",
        "\n今天下雨。",
        "明天晴！",
        " यह है।",
        " ठीक।",
    ]
    assert "".join(split_sentences(text)) == text


PIECES = [*"ab A.!?\u2026\n\t \"')\u3002\uff01\uff1f\u300d\u0964", "Mr.", "e.g.", "J. "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_split_sentences_round_trips(text):
    sents = split_sentences(text)
    if not text.strip():
        assert sents == []
    else:
        assert "".join(sents) == text
        assert all(s.strip() for s in sents)
