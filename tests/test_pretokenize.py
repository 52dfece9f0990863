"""Split patterns behave exactly like their regex, as Python's `regex` module runs it."""

from __future__ import annotations

import unicodedata

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import dataprep
from dataprep._core import Tokenizer  # noqa: F401 - the extension must import

PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "cl100k": (
        r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"
        r"|\s++$|\s*[\r\n]|\s+(?!\S)|\s"
    ),
    "o200k": "|".join(
        [
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"\p{N}{1,3}",
            r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
            r"\s*[\r\n]+",
            r"\s+(?!\S)",
            r"\s+",
        ]
    ),
}
COMPILED = {k: regex.compile(v) for k, v in PATTERNS.items()}


def reference(name: str, text: str) -> list[str]:
    return COMPILED[name].findall(text)


# Characters whose Unicode category is the same in Python's tables and ours: code points assigned
# after Unicode 14 (Python 3.11's `unicodedata`) may be classified differently by `regex`.
STABLE = st.characters(
    codec="utf-8",
    exclude_categories=("Cs", "Cn", "Co"),
).filter(lambda c: unicodedata.category(c) != "Cn")

TEXT = st.lists(
    st.one_of(
        STABLE,
        st.sampled_from(
            [" ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "'ve", "\u2019", "\u3000", "123456"]
        ),
        st.text(alphabet="abcXYZ한국어🎉", min_size=1, max_size=6),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_builtin_patterns_equal_regex_on_generated_text(text: str) -> None:
    for name in PATTERNS:
        assert dataprep.split(name, text) == reference(name, text), name


def test_builtin_patterns_equal_regex_on_real_text(demo_texts: list[str]) -> None:
    for name in PATTERNS:
        for t in demo_texts:
            assert dataprep.split(name, t) == reference(name, t), name


def test_pattern_names_and_regex_text_are_the_same_splitter() -> None:
    sample = "It's 2024!\n\n  Über-fast 한국어 text   "
    for name, pat in PATTERNS.items():
        assert dataprep.split(pat, sample) == dataprep.split(name, sample)


def test_custom_regex_keeps_unmatched_text() -> None:
    # HF "Isolated" semantics: the gaps between matches are pieces too, so nothing is lost.
    assert dataprep.split(r"\d+", "ab12cd") == ["ab", "12", "cd"]
    assert dataprep.split(r"(?<=a)b", "abab") == ["a", "b", "a", "b"]
