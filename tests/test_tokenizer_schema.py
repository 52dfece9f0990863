"""Every component type and option of the HF `tokenizer.json` schema, exact or refused.

For each component type, the JSON `tokenizers` itself serializes (and variants of each option's
value) is put into a base file of the zoo (tests/tokenizer_zoo.py); `Tokenizer.from_file` must
either refuse it with a ValueError whose one-line message starts with the JSON path of the
component, or give HF's ids and decode on the hard texts. Then the explicit cases of issue 13:
what must be refused (dropout, unknown keys and types) and what must load (the layouts that
earlier loaders refused).
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tokenizer_zoo as zoo
from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

from dataprep import Tokenizer

# "model.dropout: ...", "pre_tokenizer.pretokenizers[1]: ...", "normalizer.normalizers[0].bogus: ..."
JSON_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*|\[\d+\])*: ")


def load_or_refusal(tj: dict[str, Any], path: Path) -> Tokenizer | str:
    """Ours on `tj` written at `path`, or the refusal message (checked for form)."""
    zoo.write(tj, path)
    try:
        return Tokenizer.from_file(str(path))
    except ValueError as e:
        msg = str(e)
        assert JSON_PATH.match(msg), f"refusal without a JSON path first: {msg!r}"
        assert "\n" not in msg, f"refusal on more than one line: {msg!r}"
        assert path.name in msg, f"refusal without the file name: {msg!r}"
        return msg


def assert_exact(ours: Tokenizer, tj: dict[str, Any], what: str) -> None:
    hf = zoo.hf_tokenizer(tj)
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True), what
    bad = zoo.mismatches(ours, hf, zoo.HARD_TEXTS)
    assert not bad, f"{what} ({ours.engine}):\n" + "\n".join(bad)


def assert_exact_or_refused(tj: dict[str, Any], path: Path, what: str) -> None:
    try:
        zoo.hf_tokenizer(tj)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # pyo3's PanicException is a BaseException
        # HF refuses it (or panics): so must we, with the path (no parity question then).
        got = load_or_refusal(tj, path)
        assert isinstance(got, str), f"{what}: HF refuses this file, we loaded it"
        return
    got = load_or_refusal(tj, path)
    if not isinstance(got, str):
        assert_exact(got, tj, what)


# ---- the walk: component JSON as HF writes it, each option's values ------------------------

SPLIT_BEHAVIORS = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]
CHARSMAP = zoo.precompiled_charsmap(zoo.CHARSMAP)

NORMALIZERS: dict[str, Any] = {
    "NFC": normalizers.NFC(),
    "NFD": normalizers.NFD(),
    "NFKC": normalizers.NFKC(),
    "NFKD": normalizers.NFKD(),
    "Lowercase": normalizers.Lowercase(),
    "StripAccents": normalizers.StripAccents(),
    "Nmt": normalizers.Nmt(),
    "ByteLevel": normalizers.ByteLevel(),
    "Prepend(▁)": normalizers.Prepend("▁"),
    "Prepend(empty)": normalizers.Prepend(""),
    "Replace(str)": normalizers.Replace(" ", "▁"),
    "Replace(str,multichar)": normalizers.Replace("is", "IS"),
    "Replace(str,delete)": normalizers.Replace("e", ""),
    "Replace(regex)": normalizers.Replace(Regex(r"\s+"), " "),
    "Replace(regex,digits)": normalizers.Replace(Regex(r"\p{N}"), "0"),
    "Precompiled": normalizers.Precompiled(CHARSMAP),
    "Sequence(NFD,StripAccents,Lowercase)": normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    ),
    "Sequence(empty)": normalizers.Sequence([]),
    "Sequence(nested)": normalizers.Sequence(
        [normalizers.Sequence([normalizers.NFKC()]), normalizers.Strip()]
    ),
    **{
        f"Strip(left={left},right={right})": normalizers.Strip(left=left, right=right)
        for left, right in itertools.product([False, True], repeat=2)
    },
    **{
        f"BertNormalizer(clean={c},chinese={h},accents={a},lower={lo})": normalizers.BertNormalizer(
            clean_text=c, handle_chinese_chars=h, strip_accents=a, lowercase=lo
        )
        for c, h, a, lo in itertools.product(
            [False, True], [False, True], [None, False, True], [False, True]
        )
    },
}

# FixedLength is in tokenizers >= 0.21 (the test extra allows 0.20).
FIXED_LENGTH = getattr(pre_tokenizers, "FixedLength", None)
PRE_TOKENIZERS: dict[str, Any] = {
    **({"FixedLength(3)": FIXED_LENGTH(length=3)} if FIXED_LENGTH is not None else {}),
    **{
        f"ByteLevel(prefix={p},trim={t},regex={r})": pre_tokenizers.ByteLevel(
            add_prefix_space=p, trim_offsets=t, use_regex=r
        )
        for p, t, r in itertools.product([False, True], repeat=3)
    },
    **{
        f"Split({kind},{b},invert={inv})": pre_tokenizers.Split(
            Regex(r"\s+|\p{N}{1,2}") if kind == "regex" else " ", behavior=b, invert=inv
        )
        for kind in ("string", "regex")
        for b in SPLIT_BEHAVIORS
        for inv in (False, True)
    },
    **{f"Punctuation({b})": pre_tokenizers.Punctuation(behavior=b) for b in SPLIT_BEHAVIORS},
    **{
        f"Metaspace({r},{s},split={sp})": pre_tokenizers.Metaspace(
            replacement=r, prepend_scheme=s, split=sp
        )
        for r in ("▁", "_")
        for s in ("first", "always", "never")
        for sp in (False, True)
    },
    "Whitespace": pre_tokenizers.Whitespace(),
    "WhitespaceSplit": pre_tokenizers.WhitespaceSplit(),
    "BertPreTokenizer": pre_tokenizers.BertPreTokenizer(),
    "Digits(individual)": pre_tokenizers.Digits(individual_digits=True),
    "Digits(grouped)": pre_tokenizers.Digits(individual_digits=False),
    "UnicodeScripts": pre_tokenizers.UnicodeScripts(),
    "CharDelimiterSplit(-)": pre_tokenizers.CharDelimiterSplit("-"),
    "CharDelimiterSplit(space)": pre_tokenizers.CharDelimiterSplit(" "),
    "Sequence(WhitespaceSplit,Digits)": pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits()]
    ),
    "Sequence(empty)": pre_tokenizers.Sequence([]),
}


def template_processing(
    single: str, pair: str, names: list[str]
) -> Callable[[dict[str, Any]], Any]:
    return lambda tj: zoo.template(single, pair, tj, names)


def ids_of(tj: dict[str, Any], *names: str) -> list[tuple[str, int]]:
    return [(n, zoo.token_id(tj, n)) for n in names]


# Post-processors need the ids of their tokens in the base: built from the base (BERT's vocab).
POST_PROCESSORS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "Template([CLS] $A [SEP])": template_processing(
        "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1", ["[CLS]", "[SEP]"]
    ),
    "Template($A [SEP] [SEP])": template_processing("$A [SEP] [SEP]", "$A $B", ["[SEP]"]),
    "Template($0 only)": template_processing("$0", "$A $B:1", []),
    "Template(type ids)": template_processing(
        "[CLS]:1 $A:2 [SEP]:3", "[CLS] $A [SEP] $B:1 [SEP]:1", ["[CLS]", "[SEP]"]
    ),
    **{
        f"Roberta(trim={t},prefix={p})": (
            lambda tj, t=t, p=p: processors.RobertaProcessing(
                *ids_of(tj, "[SEP]", "[CLS]"), trim_offsets=t, add_prefix_space=p
            )
        )
        for t, p in itertools.product([False, True], repeat=2)
    },
    "BertProcessing": lambda tj: processors.BertProcessing(*ids_of(tj, "[SEP]", "[CLS]")),
    **{
        f"ByteLevel(prefix={p},trim={t},regex={r})": (
            lambda tj, p=p, t=t, r=r: processors.ByteLevel(
                add_prefix_space=p, trim_offsets=t, use_regex=r
            )
        )
        for p, t, r in itertools.product([False, True], repeat=3)
    },
    "Sequence(ByteLevel,Template)": lambda tj: processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            zoo.template("[CLS] $A", "[CLS] $A [CLS] $B", tj, ["[CLS]"]),
        ]
    ),
    "Sequence(empty)": lambda tj: processors.Sequence([]),
}

DECODERS: dict[str, Any] = {
    "ByteLevel": decoders.ByteLevel(),
    "WordPiece(##,cleanup)": decoders.WordPiece(prefix="##", cleanup=True),
    "WordPiece(##,no cleanup)": decoders.WordPiece(prefix="##", cleanup=False),
    "WordPiece(@@)": decoders.WordPiece(prefix="@@", cleanup=True),
    "BPEDecoder(</w>)": decoders.BPEDecoder(suffix="</w>"),
    "BPEDecoder(e)": decoders.BPEDecoder(suffix="e"),
    "ByteFallback": decoders.ByteFallback(),
    "Fuse": decoders.Fuse(),
    "Strip( ,1,0)": decoders.Strip(" ", 1, 0),
    "Strip(e,2,3)": decoders.Strip("e", 2, 3),
    "Replace(str)": decoders.Replace("▁", " "),
    "Replace(regex)": decoders.Replace(Regex(r"\s+"), "_"),
    "CTC(cleanup)": decoders.CTC(pad_token="<pad>", word_delimiter_token="|", cleanup=True),
    "CTC(no cleanup)": decoders.CTC(pad_token="[PAD]", word_delimiter_token="▁", cleanup=False),
    **{
        f"Metaspace({r},{s},split={sp})": decoders.Metaspace(
            replacement=r, prepend_scheme=s, split=sp
        )
        for r in ("▁", "_")
        for s in ("first", "always", "never")
        for sp in (False, True)
    },
    "Sequence(llama2)": decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    ),
    "Sequence(empty)": decoders.Sequence([]),
}


def model_variants() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    """(base, label, edit of base's model) for each model option's values."""

    def setter(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(tj: dict[str, Any]) -> None:
            tj["model"][key] = value

        return edit

    def dropper(*keys: str) -> Callable[[dict[str, Any]], None]:
        def edit(tj: dict[str, Any]) -> None:
            for k in keys:
                tj["model"].pop(k, None)

        return edit

    def string_merges(tj: dict[str, Any]) -> None:
        tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]

    out: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = []
    for base in ("gpt2", "mistral", "bpe_suffix", "bpe_continuing_prefix"):
        out += [
            (base, "dropout=null", setter("dropout", None)),
            (base, "dropout=0.0", setter("dropout", 0.0)),
            (base, "unk_token=null", setter("unk_token", None)),
            (base, "unk_token=<|endoftext|>", setter("unk_token", "<|endoftext|>")),
            (base, "unk_token=<unk>", setter("unk_token", "<unk>")),
            (base, "continuing_subword_prefix=null", setter("continuing_subword_prefix", None)),
            (base, "continuing_subword_prefix=''", setter("continuing_subword_prefix", "")),
            (base, "end_of_word_suffix=null", setter("end_of_word_suffix", None)),
            (base, "end_of_word_suffix=''", setter("end_of_word_suffix", "")),
            (base, "fuse_unk=true", setter("fuse_unk", True)),
            (base, "fuse_unk=false", setter("fuse_unk", False)),
            (base, "byte_fallback=true", setter("byte_fallback", True)),
            (base, "byte_fallback=false", setter("byte_fallback", False)),
            (base, "ignore_merges=true", setter("ignore_merges", True)),
            (base, "ignore_merges=false", setter("ignore_merges", False)),
            (base, "merges as 'a b' strings", string_merges),
            (base, "no optional keys", dropper("dropout", "unk_token", "continuing_subword_prefix",
                                                "end_of_word_suffix", "fuse_unk", "byte_fallback",
                                                "ignore_merges")),
        ]  # fmt: skip

    # Vocabulary and merges as HF reads them (or refuses them: then so must we, with a path).
    def merge_with_unknown_part(tj: dict[str, Any]) -> None:
        tj["model"]["merges"].append(["zzq", "qqz"])

    def merge_with_unknown_result(tj: dict[str, Any]) -> None:
        a, b = "q", "Ġ"
        assert a + b not in tj["model"]["vocab"]
        tj["model"]["merges"].append([a, b])

    def duplicate_merge(tj: dict[str, Any]) -> None:
        tj["model"]["merges"].append(tj["model"]["merges"][0])

    def duplicate_id(tj: dict[str, Any]) -> None:
        tj["model"]["vocab"]["zzzz"] = 5

    def no_merges(tj: dict[str, Any]) -> None:
        tj["model"]["merges"] = []

    def empty_model(tj: dict[str, Any]) -> None:
        tj["model"]["merges"] = []
        tj["model"]["vocab"] = {}

    out += [
        ("gpt2", "merge of a token not in the vocab", merge_with_unknown_part),
        ("gpt2", "merge whose result is not in the vocab", merge_with_unknown_result),
        ("gpt2", "a merge given twice", duplicate_merge),
        ("gpt2", "two tokens with one id", duplicate_id),
        ("gpt2", "unk_token not in the vocab", setter("unk_token", "<nope>")),
        ("gpt2", "no merges", no_merges),
        ("gpt2", "empty vocab and merges", empty_model),
    ]
    # A prefix or suffix only on the vocabularies trained with it: on others HF's BPE builder
    # panics (slicing "##" off a one-character merge part) or aborts the process outright.
    out += [
        (
            "bpe_continuing_prefix",
            "continuing_subword_prefix=##",
            setter("continuing_subword_prefix", "##"),
        ),
        ("bpe_suffix", "end_of_word_suffix=</w>", setter("end_of_word_suffix", "</w>")),
    ]
    for base in ("bert", "wordpiece_added_flags"):
        out += [
            (base, "unk_token=[MASK]", setter("unk_token", "[MASK]")),
            (base, "continuing_subword_prefix=@@", setter("continuing_subword_prefix", "@@")),
            (base, "continuing_subword_prefix=''", setter("continuing_subword_prefix", "")),
            (base, "max_input_chars_per_word=3", setter("max_input_chars_per_word", 3)),
            (base, "max_input_chars_per_word=1000", setter("max_input_chars_per_word", 1000)),
        ]
    for base in ("t5", "xlmr"):
        out += [
            (base, "unk_id=null", setter("unk_id", None)),
            (base, "unk_id=0", setter("unk_id", 0)),
            (base, "byte_fallback=true", setter("byte_fallback", True)),
            (base, "byte_fallback=false", setter("byte_fallback", False)),
            (base, "no byte_fallback key", dropper("byte_fallback")),
        ]
    return out


def word_level(tj: dict[str, Any]) -> None:
    """BERT's vocabulary as a WordLevel model (whole words only, [UNK] for the rest)."""
    tj["model"] = {"type": "WordLevel", "vocab": tj["model"]["vocab"], "unk_token": "[UNK]"}


FLAG_KEYS = ["single_word", "lstrip", "rstrip", "normalized", "special"]


def add_tokens(tj: dict[str, Any], contents: list[str], flags: dict[str, bool]) -> None:
    """Appends added tokens: at the id the model's vocabulary has for the content, else after
    the last id."""
    vocab = tj["model"]["vocab"]
    ids = dict(vocab) if isinstance(vocab, dict) else {p: i for i, (p, _) in enumerate(vocab)}
    top = max([*ids.values(), *(a["id"] for a in tj["added_tokens"])])
    for content in contents:
        if content in ids:
            i = ids[content]
        else:
            top += 1
            i = top
        tj["added_tokens"].append({"id": i, "content": content, **flags})


def added_token_variants() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    out: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = []
    for flags in itertools.product([False, True], repeat=5):
        single_word, lstrip, rstrip, normalized, special = flags

        def edit(tj: dict[str, Any], flags: tuple[bool, ...] = flags) -> None:
            # A content already in the model's vocabulary keeps that id (as files have it; a
            # different id is its own case: test_added_token_id_differs_from_vocab).
            add_tokens(tj, ["<X>", "ab", "é"], dict(zip(FLAG_KEYS, flags, strict=True)))

        label = f"sw={single_word},l={lstrip},r={rstrip},norm={normalized},special={special}"
        out += [(base, label, edit) for base in ("gpt2", "bert")]
    return out


def top_level_variants() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    out: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = []
    for strategy, direction, stride in itertools.product(
        ["LongestFirst", "OnlyFirst", "OnlySecond"], ["Right", "Left"], [0, 2]
    ):
        trunc = {"direction": direction, "max_length": 5, "strategy": strategy, "stride": stride}
        out.append(("gpt2", f"truncation {trunc}", lambda tj, t=trunc: tj.update(truncation=t)))
    for strategy, direction, multiple in itertools.product(
        ["BatchLongest", {"Fixed": 20}], ["Right", "Left"], [None, 8]
    ):
        pad = {
            "strategy": strategy,
            "direction": direction,
            "pad_to_multiple_of": multiple,
            "pad_id": 0,
            "pad_type_id": 0,
            "pad_token": "[PAD]",
        }
        out.append(("bert", f"padding {pad}", lambda tj, p=pad: tj.update(padding=p)))
    out.append(("gpt2", "no version key", lambda tj: tj.pop("version")))
    out.append(("bert", "WordLevel model", word_level))
    return out


def malformed_variants() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    """Values of the wrong type or out of their set, and what HF infers (a model without its
    "type"): HF refuses most of these, and then so must we, with the JSON path."""

    def put(*path: Any, value: Any = None, drop: bool = False) -> Callable[[dict[str, Any]], None]:
        def edit(tj: dict[str, Any]) -> None:
            node = tj
            for key in path[:-1]:
                node = node[key]
            if drop:
                del node[path[-1]]
            else:
                node[path[-1]] = value

        return edit

    def split(pattern: Any, behavior: str = "Isolated") -> dict[str, Any]:
        return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": False}

    metaspace = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "sometimes",
        "split": True,
    }
    return [
        ("bert", "max_input_chars_per_word as a string", put("model", "max_input_chars_per_word", value="x")),
        ("gpt2", "dropout as a string", put("model", "dropout", value="abc")),
        ("gpt2", "added token id as a string", put("added_tokens", 0, "id", value="0")),
        ("gpt2", "added token without content", put("added_tokens", 0, "content", drop=True)),
        ("gpt2", "model without type", put("model", "type", drop=True)),
        ("gpt2", "Split with an invalid regex", put("pre_tokenizer", value=split({"Regex": "("}))),
        ("gpt2", "Split with an unknown behavior", put("pre_tokenizer", value=split({"Regex": "a"}, "Sideways"))),
        ("gpt2", "Replace with an unknown pattern kind", put("normalizer", value={"type": "Replace", "pattern": {"Bogus": "x"}, "content": "y"})),
        ("gpt2", "Sequence without its list", put("pre_tokenizer", value={"type": "Sequence"})),
        ("gpt2", "Metaspace with an unknown prepend_scheme", put("pre_tokenizer", value=metaspace)),
        ("gpt2", "version 2.0", put("version", value="2.0")),
        ("gpt2", "truncation with a string max_length", put("truncation", value={"max_length": "x"})),
    ]  # fmt: skip


def component_cases() -> list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    """(case id, base layout, function base tj -> variant tj) over the whole schema."""
    cases: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]]] = []

    def put(key: str, component: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda tj: zoo.with_component(tj, key, component)

    def put_built(
        key: str, make: Callable[[dict[str, Any]], Any]
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda tj: zoo.with_component(tj, key, make(tj))

    def edited(
        edit: Callable[[dict[str, Any]], None],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def run(tj: dict[str, Any]) -> dict[str, Any]:
            edit(tj)
            return tj

        return run

    for label, n in NORMALIZERS.items():
        for base in ("gpt2", "bert", "t5"):
            cases.append((f"normalizer {label} on {base}", base, put("normalizer", n)))
    for label, p in PRE_TOKENIZERS.items():
        for base in ("gpt2", "bert", "mistral"):
            cases.append((f"pre_tokenizer {label} on {base}", base, put("pre_tokenizer", p)))
        if not label.startswith("ByteLevel"):
            seq = pre_tokenizers.Sequence(
                [p, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
            )
            cases.append(
                (
                    f"pre_tokenizer Sequence({label},ByteLevel) on gpt2",
                    "gpt2",
                    put("pre_tokenizer", seq),
                )
            )
    for label, make in POST_PROCESSORS.items():
        cases.append((f"post_processor {label} on bert", "bert", put_built("post_processor", make)))
    for label, d in DECODERS.items():
        for base in ("gpt2", "bert", "mistral", "t5"):
            cases.append((f"decoder {label} on {base}", base, put("decoder", d)))
    for base, label, edit in model_variants():
        cases.append((f"model {label} on {base}", base, edited(edit)))
    for base, label, edit in added_token_variants():
        cases.append((f"added_tokens {label} on {base}", base, edited(edit)))
    for base, label, edit in malformed_variants():
        cases.append((f"malformed: {label} on {base}", base, edited(edit)))
    for base, label, edit in top_level_variants():
        cases.append((f"{label} on {base}", base, edited(edit)))
    return cases


CASES = component_cases()


@pytest.mark.parametrize(("case", "base", "make"), CASES, ids=[c[0] for c in CASES])
def test_schema_exact_or_refused(
    tmp_path: Path, case: str, base: str, make: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    tj = make(zoo.build(base))
    assert_exact_or_refused(tj, tmp_path / "tokenizer.json", case)


# ---- must refuse ---------------------------------------------------------------------------


def refusal(tj: dict[str, Any], tmp_path: Path) -> str:
    got = load_or_refusal(tj, tmp_path / "tokenizer.json")
    assert isinstance(got, str), "loaded a file that must be refused"
    return got


@pytest.mark.parametrize("dropout", [0.1, 0.5, 1.0])
def test_refuses_dropout(tmp_path: Path, dropout: float) -> None:
    """Dropout makes ids random: no file with it gives reproducible ids."""
    for base in ("gpt2", "mistral"):
        tj = zoo.build(base)
        tj["model"]["dropout"] = dropout
        assert refusal(tj, tmp_path).startswith("model.dropout: ")


def test_refuses_unknown_top_level_key(tmp_path: Path) -> None:
    tj = zoo.build("gpt2")
    tj["chat_template"] = "{{ messages }}"
    assert refusal(tj, tmp_path).startswith("chat_template")


def test_refuses_unknown_type_inside_sequence(tmp_path: Path) -> None:
    tj = zoo.build("llama3")
    tj["pre_tokenizer"]["pretokenizers"][1] = {"type": "Foo"}
    msg = refusal(tj, tmp_path)
    assert msg.startswith("pre_tokenizer.pretokenizers[1]: "), msg
    assert "Foo" in msg


@pytest.mark.parametrize(
    ("key", "component", "path"),
    [
        ("normalizer", {"type": "NFKC", "bogus": True}, "normalizer.bogus: "),
        (
            "normalizer",
            {"type": "Sequence", "normalizers": [{"type": "NFC", "bogus": 1}]},
            "normalizer.normalizers[0].bogus: ",
        ),
        (
            "normalizer",
            {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase", "x": 0}]},
            "normalizer.normalizers[1].x: ",
        ),
        ("normalizer", {"type": "Unheard"}, "normalizer: "),
        ("pre_tokenizer", {"type": "Whitespace", "bogus": 1}, "pre_tokenizer.bogus: "),
        (
            "decoder",
            {
                "type": "ByteLevel",
                "add_prefix_space": True,
                "trim_offsets": True,
                "use_regex": True,
                "bogus": 1,
            },
            "decoder.bogus: ",
        ),
        ("decoder", {"type": "Unheard"}, "decoder: "),
        ("post_processor", {"type": "Unheard"}, "post_processor: "),
    ],
)
def test_refuses_unknown_key_or_type(tmp_path: Path, key: str, component: Any, path: str) -> None:
    tj = zoo.build("gpt2")
    tj[key] = component
    msg = refusal(tj, tmp_path)
    assert msg.startswith(path), msg


def test_refuses_unknown_key_in_model_and_added_token(tmp_path: Path) -> None:
    tj = zoo.build("gpt2")
    tj["model"]["bogus"] = 1
    assert refusal(tj, tmp_path).startswith("model.bogus: ")
    tj = zoo.build("gpt2")
    tj["added_tokens"][0]["bogus"] = 1
    assert refusal(tj, tmp_path).startswith("added_tokens[0].bogus: ")


def test_refuses_unknown_model_type(tmp_path: Path) -> None:
    tj = zoo.build("gpt2")
    tj["model"]["type"] = "Foo"
    assert refusal(tj, tmp_path).startswith("model")


# ---- must load (and be exact) --------------------------------------------------------------


def must_load(tj: dict[str, Any], tmp_path: Path, what: str) -> Tokenizer:
    got = load_or_refusal(tj, tmp_path / "tokenizer.json")
    assert not isinstance(got, str), f"{what}: refused: {got}"
    assert_exact(got, tj, what)
    return got


@pytest.mark.parametrize("name", ["roberta", "gpt2"])
def test_loads_empty_subword_prefix(tmp_path: Path, name: str) -> None:
    """RoBERTa/GPT-2 files as `transformers` saves them: `"continuing_subword_prefix": ""`."""
    tj = zoo.build(name)
    tj["model"]["continuing_subword_prefix"] = ""
    tj["model"]["end_of_word_suffix"] = ""
    must_load(tj, tmp_path, name)


def test_loads_byte_vocab_without_invalid_utf8_bytes(tmp_path: Path) -> None:
    tj = zoo.build("gpt2_no_invalid_utf8_bytes")
    assert not {zoo.byte_char(b) for b in zoo.NEVER_IN_UTF8} & set(tj["model"]["vocab"])
    must_load(tj, tmp_path, "no 0xC0 0xC1 0xF5-0xFF")


def test_loads_byte_vocab_without_control_bytes(tmp_path: Path) -> None:
    tj = zoo.build("gpt2_no_control_bytes")
    ours = must_load(tj, tmp_path, "no control bytes")
    hf = zoo.hf_tokenizer(tj)
    text = "tab\there, bell\x07, escape\x1b[1m, nul\x00!"
    assert ours.encode(text) == zoo.hf_encode(hf, text, False, False)


def test_loads_tokens_outside_byte_alphabet(tmp_path: Path) -> None:
    """Tokens that no byte sequence maps to stay at their ids (decode as HF does)."""
    tj = zoo.build("gpt2_foreign_tokens")
    ours = must_load(tj, tmp_path, "foreign tokens")
    hf = zoo.hf_tokenizer(tj)
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    for token in zoo.FOREIGN_TOKENS:
        i = tj["model"]["vocab"][token]
        assert ours.decode([i]) == zoo.hf_decode(hf, [i], False), token
        assert ours.decode([5, i, 7]) == zoo.hf_decode(hf, [5, i, 7], False), token


def test_loads_ignore_merges_unreachable_words(tmp_path: Path) -> None:
    tj = zoo.build("gpt2_ignore_merges")
    ours = must_load(tj, tmp_path, "ignore_merges")
    hf = zoo.hf_tokenizer(tj)
    for text in (" unreachable parity 1234 한국", "x unreachable"):
        want = zoo.hf_encode(hf, text, False, False)
        assert ours.encode(text) == want
    assert tj["model"]["vocab"]["Ġunreachable"] in ours.encode(" unreachable")


def test_loads_older_files(tmp_path: Path) -> None:
    """Files written by older `tokenizers`: merges as "a b" strings, no byte_fallback,
    ignore_merges or fuse_unk keys, no version."""
    tj = zoo.build("gpt2")
    tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
    for key in ("byte_fallback", "ignore_merges", "fuse_unk"):
        del tj["model"][key]
    del tj["version"]
    must_load(tj, tmp_path, "older gpt2")


def test_added_token_id_differs_from_vocab(tmp_path: Path) -> None:
    """An added token whose content the model's vocabulary has at another id: HF encodes it
    with the vocabulary's id (and the file's id decodes to ""). Exact or refused."""
    for base, content in (("gpt2", "ab"), ("gpt2", "é"), ("bert", "the")):
        tj = zoo.build(base)
        assert content in tj["model"]["vocab"]
        top = max(tj["model"]["vocab"].values())
        flags = dict.fromkeys(FLAG_KEYS, False)
        tj["added_tokens"].append({"id": top + 1, "content": content, **flags})
        assert_exact_or_refused(tj, tmp_path / "tokenizer.json", f"{content!r} on {base}")


def test_loads_dropout_null(tmp_path: Path) -> None:
    tj = zoo.build("gpt2")
    tj["model"]["dropout"] = None
    must_load(tj, tmp_path, "dropout null")


# What tiktoken's own loader accepts (tiktoken/load.py `load_tiktoken_bpe`: `splitlines()`,
# empty lines skipped, each other line `token, rank = line.split()`).
TIKTOKEN_ENDINGS = {
    "trailing newline": lambda body: body + "\n",
    "no trailing newline": lambda body: body,
    "trailing blank lines": lambda body: body + "\n\n\n",
    "CRLF lines": lambda body: body.replace("\n", "\r\n") + "\r\n",
    "trailing spaces and tab separators": lambda body: body.replace(" ", "\t") + "  \n",
    "blank line inside": lambda body: body.replace("\n", "\n\n", 1) + "\n",
}


@pytest.mark.parametrize("ending", list(TIKTOKEN_ENDINGS))
def test_loads_tiktoken_file_as_tiktoken_does(tmp_path: Path, ending: str) -> None:
    from tiktoken import Encoding
    from tiktoken.load import load_tiktoken_bpe

    ranks = zoo.tiktoken_ranks(zoo.build("gpt2"))
    plain = zoo.write_tiktoken(ranks, tmp_path / "plain.tiktoken").read_text()
    path = tmp_path / "vocab.tiktoken"
    path.write_bytes(TIKTOKEN_ENDINGS[ending](plain.rstrip("\n")).encode())
    assert load_tiktoken_bpe(str(path)) == ranks  # tiktoken accepts it
    ours = Tokenizer.from_file(str(path), pattern="gpt2")
    enc = Encoding("t", pat_str=zoo.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    for text in zoo.HARD_TEXTS:
        assert ours.encode(text) == enc.encode_ordinary(text), text


def test_charsmap_builder_is_read_by_hf() -> None:
    """The Precompiled charsmap of the zoo is read by HF as meant (else the Precompiled cases
    would compare nothing)."""
    n = normalizers.Precompiled(CHARSMAP)
    assert n.normalize_str("ﬁ① Ａ\u3000x\u200by e\u0301") == "fi1 A xy é"
    tj = zoo.with_component(zoo.build("gpt2"), "normalizer", n)
    assert base64.b64decode(tj["normalizer"]["precompiled_charsmap"]) == CHARSMAP
