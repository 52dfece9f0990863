"""Parity of `dataprep.Tokenizer.from_file` with HF `tokenizers` on the layouts real models ship
(tests/tokenizer_zoo.py) and on random tokenizer configurations: the same ids (with
add_special_tokens and split_special_tokens both ways), the same decode, the same vocab_size.

HF is read with `no_truncation()`/`no_padding()`: we do not apply what a file says of those
(tok.notes says so). Where HF itself raises or panics on a text, that text is left out (see
`tokenizer_zoo.hf_encode`): there is no answer to compare with.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tokenizer_zoo as zoo
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenizers import (
    AddedToken,
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tokenizers import Tokenizer as HFTokenizer

from dataprep import Tokenizer

LAYOUTS = list(zoo.LAYOUTS)

Pair = tuple[Tokenizer, HFTokenizer]


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Pair]:
    """Layout name -> (ours read from its tokenizer.json, HF's reading of the same file)."""
    root = tmp_path_factory.mktemp("zoo")
    cache: dict[str, Pair] = {}

    def get(name: str) -> Pair:
        if name not in cache:
            tj = zoo.build(name)
            path = zoo.write(tj, root / f"{name}.json")
            cache[name] = (Tokenizer.from_file(str(path)), zoo.hf_tokenizer(tj))
        return cache[name]

    return get


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_hard_texts(load: Callable[[str], Pair], name: str) -> None:
    ours, hf = load(name)
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    assert ours.engine in ("own", "hf")
    bad = zoo.mismatches(ours, hf, zoo.HARD_TEXTS, limit=8)
    assert not bad, f"{name} ({ours.engine}):\n" + "\n".join(bad)


# The layouts the own engines run (every other one runs on the `tokenizers` crate): a file that
# moves to the hf engine by accident is slower, not wrong, so nothing else would notice.
OWN_ENGINE = {
    "gpt2", "llama3", "qwen2", "o200k", "bert", "gpt_neox", "gpt2_no_invalid_utf8_bytes",
    "gpt2_ignore_merges", "gpt2_shuffled_ids", "with_truncation_padding",
}  # fmt: skip


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_engine(load: Callable[[str], Pair], name: str) -> None:
    ours, _ = load(name)
    assert ours.engine == ("own" if name in OWN_ENGINE else "hf")


def check_template(ours: Tokenizer, hf: HFTokenizer, tj: dict[str, Any]) -> None:
    """tok.template: the special ids the post-processor puts around one sequence, as HF puts
    them; None when the file has no post_processor."""
    if tj["post_processor"] is None:
        assert ours.template is None
        return
    assert ours.template is not None
    before, after = ours.template
    for text in ("Hello world", "", "한국어 [CLS]"):
        try:
            plain = zoo.hf_encode(hf, text, False, False)
            full = zoo.hf_encode(hf, text, True, False)
        except zoo.HFFailed:
            continue
        assert full == [*before, *plain, *after], text


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_long_document(load: Callable[[str], Pair], name: str) -> None:
    """A document of ~25 KB: English and Korean paragraphs and the hard texts, one string."""
    ours, hf = load(name)
    lines = zoo.corpus()
    korean = [x for x in lines if any("가" <= c <= "힣" for c in x)]
    document = "\n\n".join([*lines[:40], *korean[:30], *zoo.HARD_TEXTS])
    bad = zoo.mismatches(ours, hf, [document], limit=1)
    assert not bad, f"{name} ({ours.engine}): {bad[0][:2000]}"


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_template(load: Callable[[str], Pair], name: str) -> None:
    ours, hf = load(name)
    check_template(ours, hf, zoo.build(name))


def test_layout_notes(load: Callable[[str], Pair]) -> None:
    """Truncation and padding in the file are not applied, and tok.notes says so."""
    ours, hf = load("with_truncation_padding")
    notes = " ".join(ours.notes).lower()
    assert "truncation" in notes and "padding" in notes, ours.notes
    text = "a long text that truncation to 8 ids would cut, and padding to 16 would not pad"
    assert len(ours.encode(text)) > 16
    assert ours.encode(text) == zoo.hf_encode(hf, text, False, False)
    plain, _ = load("gpt2")
    assert not any("truncation" in n or "padding" in n for n in plain.notes), plain.notes


# Text from a broad alphabet (every code point but surrogates), or glued from pieces of the
# hard texts, the added tokens' contents, runs of spaces and combining marks.
ANY_CHAR = st.characters(codec="utf-8")
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.lists(
        st.one_of(st.sampled_from(zoo.PIECES), st.text(ANY_CHAR, max_size=3)), max_size=12
    ).map("".join),
)


@pytest.mark.parametrize("name", LAYOUTS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS)
def test_layout_hypothesis_text(load: Callable[[str], Pair], name: str, text: str) -> None:
    ours, hf = load(name)
    bad = zoo.mismatches(ours, hf, [text])
    assert not bad, f"{name} ({ours.engine}):\n" + "\n".join(bad)


@pytest.mark.parametrize("name", LAYOUTS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_layout_decode_any_ids(load: Callable[[str], Pair], name: str, data: st.DataObject) -> None:
    """Decode of arbitrary id sequences (half tokens of a character, specials anywhere)."""
    ours, hf = load(name)
    n = ours.vocab_size
    ids = data.draw(st.lists(st.integers(0, n - 1), max_size=12))
    for skip in (False, True):
        try:
            want = zoo.hf_decode(hf, ids, skip)
        except zoo.HFFailed:
            continue
        assert ours.decode(ids, skip_special_tokens=skip) == want, (ids, skip)


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_decode_every_id(load: Callable[[str], Pair], name: str) -> None:
    """Each id HF knows (model vocabulary and added tokens) decodes alone as HF decodes it, and
    all of them in one sequence too."""
    ours, hf = load(name)
    ids = sorted(set(hf.get_vocab(with_added_tokens=True).values()))
    for skip in (False, True):
        bad = [
            (i, zoo.hf_decode(hf, [i], skip), ours.decode([i], skip_special_tokens=skip))
            for i in ids
            if ours.decode([i], skip_special_tokens=skip) != zoo.hf_decode(hf, [i], skip)
        ]
        assert not bad, f"{name} ({ours.engine}) skip_special_tokens={skip}: {bad[:5]}"
        assert ours.decode(ids, skip_special_tokens=skip) == zoo.hf_decode(hf, ids, skip)


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama2", "t5", "added_flags"])
def test_encode_batch_equals_encode(load: Callable[[str], Pair], name: str) -> None:
    ours, _ = load(name)
    texts = zoo.HARD_TEXTS * 3
    for threads in (1, 2):
        for add in (False, True):
            for split in (False, True):
                got = ours.encode_batch(
                    texts, threads=threads, add_special_tokens=add, split_special_tokens=split
                )
                assert len(got) == len(texts)
                for text, arr in zip(texts, got, strict=True):
                    assert arr.dtype == np.uint32
                    want = ours.encode(text, add_special_tokens=add, split_special_tokens=split)
                    assert arr.tolist() == want, (threads, add, split, text)


# ---- random tokenizer configurations -------------------------------------------------------

POST_SPECIALS = ["<s>", "</s>", "[CLS]", "[SEP]"]  # trainer specials: ids 0..3 in every model
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
SPLIT_BEHAVIORS = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]


@st.composite
def normalizer_st(draw: st.DrawFn) -> Any:
    kind = draw(
        st.sampled_from(
            [
                "NFC",
                "NFD",
                "NFKC",
                "NFKD",
                "Lowercase",
                "StripAccents",
                "Strip",
                "Replace",
                "ReplaceRegex",
                "Prepend",
                "BertNormalizer",
                "Precompiled",
            ]
        )
    )
    if kind == "Strip":
        return normalizers.Strip(left=draw(st.booleans()), right=draw(st.booleans()))
    if kind == "Replace":
        return normalizers.Replace(draw(st.sampled_from(["  ", "a", "é", "\n", "'s"])), "▁")
    if kind == "ReplaceRegex":
        pattern = draw(st.sampled_from([r"\s+", r"\d", r" {2,}", r"[ae]"]))
        return normalizers.Replace(Regex(pattern), draw(st.sampled_from([" ", "", "X"])))
    if kind == "Prepend":
        return normalizers.Prepend(draw(st.sampled_from(["▁", " ", "##"])))
    if kind == "BertNormalizer":
        return normalizers.BertNormalizer(
            clean_text=draw(st.booleans()),
            handle_chinese_chars=draw(st.booleans()),
            strip_accents=draw(st.sampled_from([None, True, False])),
            lowercase=draw(st.booleans()),
        )
    if kind == "Precompiled":
        keys = draw(st.lists(st.sampled_from(sorted(zoo.CHARSMAP)), unique=True, min_size=1))
        return normalizers.Precompiled(zoo.precompiled_charsmap({k: zoo.CHARSMAP[k] for k in keys}))
    return getattr(normalizers, kind)()


@st.composite
def pre_tokenizer_st(draw: st.DrawFn) -> Any:
    kind = draw(
        st.sampled_from(
            [
                "ByteLevel",
                "Split",
                "Whitespace",
                "WhitespaceSplit",
                "BertPreTokenizer",
                "Punctuation",
                "Digits",
                "Metaspace",
                "UnicodeScripts",
                "CharDelimiterSplit",
            ]
        )
    )
    if kind == "ByteLevel":
        return pre_tokenizers.ByteLevel(
            add_prefix_space=draw(st.booleans()),
            use_regex=draw(st.booleans()),
            trim_offsets=draw(st.booleans()),
        )
    if kind == "Split":
        pattern = draw(st.sampled_from([" ", "a", "\n", r"\s+", r"\p{N}{1,3}", zoo.GPT4_PATTERN]))
        is_regex = pattern not in (" ", "a", "\n") or draw(st.booleans())
        return pre_tokenizers.Split(
            Regex(pattern) if is_regex else pattern,
            behavior=draw(st.sampled_from(SPLIT_BEHAVIORS)),
            invert=draw(st.booleans()),
        )
    if kind == "Punctuation":
        return pre_tokenizers.Punctuation(behavior=draw(st.sampled_from(SPLIT_BEHAVIORS)))
    if kind == "Digits":
        return pre_tokenizers.Digits(individual_digits=draw(st.booleans()))
    if kind == "Metaspace":
        return pre_tokenizers.Metaspace(
            replacement=draw(st.sampled_from(["▁", "_"])),
            prepend_scheme=draw(st.sampled_from(["first", "always", "never"])),
            split=draw(st.booleans()),
        )
    if kind == "CharDelimiterSplit":
        return pre_tokenizers.CharDelimiterSplit(draw(st.sampled_from([" ", "-", "한"])))
    return getattr(pre_tokenizers, kind)()


ADDED_POOL = ["<|x|>", "[Y]", "ing", " ", "  ", "한국", "é", "\n", "Hello", "<0x41>", "ab"]


@st.composite
def added_st(draw: st.DrawFn) -> list[AddedToken]:
    contents = draw(st.lists(st.sampled_from(ADDED_POOL), unique=True, max_size=4))
    return [
        AddedToken(
            c,
            single_word=draw(st.booleans()),
            lstrip=draw(st.booleans()),
            rstrip=draw(st.booleans()),
            normalized=draw(st.booleans()),
            special=draw(st.booleans()),
        )
        for c in contents
    ]


class Config(dict[str, Any]):
    """A drawn tokenizer.json whose repr (in hypothesis' reports) leaves out the vocabulary."""

    def __repr__(self) -> str:
        parts = {k: v for k, v in self.items() if k != "model"}
        parts["model"] = {k: v for k, v in self["model"].items() if k not in ("vocab", "merges")}
        return f"Config({json.dumps(parts, ensure_ascii=False)})"


@st.composite
def config_st(draw: st.DrawFn) -> Config:
    """A random tokenizer.json: normalizer and pre-tokenizer sequences, a model trained on a
    small corpus with random options, added tokens with random flags, a post-processor, a
    decoder."""
    norms = draw(st.lists(normalizer_st(), max_size=3))
    pres = draw(st.lists(pre_tokenizer_st(), max_size=3))
    kind = draw(st.sampled_from(["BPE", "WordPiece", "Unigram"]))
    byte_level = any(isinstance(p, pre_tokenizers.ByteLevel) for p in pres)
    specials = list(POST_SPECIALS)
    if kind == "BPE":
        prefix = draw(st.sampled_from([None, "", "##"]))
        suffix = draw(st.sampled_from([None, "", "</w>"]))
        unk = draw(st.booleans())
        byte_fallback = draw(st.booleans())
        if unk:
            specials.append("<unk>")
        affixes = {
            k: v
            for k, v in (("continuing_subword_prefix", prefix), ("end_of_word_suffix", suffix))
            if v is not None
        }
        model = models.BPE(
            unk_token="<unk>" if unk else None,
            fuse_unk=draw(st.booleans()),
            byte_fallback=byte_fallback,
            ignore_merges=draw(st.booleans()),
            **affixes,
        )
        trainer: Any = trainers.BpeTrainer(
            vocab_size=draw(st.sampled_from([300, 600])),
            special_tokens=specials + (BYTE_TOKENS if byte_fallback else []),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [],
            show_progress=False,
            **affixes,
        )
    elif kind == "WordPiece":
        specials.append("[UNK]")
        model = models.WordPiece(
            unk_token="[UNK]", max_input_chars_per_word=draw(st.sampled_from([5, 100]))
        )
        trainer = trainers.WordPieceTrainer(
            vocab_size=600, special_tokens=specials, show_progress=False
        )
    else:
        specials.append("<unk>")
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(
            vocab_size=1500, special_tokens=specials, unk_token="<unk>", show_progress=False
        )
    tok = HFTokenizer(model)
    if norms:
        tok.normalizer = (
            norms[0] if len(norms) == 1 and draw(st.booleans()) else normalizers.Sequence(norms)
        )
    if pres:
        tok.pre_tokenizer = (
            pres[0] if len(pres) == 1 and draw(st.booleans()) else pre_tokenizers.Sequence(pres)
        )
    try:
        tok.train_from_iterator(zoo.small_corpus(), trainer=trainer)
    except Exception as e:
        # A trainer refusing the draw (e.g. Unigram: "vocabulary not large enough to contain
        # all chars" after an odd normalizer) says nothing of the loader: another draw.
        assume(False)
        raise AssertionError from e
    tj = zoo.doc(tok)
    if kind == "BPE" and byte_fallback:  # byte tokens in the model's vocab, as Llama-2 has them
        tj["added_tokens"] = [a for a in tj["added_tokens"] if a["content"] not in BYTE_TOKENS]
        tok = HFTokenizer.from_str(json.dumps(tj))
    tok.add_tokens(draw(added_st()))
    ids = {s: tok.token_to_id(s) for s in POST_SPECIALS}
    post = draw(
        st.sampled_from(
            [
                None,
                processors.TemplateProcessing(
                    single="<s> $A </s>",
                    pair="<s> $A </s> $B:1 </s>:1",
                    special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
                ),
                processors.TemplateProcessing(
                    single="[CLS] $0 [SEP] [SEP]",
                    pair="$A $B",
                    special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
                ),
                processors.BertProcessing(("[SEP]", ids["[SEP]"]), ("[CLS]", ids["[CLS]"])),
                processors.RobertaProcessing(
                    ("</s>", ids["</s>"]),
                    ("<s>", ids["<s>"]),
                    trim_offsets=draw(st.booleans()),
                    add_prefix_space=draw(st.booleans()),
                ),
                processors.ByteLevel(trim_offsets=draw(st.booleans())),
                processors.Sequence(
                    [
                        processors.ByteLevel(trim_offsets=False),
                        processors.TemplateProcessing(
                            single="<s> $A",
                            pair="<s> $A <s> $B",
                            special_tokens=[("<s>", ids["<s>"])],
                        ),
                    ]
                ),
            ]
        )
    )
    if post is not None:
        tok.post_processor = post
    decoder_choices: list[Any] = [
        None,
        decoders.ByteLevel(),
        decoders.Metaspace(prepend_scheme=draw(st.sampled_from(["first", "always", "never"]))),
        decoders.WordPiece(prefix="##", cleanup=draw(st.booleans())),
        decoders.BPEDecoder(suffix="</w>"),
        decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        ),
        decoders.CTC(),
    ]
    decoder = draw(st.sampled_from(decoder_choices))
    if decoder is not None:
        tok.decoder = decoder
    return Config(zoo.doc(tok))


# derandomize: the same examples in every run, so CI cannot fail on a draw no earlier run saw;
# exploring further is a matter of raising max_examples locally.
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tj=config_st(), texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_random_configuration(tj: dict[str, Any], texts: list[str]) -> None:
    """Any configuration HF loads, we load and encode/decode identically (or refuse it with a
    JSON path: not expected for these, all are HF's own serialization)."""
    hf = zoo.hf_tokenizer(tj)
    # HF keeps added tokens in a hash map: two whose match strings coincide (after normalization,
    # for normalized ones) are found in hash order, which differs from one process to the next.
    # There is no reference to compare with there.
    norm = hf.normalizer
    keys = [
        (
            a["normalized"],
            norm.normalize_str(a["content"]) if a["normalized"] and norm else a["content"],
        )
        for a in tj["added_tokens"]
    ]
    assume(len(set(keys)) == len(keys))
    added = [a["content"] for a in tj["added_tokens"]]
    texts = [*texts, " ".join(added) + " x", "".join(added), zoo.HARD_TEXTS[10], zoo.HARD_TEXTS[4]]
    with tempfile.TemporaryDirectory() as d:
        path = zoo.write(tj, Path(d) / "tokenizer.json")
        ours = Tokenizer.from_file(str(path))
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    check_template(ours, hf, tj)
    bad = zoo.mismatches(ours, hf, texts, limit=3)
    assert not bad, "\n".join(bad)


# Byte-level BPE configurations (the layouts our own engine takes, when it can): a normalizer
# from the NF forms or none, ByteLevel alone or after Splits, options and added tokens drawn.
SPLIT_PATTERNS = [zoo.GPT4_PATTERN, zoo.QWEN2_PATTERN, zoo.O200K_PATTERN, *zoo.DEEPSEEK_PATTERNS]


@functools.cache
def byte_level_base(ignore_merges: bool) -> str:
    tj = zoo.build("gpt2")
    tj["model"]["ignore_merges"] = ignore_merges
    return json.dumps(tj)


@st.composite
def byte_level_config_st(draw: st.DrawFn) -> Config:
    tj = json.loads(byte_level_base(draw(st.booleans())))
    tok = HFTokenizer.from_str(json.dumps(tj))
    norm = draw(st.sampled_from([None, None, "NFC", "NFC", "NFKC", "NFD", "NFKD"]))
    if norm is not None:
        tok.normalizer = getattr(normalizers, norm)()
    prefix = draw(st.booleans())
    layout = draw(st.sampled_from(["ByteLevel", "o200k", "splits"]))
    if layout == "ByteLevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=prefix, use_regex=True, trim_offsets=draw(st.booleans())
        )
    elif layout == "o200k":  # the o200k layout, as the zoo's
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(zoo.O200K_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=False),
            ]
        )
    else:
        splits = [
            pre_tokenizers.Split(Regex(p), behavior=draw(st.sampled_from(SPLIT_BEHAVIORS)))
            for p in draw(st.lists(st.sampled_from(SPLIT_PATTERNS), min_size=1, max_size=3))
        ]
        byte_level = pre_tokenizers.ByteLevel(
            add_prefix_space=prefix, use_regex=draw(st.booleans())
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level])
    added = draw(added_st())
    if draw(st.booleans()):  # plain added tokens (no stripping, not single-word) half the time
        added = [AddedToken(a.content, normalized=a.normalized, special=a.special) for a in added]
    tok.add_tokens(added)
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = draw(
        st.sampled_from(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single="<|endoftext|> $A", pair="$A $B", special_tokens=[("<|endoftext|>", eot)]
                ),
            ]
        )
    )
    return Config(zoo.doc(tok))


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(tj=byte_level_config_st(), texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_random_byte_level_configuration(tj: dict[str, Any], texts: list[str]) -> None:
    test_random_configuration.hypothesis.inner_test(tj, texts)  # type: ignore[attr-defined]
