"""Parity of `Tokenizer.from_file` on `.tiktoken` ranks with `tiktoken.Encoding` itself.

The ranks come from a byte-level BPE trained small (the zoo's o200k layout), as written by
tiktoken (`base64 rank` lines), with a `<file>.json` sidecar {"name", "pat_str",
"special_tokens"} or with `pattern=`. A second rank list adds tokens no merge reaches (no split of
them into two ranked tokens exists): tiktoken looks a whole piece up before merging, so a piece
equal to such a token is that one id.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import tokenizer_zoo as zoo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken import Encoding

from dataprep import DataprepError, Tokenizer

# Case name -> (the `pattern=` argument, tiktoken's pat_str for it).
PATTERNS = {
    "gpt2": ("gpt2", zoo.GPT2_PATTERN),
    "cl100k": ("cl100k", zoo.CL100K_PATTERN),
    "o200k": ("o200k", zoo.O200K_PATTERN),
    "regex": (zoo.GPT4_PATTERN, zoo.GPT4_PATTERN),  # any other text is the regex itself
}

# Tokens no merge reaches: none of their two-part splits is a pair of ranked tokens.
UNREACHABLE = [b"qzxj", b" Qpzv", b" Zwqvk", "한국어사전".encode(), "👋🏽".encode()]
# And a token that is part of a character (reached by a merge; decodes to U+FFFD).
HALF_CHARACTER = b"\xf0\x9f\x98"


@functools.cache
def trained_ranks() -> dict[bytes, int]:
    """The o200k layout's vocabulary as ranks."""
    return zoo.tiktoken_ranks(zoo.build("o200k"))


@functools.cache
def unreachable_ranks() -> dict[bytes, int]:
    ranks = dict(trained_ranks())
    for token in UNREACHABLE:
        assert token not in ranks
        assert not any(token[:k] in ranks and token[k:] in ranks for k in range(1, len(token)))
        ranks[token] = len(ranks)
    assert HALF_CHARACTER not in ranks
    ranks[HALF_CHARACTER] = len(ranks)
    return ranks


def specials_after(ranks: dict[bytes, int]) -> dict[str, int]:
    """Special tokens after the ranks, with a hole between (as o200k_base has)."""
    n = len(ranks)
    return {"<|endoftext|>": n, "<|fim_prefix|>": n + 1, "<|endofprompt|>": n + 5}


@functools.cache
def texts() -> list[str]:
    lines = zoo.corpus()
    english = [x for x in lines[:400] if x.isascii()][:25]
    korean = [x for x in lines if any("가" <= c <= "힣" for c in x)][:25]
    return [*english, *korean, *zoo.HARD_TEXTS, "qzxj Qpzv Zwqvk 한국어사전 👋🏽 x👋🏽 😀😘"]


Pair = tuple[Tokenizer, Encoding]


@pytest.fixture(scope="module")
def tiktoken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiktoken")


def with_sidecar(d: Path, ranks: dict[bytes, int], name: str) -> Pair:
    path = zoo.write_tiktoken(ranks, d / f"{name}.tiktoken")
    specials = specials_after(ranks)
    sidecar = {"name": name, "pat_str": zoo.O200K_PATTERN, "special_tokens": specials}
    Path(f"{path}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    enc = Encoding(name, pat_str=zoo.O200K_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    return Tokenizer.from_file(str(path)), enc


def with_pattern(d: Path, ranks: dict[bytes, int], name: str) -> Pair:
    stem = "trained" if ranks is trained_ranks() else "unreachable"
    path = zoo.write_tiktoken(ranks, d / f"{stem}-bare.tiktoken")
    argument, pat_str = PATTERNS[name]
    enc = Encoding("bare", pat_str=pat_str, mergeable_ranks=ranks, special_tokens={})
    return Tokenizer.from_file(str(path), pattern=argument), enc


def pairs(d: Path) -> dict[str, Pair]:
    out = {
        "trained+sidecar": with_sidecar(d, trained_ranks(), "trained"),
        "unreachable+sidecar": with_sidecar(d, unreachable_ranks(), "unreachable"),
    }
    for name in PATTERNS:
        out[f"trained+{name}"] = with_pattern(d, trained_ranks(), name)
        out[f"unreachable+{name}"] = with_pattern(d, unreachable_ranks(), name)
    return out


CASES = ["trained+sidecar", "unreachable+sidecar"] + [
    f"{r}+{name}" for name in PATTERNS for r in ("trained", "unreachable")
]


@pytest.fixture(scope="module")
def loaded(tiktoken_dir: Path) -> dict[str, Pair]:
    return pairs(tiktoken_dir)


def check(ours: Tokenizer, enc: Encoding, text: str) -> None:
    specials = set(enc.special_tokens_set)
    want = enc.encode(text, allowed_special="all")
    assert ours.encode(text) == want, text
    assert ours.encode(text, split_special_tokens=True) == enc.encode_ordinary(text), text
    # No post-processor in a .tiktoken: add_special_tokens changes nothing.
    assert ours.encode(text, add_special_tokens=True) == want, text
    assert ours.decode(want) == enc.decode(want), text
    kept = [
        i
        for i in want
        if enc.decode_single_token_bytes(i).decode("utf-8", "replace") not in specials
    ]
    assert ours.decode(want, skip_special_tokens=True) == enc.decode(kept), text


@pytest.mark.parametrize("case", CASES)
def test_tiktoken_texts(loaded: dict[str, Pair], case: str) -> None:
    ours, enc = loaded[case]
    assert ours.vocab_size == enc.n_vocab
    assert ours.template is None
    for text in texts():
        check(ours, enc, text)


def test_unreachable_tokens_are_found_whole(loaded: dict[str, Pair]) -> None:
    """The premise of the unreachable case: tiktoken gives those tokens' ids."""
    ours, enc = loaded["unreachable+sidecar"]
    ranks = unreachable_ranks()
    assert enc.encode_ordinary(" Qpzv") == [ranks[b" Qpzv"]]
    assert ours.encode(" Qpzv") == [ranks[b" Qpzv"]]
    assert ours.encode("한국어사전") == enc.encode_ordinary("한국어사전")


@pytest.mark.parametrize("case", ["trained+sidecar", "unreachable+sidecar", "unreachable+cl100k"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=40),
        st.lists(
            st.sampled_from(
                [
                    *zoo.PIECES,
                    "qzxj",
                    " Zwqvk",
                    "👋🏽",
                    "<|endoftext|>",
                    "<|endofprompt|>",
                    "<|fim_prefix|>",
                ]
            ),
            max_size=10,
        ).map("".join),
    )
)
def test_tiktoken_hypothesis(loaded: dict[str, Pair], case: str, text: str) -> None:
    ours, enc = loaded[case]
    check(ours, enc, text)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_tiktoken_decode_any_ids(loaded: dict[str, Pair], data: st.DataObject) -> None:
    """Decode of any ranked ids, cut characters included (U+FFFD as tiktoken's errors="replace")."""
    ours, enc = loaded["unreachable+sidecar"]
    ids = data.draw(st.lists(st.integers(0, len(unreachable_ranks()) - 1), max_size=10))
    assert ours.decode(ids) == enc.decode(ids)


def test_tiktoken_encode_batch(loaded: dict[str, Pair]) -> None:
    ours, enc = loaded["unreachable+sidecar"]
    batch = texts()
    for threads in (1, 2):
        got = ours.encode_batch(batch, threads=threads)
        assert [a.tolist() for a in got] == [enc.encode(t, allowed_special="all") for t in batch]
        got = ours.encode_batch(batch, threads=threads, split_special_tokens=True)
        assert [a.tolist() for a in got] == [enc.encode_ordinary(t) for t in batch]


def test_tiktoken_without_pattern_is_refused(tiktoken_dir: Path) -> None:
    """No sidecar and no `pattern`: the split is unknown; refused, naming the file (with the
    project's input error: the ValueError-with-JSON-path contract is tokenizer.json's)."""
    path = zoo.write_tiktoken(trained_ranks(), tiktoken_dir / "lonely.tiktoken")
    with pytest.raises((ValueError, DataprepError), match=r"lonely\.tiktoken.*pattern"):
        Tokenizer.from_file(str(path))
