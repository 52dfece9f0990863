"""`train_bpe`: merges against a reference trainer, HF / transformers / tiktoken parity,
round trips, determinism, options, and the CLI with its error paths."""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
from pathlib import Path

import pytest
import regex
import tiktoken
import tokenizers
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

import dataprep
from dataprep.cli import main

GPT2 = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")


def reference_merges(
    texts: list[str], vocab_size: int, min_frequency: int
) -> list[tuple[bytes, bytes]]:
    """The obviously-correct trainer: recount all pairs before every merge. Ids are bytes
    (0..255), then one id per merge; the highest count wins, ties go to the smaller
    (left id, right id) -- the documented rule."""
    words = collections.Counter(p.encode() for t in texts for p in GPT2.findall(t))
    seqs = {w: list(w) for w in words}
    token = [bytes([b]) for b in range(256)]
    merges = []
    while len(token) < vocab_size:
        pairs: collections.Counter[tuple[int, int]] = collections.Counter()
        for w, s in seqs.items():
            for a, b in itertools.pairwise(s):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_frequency:
            break
        new = len(token)
        token.append(token[best[0]] + token[best[1]])
        merges.append((token[best[0]], token[best[1]]))
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def our_merges(tok: dataprep.Tokenizer, path: Path) -> list[tuple[bytes, bytes]]:
    # Read the merges back from tokenizer.json through HF's own loader.
    hf = tokenizers.Tokenizer.from_file(str(path))
    import json

    model = json.loads(hf.to_str())["model"]
    decode = {v: k for k, v in bytes_to_unicode().items()}

    def b(s: str) -> bytes:
        return bytes(decode[c] for c in s)

    return [(b(m[0]), b(m[1])) for m in model["merges"]]


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


TOY = [
    "the cat sat on the mat; the cat ate the rat.\n\nthe end",
    "aaaa abab abab baba aaab 1234 1234 12 12 12",
    "hug hugs pug pun bun hugging hugged, hugger! 'tis it's we're",
    "Über über ÜBER naïve naïve café café 한국어 한국 한국어 🎉🎉 🎉",
]


@pytest.mark.parametrize("vocab_size,min_frequency", [(300, 1), (330, 2), (1000, 1)])
def test_merges_equal_reference_trainer(
    tmp_path: Path, vocab_size: int, min_frequency: int
) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i, t in enumerate(TOY):
        (corpus / f"{i}.txt").write_text(t * 3)
    out = tmp_path / "tok.json"
    tok, _ = dataprep.train_bpe(
        corpus, vocab_size, out=out, min_frequency=min_frequency, holdout_every=0, tiktoken=False
    )
    texts = [t * 3 for t in TOY]
    assert our_merges(tok, out) == reference_merges(texts, vocab_size, min_frequency)


def test_hf_transformers_and_tiktoken_give_our_ids(trained, demo_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    path, tok = trained
    hf = tokenizers.Tokenizer.from_file(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    ranks, _ = dataprep.tiktoken_paths(path)
    enc = dataprep.tiktoken_encoding(ranks)
    assert isinstance(enc, tiktoken.Encoding)
    for t in demo_texts:
        ids = tok.encode(t)
        assert hf.encode(t).ids == ids
        assert enc.encode_ordinary(t) == ids
        assert fast(t, add_special_tokens=False)["input_ids"] == ids
        assert tok.decode(ids) == t
    batch = tok.encode_batch(demo_texts[:20], threads=2)
    assert [list(a) for a in batch] == [tok.encode(t) for t in demo_texts[:20]]
    assert all(a.dtype.name == "uint32" for a in batch)


def test_special_tokens_have_fixed_ids(trained) -> None:  # type: ignore[no-untyped-def]
    """By default the specials come last: the bytes are ids 0-255 and the .tiktoken ranks run
    0..n-k without a hole, as tiktoken-format loaders expect."""
    path, tok = trained
    assert tok.special_tokens == [("<|endoftext|>", 998), ("[MASK]", 999)]
    hf = tokenizers.Tokenizer.from_file(str(path))
    assert hf.token_to_id("<|endoftext|>") == 998 and hf.token_to_id("[MASK]") == 999
    assert [hf.token_to_id(bytes_to_unicode()[b]) for b in range(256)] == list(range(256))
    ranks_path = dataprep.tiktoken_paths(path)[0]
    ranks = [int(line.split()[1]) for line in ranks_path.read_text().splitlines()]
    assert ranks == list(range(998))
    enc = dataprep.tiktoken_encoding(ranks_path)
    assert enc.encode("<|endoftext|>", allowed_special="all") == [998]
    assert tok.vocab_size == 1000


def test_specials_first_is_the_same_vocabulary_renumbered(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--specials first` gives the specials 0..k-1 and every other id k higher: the same merges,
    so every text encodes to the same tokens."""
    _, last = trained
    out = tmp_path / "first.json"
    first, _ = dataprep.train_bpe(
        Path(__file__).parent / "data" / "demo",
        1000,
        out=out,
        special_tokens=["<|endoftext|>", "[MASK]"],
        specials="first",
        holdout_every=0,
    )
    assert first.special_tokens == [("<|endoftext|>", 0), ("[MASK]", 1)]
    hf = tokenizers.Tokenizer.from_file(str(out))
    assert hf.token_to_id("<|endoftext|>") == 0 and hf.token_to_id(bytes_to_unicode()[0]) == 2
    text = "Hello <|endoftext|> world, [MASK] again: ünïcödé 한국어 1234"
    a, b = last.encode(text), first.encode(text)
    renumber = {998: 0, 999: 1}
    assert list(b) == [renumber.get(i, i + 2) for i in a]
    assert hf.encode(text).ids == list(b)


def test_specials_option_is_validated(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["train-bpe", str(tmp_path), "--vocab-size", "300", "--specials", "middle"]
    )
    assert r.exit_code == 2 and "--specials" in r.output, r.output


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trip(text: str) -> None:
    tok = _ROUND_TRIP_TOK
    assert tok.decode(tok.encode(text)) == text


_ROUND_TRIP_TOK = dataprep.train_bpe(Path(__file__).parent / "data" / "demo", 600, holdout_every=0)[
    0
]


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", r"\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+"])
def test_other_patterns_round_trip_and_match_hf(
    tmp_path: Path, demo_corpus: Path, demo_texts: list[str], pattern: str
) -> None:
    out = tmp_path / "t.json"
    tok, _ = dataprep.train_bpe(demo_corpus, 700, out=out, pattern=pattern, holdout_every=0)
    hf = tokenizers.Tokenizer.from_file(str(out))
    enc = dataprep.tiktoken_encoding(dataprep.tiktoken_paths(out)[0])
    for t in demo_texts[:15]:
        ids = tok.encode(t)
        assert tok.decode(ids) == t
        assert hf.encode(t).ids == ids
        if pattern in ("cl100k", "o200k"):  # tiktoken drops text a custom regex leaves unmatched
            assert enc.encode_ordinary(t) == ids


def test_output_is_identical_whatever_the_thread_count(tmp_path: Path, demo_corpus: Path) -> None:
    digests = set()
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}.json"
        dataprep.train_bpe(demo_corpus, 800, out=out, threads=threads, tiktoken=False)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_min_frequency_and_max_token_length(demo_corpus: Path) -> None:
    tok, stats = dataprep.train_bpe(demo_corpus, 5000, min_frequency=50, holdout_every=0)
    assert tok.vocab_size < 5000 and stats["merges"] == tok.num_merges
    tok, _ = dataprep.train_bpe(demo_corpus, 700, max_token_length=3, holdout_every=0)
    assert max(len(tok.token_bytes(i)) for i in range(tok.vocab_size)) <= 3


def test_stats_report_holdout_compression(demo_corpus: Path) -> None:
    _, stats = dataprep.train_bpe(demo_corpus, 800, holdout_every=5)
    assert stats["holdout_documents"] > 0
    assert 1.5 < stats["holdout_bytes"] / stats["holdout_tokens"] < 6
    assert stats["documents"] == 45 and stats["files"] == 2


# ---- CLI and errors -------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_cli_trains_and_writes_outputs(tmp_path: Path, demo_corpus: Path) -> None:
    out = tmp_path / "tok.json"
    code, output = run(
        "train-bpe",
        str(demo_corpus),
        "--vocab-size",
        "600",
        "--out",
        str(out),
        "--holdout-every",
        "5",
    )
    assert code == 0, output
    assert "bytes/token" in output and "unique words" in output
    assert out.exists() and out.with_suffix(".tiktoken").exists()
    assert tokenizers.Tokenizer.from_file(str(out)).get_vocab_size() == 600


@pytest.mark.parametrize(
    "args,message",
    [
        (["{missing}"], "missing: No such file"),
        (["{empty_dir}"], "directory contains no files"),
        (["{blank_file}"], "no text found"),
        (["{demo}", "--vocab-size", "100"], "vocab size 100 is too small"),
        # A missing directory is created (tests/test_options.py); one that cannot be written to:
        (["{demo}", "--out", "/proc/dataprep/tok.json"], "/proc/dataprep"),
        (["{corrupt}"], "corrupt.gz"),
        (["{demo}", "--pattern", "(unclosed"], "invalid split pattern"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(
    tmp_path: Path, demo_corpus: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("  \n\n ")
    (tmp_path / "corrupt.gz").write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    paths = {
        "missing": tmp_path / "missing",
        "empty_dir": tmp_path / "empty",
        "blank_file": tmp_path / "blank.txt",
        "demo": demo_corpus,
        "corrupt": tmp_path / "corrupt.gz",
    }
    out = tmp_path / "out" / "tok.json"
    out.parent.mkdir()
    argv = [a.format(**paths) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    code, output = run("train-bpe", *argv)
    assert code != 0
    assert message in output, output
    assert output.strip().count("\n") == 0, output
    assert os.listdir(out.parent) == []
