"""The encoder on tokenizers we did not train: HF byte-level BPE files in GPT-2, RoBERTa and
Llama-3 styles, and tiktoken ranks. Ids must equal HF's / tiktoken's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import tiktoken
import tokenizers
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

import dataprep

LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def hf_trained(style: str, texts: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE())
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif style == "roberta":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    else:  # llama3
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


@pytest.fixture(scope="module", params=["gpt2", "roberta", "llama3"])
def hf_pair(request, tmp_path_factory, demo_texts):  # type: ignore[no-untyped-def]
    hf = hf_trained(request.param, demo_texts)
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    hf.save(str(path))
    return hf, dataprep.Tokenizer.from_file(str(path))


def test_hf_files_give_hf_ids(hf_pair, demo_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    hf, ours = hf_pair
    for t in demo_texts:
        assert ours.encode(t) == hf.encode(t, add_special_tokens=False).ids


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cn", "Co")), max_size=60
    )
)
def test_hf_files_give_hf_ids_on_generated_unicode(hf_pair, text: str) -> None:  # type: ignore[no-untyped-def]
    hf, ours = hf_pair
    # HF also matches special-token strings inside text; our encode() treats text as text.
    assume(not any(s in text for s in ("<s>", "</s>", "<pad>")))
    assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_tiktoken_ranks_give_tiktoken_ids(
    tmp_path: Path, demo_corpus: Path, demo_texts: list[str]
) -> None:
    out = tmp_path / "t.json"
    dataprep.train_bpe(
        demo_corpus, 900, out=out, pattern="cl100k", special_tokens=["<|endoftext|>"]
    )
    ranks, _ = dataprep.tiktoken_paths(out)
    enc = dataprep.tiktoken_encoding(ranks)
    ours = dataprep.Tokenizer.from_file(str(ranks))
    assert ours.special_tokens == [("<|endoftext|>", 899)]  # specials last: byte ranks 0-255
    for t in demo_texts:
        assert ours.encode(t) == enc.encode_ordinary(t)
    # Without the sidecar the pattern must be given.
    bare = tmp_path / "bare.tiktoken"
    bare.write_bytes(ranks.read_bytes())
    with pytest.raises(dataprep.DataprepError, match="no split pattern"):
        dataprep.Tokenizer.from_file(str(bare))
    plain = dataprep.Tokenizer.from_file(str(bare), "cl100k")
    assert plain.encode(demo_texts[0]) == enc.encode_ordinary(demo_texts[0])


def test_tiktoken_rank_semantics_on_a_hand_made_vocabulary(tmp_path: Path) -> None:
    # "abc" can be reached from ("ab", "c") and ("a", "bc"); tiktoken takes whichever pair's
    # concatenation has the lowest rank, which is what ranks-as-merges reproduces.
    import base64

    vocab = [bytes([b]) for b in range(256)] + [b"bc", b"ab", b"abc", b"cab"]
    p = tmp_path / "v.tiktoken"
    p.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(vocab)))
    enc = tiktoken.Encoding(
        "v",
        pat_str=r"\S+|\s+",
        mergeable_ranks={t: i for i, t in enumerate(vocab)},
        special_tokens={},
    )
    ours = dataprep.Tokenizer.from_file(str(p), r"\S+|\s+")
    for t in ["abc", "abcab", "cabc", "aabcc bcab", "abcabcabc"]:
        assert ours.encode(t) == enc.encode_ordinary(t), t


def test_long_pieces_are_not_quadratic(trained) -> None:  # type: ignore[no-untyped-def]
    path, tok = trained
    hf = tokenizers.Tokenizer.from_file(str(path))
    text = "가나다라마바사아자차카타파하" * 4000 + "1" * 50000  # two pieces of ~170 KB and 50 KB
    t0 = time.perf_counter()
    ids = tok.encode(text)
    assert time.perf_counter() - t0 < 5  # quadratic merging would take minutes
    assert ids == hf.encode(text).ids
    assert tok.decode(ids) == text


def test_other_models_run_on_the_hf_engine_or_are_refused(tmp_path: Path) -> None:
    wp = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##a": 2}, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    p = tmp_path / "wp.json"
    wp.save(str(p))
    tok = dataprep.Tokenizer.from_file(str(p))
    assert tok.engine == "hf"
    assert tok.encode("aa a b") == wp.encode("aa a b").ids == [1, 2, 1, 0]
    with pytest.raises(ValueError, match=r"^decode_bytes applies to byte-level BPE"):
        tok.decode_bytes([1])
    bpe = tokenizers.Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")], dropout=0.5))
    p2 = tmp_path / "dropout.json"
    bpe.save(str(p2))
    with pytest.raises(ValueError, match=r"^model\.dropout: BPE dropout 0\.5 .*dropout\.json"):
        dataprep.Tokenizer.from_file(str(p2))
    p3 = tmp_path / "garbage.json"
    p3.write_text("{nope")
    with pytest.raises(ValueError, match=r"not valid JSON.*garbage\.json"):
        dataprep.Tokenizer.from_file(str(p3))


@pytest.fixture(scope="module", params=["gpt2", "cl100k", "o200k"])
def tiktoken_pair(request, tmp_path_factory, demo_corpus):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("tt") / "t.json"
    dataprep.train_bpe(demo_corpus, 700, out=out, pattern=request.param, holdout_every=0)
    ranks, _ = dataprep.tiktoken_paths(out)
    return dataprep.tiktoken_encoding(ranks), dataprep.Tokenizer.from_file(str(ranks))


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cn", "Co")), max_size=60
    )
)
def test_tiktoken_ids_on_generated_unicode(tiktoken_pair, text: str) -> None:  # type: ignore[no-untyped-def]
    enc, ours = tiktoken_pair
    assert ours.encode(text) == enc.encode_ordinary(text)
