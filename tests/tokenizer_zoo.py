"""Tokenizers in the layouts real models ship, trained small with HF `tokenizers` (no network).

Each builder returns the `tokenizer.json` document (a dict) of one layout: the components and
options a model family's file has (GPT-2, RoBERTa, Llama-3, Qwen2, o200k, DeepSeek, BERT, T5,
XLM-R, Llama-2/Mistral, GPT-NeoX, ...), with a vocabulary of a few hundred ids trained on the
bundled demo corpus plus a generated mixed-script text. The parity tests load each one with
`dataprep.Tokenizer.from_file` and with `tokenizers.Tokenizer` and compare ids and decode.

NOTE: the T5/XLM-R layouts' `Precompiled` normalizer carries a small charsmap built here
(`precompiled_charsmap`: a handful of NFKC-like rewrites in SentencePiece's double-array trie),
not the ~240 KB nmt_nfkc one of the real files: `sentencepiece`, which writes those, is not
among the test dependencies, and shipping one would test the same code paths.
"""

from __future__ import annotations

import base64
import copy
import functools
import gzip
import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

DEMO = Path(__file__).parent / "data" / "demo"

# GPT-2's pattern as tiktoken writes it (tiktoken_ext/openai_public.py r50k_pat_str).
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
# cl100k_base's pattern as tiktoken writes it (tiktoken_ext/openai_public.py).
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# The split patterns of the model families (copied from their tokenizer.json files).
GPT4_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
O200K_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
# DeepSeek-V3's pre_tokenizer: three Splits in a Sequence, then ByteLevel without its regex.
DEEPSEEK_PATTERNS = [
    r"\p{N}{1,3}",
    r"[一-龥\u3040-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
]

# Text in the scripts the parity texts use, so that the vocabularies have merges in each.
EXTRA_TEXT = [
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。汉字的历史很长。",
    "東京は日本の首都です。ひらがなとカタカナと漢字を使います。",
    "القاهرة هي عاصمة مصر وأكبر مدنها. اللغة العربية تكتب من اليمين إلى اليسار.",
    "भारत एक विशाल देश है। हिन्दी देवनागरी लिपि में लिखी जाती है।",
    "Ελληνικά: η Αθήνα είναι η πρωτεύουσα. Русский: Москва — столица России.",
    "Numbers 1234567890 and 3.14159, 2,718 and 1e-10; dates 2024-01-31, 12:30:45.",
    "Code: def f(x):\n    return x ** 2  # square\n\tif (a && b) { c++; }\r\n",
    "Emoji 👋🏽 👨‍👩‍👧‍👦 🇰🇷 ❤️ and café naïve résumé Ångström ﬁnal ① ＡＢＣ",
]


@functools.cache
def corpus() -> tuple[str, ...]:
    """Lines of the demo corpus (English ~80 KB, Korean ~40 KB) and the mixed-script lines."""
    lines: list[str] = []
    for name, budget in (("enwiki_00.gz", 80_000), ("kowiki_00.gz", 40_000)):
        text = gzip.decompress((DEMO / name).read_bytes()).decode("utf-8")
        text = re.sub(r"</?doc[^>]*>", "", text)
        used = 0
        for line in text.splitlines():
            if line.strip() and used < budget:
                lines.append(line)
                used += len(line)
    return tuple(lines + EXTRA_TEXT * 20)


def small_corpus() -> list[str]:
    """Every 8th line of `corpus()`: for the property tests that train a tokenizer per example."""
    return list(corpus()[::8]) + EXTRA_TEXT


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """A SentencePiece `precompiled_charsmap` rewriting each key of `mapping` (UTF-8 bytes) to
    its value: [u32 trie size][darts-clone double array of u32 units][values, NUL-terminated].

    Units: bits 0-7 label, bit 8 has-leaf, bits 10-31 offset (XOR from the unit's position to
    its children's base); a node's value sits at its base (label 0) with bit 31 set.
    """
    normalized = bytearray()
    trie: dict[Any, Any] = {}
    for key, value in mapping.items():
        node = trie
        for b in key.encode():
            node = node.setdefault(b, {})
        node[None] = len(normalized)
        normalized += value.encode() + b"\0"
    used = {0}

    def place(node: dict[Any, Any]) -> int:
        """The first base whose slots (base ^ label, and base itself for a value) are free."""
        base = 1
        while True:
            slots = [base ^ c for c in node if c is not None] + ([base] if None in node else [])
            if base not in used and not used.intersection(slots):
                used.update(slots, [base])
                return base
            base += 1

    root = place(trie)
    units = {0: root << 10}
    stack = [(trie, root)]
    while stack:
        node, base = stack.pop()
        if None in node:
            units[base] = (1 << 31) | node[None]
        for c, child in node.items():
            if c is not None:
                child_base = place(child)
                units[base ^ c] = ((base ^ c ^ child_base) << 10) | ((None in child) << 8) | c
                stack.append((child, child_base))
    # Every base ^ byte a lookup can reach must be inside the array.
    size = (max(*units, *(used or {0})) | 0xFF) + 1
    blob = b"".join(struct.pack("<I", units.get(i, 0)) for i in range(size))
    return struct.pack("<I", len(blob)) + blob + bytes(normalized)


# NFKC-like rewrites in the spirit of nmt_nfkc: compatibility forms, spaces, a deletion, and
# multi-character keys (a grapheme rewritten as a whole).
CHARSMAP = {
    "ﬁ": "fi", "ﬂ": "fl", "①": "1", "②": "2", "Ａ": "A", "Ｂ": "B", "Ｃ": "C", "ｆ": "f",
    "\u3000": " ", "\u00a0": " ", "\u2003": " ", "\t": " ", "…": "...", "™": "TM",
    "\u200b": "", "\ufeff": "", "e\u0301": "é", "A\u030a": "Å", "ㄱ": "ᄀ", "½": "1⁄2",
}  # fmt: skip


def doc(tok: Tokenizer) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(tok.to_str())
    return out


def train(tok: Tokenizer, trainer: Any, texts: list[str] | None = None) -> dict[str, Any]:
    tok.train_from_iterator(list(corpus()) if texts is None else texts, trainer=trainer)
    return doc(tok)


def bpe_trainer(vocab_size: int, specials: list[str], byte_level: bool = True) -> Any:
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    return trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
        initial_alphabet=alphabet,
        show_progress=False,
    )


def template(single: str, pair: str, tj: dict[str, Any], names: list[str]) -> Any:
    """TemplateProcessing with the ids `names` have in `tj`'s vocabulary."""
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(n, token_id(tj, n)) for n in names]
    )


def token_id(tj: dict[str, Any], content: str) -> int:
    for a in tj["added_tokens"]:
        if a["content"] == content:
            return int(a["id"])
    vocab = tj["model"]["vocab"]
    if isinstance(vocab, dict):
        return int(vocab[content])
    return next(i for i, (piece, _) in enumerate(vocab) if piece == content)


def with_component(tj: dict[str, Any], key: str, component: Any) -> dict[str, Any]:
    """`tj` with `key` (normalizer, pre_tokenizer, post_processor, decoder) set to the JSON that
    `tokenizers` writes for `component`."""
    holder = Tokenizer(models.BPE())
    setattr(holder, key, component)
    tj = copy.deepcopy(tj)
    tj[key] = doc(holder)[key]
    return tj


def byte_level_parts(tok: Tokenizer, use_regex: bool = True, prefix: bool = False) -> None:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()


# ---- the layouts --------------------------------------------------------------------------


def gpt2() -> dict[str, Any]:
    tok = Tokenizer(models.BPE())
    byte_level_parts(tok)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return train(tok, bpe_trainer(1000, ["<|endoftext|>"]))


def roberta() -> dict[str, Any]:
    """As `transformers` saves RoBERTa: empty-string subword prefix and suffix, a `<mask>` that
    strips the space on its left, RobertaProcessing."""
    tok = Tokenizer(models.BPE())
    byte_level_parts(tok)
    tj = train(tok, bpe_trainer(1000, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tj["model"]["continuing_subword_prefix"] = ""
    tj["model"]["end_of_word_suffix"] = ""
    for a in tj["added_tokens"]:
        if a["content"] == "<mask>":
            a["lstrip"] = True
    tj = with_component(
        tj,
        "post_processor",
        processors.RobertaProcessing(
            ("</s>", token_id(tj, "</s>")),
            ("<s>", token_id(tj, "<s>")),
            trim_offsets=True,
            add_prefix_space=False,
        ),
    )
    return tj


def split_byte_level(patterns: list[str], normalizer: Any = None) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def llama3() -> dict[str, Any]:
    """Llama-3: the cl100k-like Split, ByteLevel without regex, ignore_merges, BOS template."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [
        f"<|reserved_special_token_{i}|>" for i in range(4)
    ]
    tok = split_byte_level([GPT4_PATTERN])
    tj = train(tok, bpe_trainer(1000, specials))
    tj["model"]["ignore_merges"] = True
    post = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            template(
                "<|begin_of_text|> $A",
                "<|begin_of_text|> $A <|begin_of_text|> $B:1",
                tj,
                ["<|begin_of_text|>"],
            ),
        ]
    )
    return with_component(tj, "post_processor", post)


def qwen2() -> dict[str, Any]:
    tok = split_byte_level([QWEN2_PATTERN], normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return train(tok, bpe_trainer(1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))


def o200k() -> dict[str, Any]:
    tok = split_byte_level([O200K_PATTERN])
    return train(tok, bpe_trainer(1000, ["<|endoftext|>", "<|endofprompt|>"]))


def deepseek() -> dict[str, Any]:
    bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    tok = split_byte_level(DEEPSEEK_PATTERNS)
    tj = train(tok, bpe_trainer(1000, [bos, eos]))
    return with_component(
        tj, "post_processor", template(f"{bos} $A", f"{bos} $A {bos} $B", tj, [bos])
    )


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bert_base(lowercase: bool = True) -> tuple[Tokenizer, dict[str, Any]]:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=900, special_tokens=BERT_SPECIALS, show_progress=False
    )
    return tok, train(tok, trainer)


def bert() -> dict[str, Any]:
    """bert-base-uncased: TemplateProcessing [CLS] $A [SEP] as `transformers` writes it."""
    _, tj = bert_base()
    post = template("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1", tj, ["[CLS]", "[SEP]"])
    return with_component(tj, "post_processor", post)


def bert_cased_processing() -> dict[str, Any]:
    """bert-base-cased as older files have it: BertProcessing, a `[MASK]` stripping both sides."""
    _, tj = bert_base(lowercase=False)
    for a in tj["added_tokens"]:
        if a["content"] == "[MASK]":
            a["lstrip"] = a["rstrip"] = True
    post = processors.BertProcessing(
        ("[SEP]", token_id(tj, "[SEP]")), ("[CLS]", token_id(tj, "[CLS]"))
    )
    return with_component(tj, "post_processor", post)


def unigram(
    specials: list[str], single: str, pair: str, names: list[str], nfkc: bool = False
) -> dict[str, Any]:
    tok = Tokenizer(models.Unigram())
    first = normalizers.NFKC() if nfkc else normalizers.Precompiled(precompiled_charsmap(CHARSMAP))
    tok.normalizer = normalizers.Sequence([first, normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=2000, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tj = train(tok, trainer)
    return with_component(tj, "post_processor", template(single, pair, tj, names))


def t5() -> dict[str, Any]:
    return unigram(["<pad>", "</s>", "<unk>"], "$A </s>", "$A </s> $B:1 </s>:1", ["</s>"])


def xlmr() -> dict[str, Any]:
    tj = unigram(
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        "<s> $A </s>",
        "<s> $A </s> </s> $B </s>",
        ["<s>", "</s>"],
    )
    for a in tj["added_tokens"]:
        if a["content"] == "<mask>":
            a["lstrip"] = True
    return tj


def unigram_nfkc() -> dict[str, Any]:
    """T5-like, NFKC where the real file has Precompiled (as files converted without one)."""
    return unigram(
        ["<pad>", "</s>", "<unk>"], "$A </s>", "$A </s> $B:1 </s>:1", ["</s>"], nfkc=True
    )


LLAMA2_SPECIALS = ["<unk>", "<s>", "</s>"]


def sentencepiece_bpe(scheme: str) -> dict[str, Any]:
    """Llama-2/Mistral: BPE over `▁`-words with byte fallback (`<0x00>`..`<0xFF>` at ids 3..258
    in the model's vocab, not added tokens), fuse_unk, `<unk>`, a BOS template."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme, split=False)
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tj = train(tok, bpe_trainer(2500, LLAMA2_SPECIALS + byte_tokens, byte_level=False))
    tj["added_tokens"] = [a for a in tj["added_tokens"] if a["content"] in LLAMA2_SPECIALS]
    tj = with_component(
        tj,
        "decoder",
        decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        ),
    )
    return with_component(tj, "post_processor", template("<s> $A", "<s> $A <s> $B:1", tj, ["<s>"]))


def llama2() -> dict[str, Any]:
    """Llama-2 as its legacy tokenizer.json has it: no pre-tokenizer, the `▁` put in by the
    normalizer (Prepend + Replace)."""
    tj = sentencepiece_bpe("first")
    tj["pre_tokenizer"] = None
    return with_component(
        tj,
        "normalizer",
        normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
    )


def mistral() -> dict[str, Any]:
    """Mistral/Llama-2 non-legacy: Metaspace prepend_scheme "first", split false."""
    return sentencepiece_bpe("first")


def sentencepiece_always() -> dict[str, Any]:
    return sentencepiece_bpe("always")


def gpt_neox() -> dict[str, Any]:
    """GPT-NeoX-20B: NFC, ByteLevel, and non-special added tokens for runs of spaces."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    byte_level_parts(tok)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tj = train(tok, bpe_trainer(1000, ["<|endoftext|>", "<|padding|>"]))
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in (24, 8, 4, 2)])
    tok.add_tokens([AddedToken("\t\t", normalized=False)])
    return doc(tok)


def added_flags() -> dict[str, Any]:
    """GPT-2 base with added tokens carrying every flag: special ones stripping left/right or
    matching single words only, non-special reserved markers (normalized or not)."""
    tok = Tokenizer.from_str(json.dumps(build("gpt2")))
    tok.normalizer = normalizers.Lowercase()
    tok.add_special_tokens(
        [
            AddedToken("<|user|>", lstrip=True, rstrip=True, special=True, normalized=False),
            AddedToken("<|bot|>", rstrip=True, special=True, normalized=False),
            AddedToken("[WORD]", single_word=True, special=True, normalized=False),
            AddedToken("<Norm>", normalized=True, special=True),
        ]
    )
    tok.add_tokens(
        [
            AddedToken("<reserved_0>", normalized=False),
            AddedToken("Reserved_1", normalized=True),
            AddedToken("ing me", single_word=True, normalized=False),
            AddedToken("\n\n", normalized=False),
        ]
    )
    return doc(tok)


def wordpiece_added_flags() -> dict[str, Any]:
    """BERT base with a special `[MASK]` lstrip, a single_word special, and a normalized
    non-special token that the lowercasing normalizer makes match upper-case text."""
    tok = Tokenizer.from_str(json.dumps(build("bert")))
    tok.add_special_tokens(
        [
            AddedToken("[ENT]", single_word=True, special=True),
            AddedToken("[E2]", rstrip=True, special=True),
        ]
    )
    tok.add_tokens([AddedToken("xyzzy", normalized=True), AddedToken("Plugh", normalized=False)])
    return doc(tok)


# ---- byte-level vocabulary variants (what real files have) --------------------------------

NEVER_IN_UTF8 = [0xC0, 0xC1, *range(0xF5, 0x100)]
CONTROL_BYTES = [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]


def byte_char(b: int) -> str:
    """The character byte-level BPE writes for byte `b` (GPT-2's bytes_to_unicode)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    if b in printable:
        return chr(b)
    return chr(256 + [x for x in range(256) if x not in printable].index(b))


def renumber(tj: dict[str, Any]) -> dict[str, Any]:
    """Contiguous ids in the old order, after tokens were removed (BPE vocab + added tokens)."""
    old = sorted({*tj["model"]["vocab"].values(), *(a["id"] for a in tj["added_tokens"])})
    new = {o: i for i, o in enumerate(old)}
    tj["model"]["vocab"] = {t: new[i] for t, i in tj["model"]["vocab"].items()}
    for a in tj["added_tokens"]:
        a["id"] = new[a["id"]]
    return tj


def without_bytes(tj: dict[str, Any], removed: list[int]) -> dict[str, Any]:
    """A byte-level BPE file whose vocabulary lacks the single-byte tokens of `removed` (and
    every merge or token containing them), ids made contiguous again."""
    tj = copy.deepcopy(tj)
    gone = {byte_char(b) for b in removed}
    tj["model"]["vocab"] = {t: i for t, i in tj["model"]["vocab"].items() if not (set(t) & gone)}
    tj["model"]["merges"] = [m for m in tj["model"]["merges"] if not (set("".join(m)) & gone)]
    return renumber(tj)


def gpt2_no_invalid_utf8_bytes() -> dict[str, Any]:
    return without_bytes(build("gpt2"), NEVER_IN_UTF8)


def gpt2_no_control_bytes() -> dict[str, Any]:
    return without_bytes(build("gpt2"), CONTROL_BYTES)


# Tokens real byte-level files carry outside the byte alphabet (never produced by the merges,
# but decodable and reachable as added tokens or by ignore_merges look-up).
# ("ж" is outside it; "é" is not: byte 0xE9 is written as itself.)
FOREIGN_TOKENS = ["hello world", "ж", "<|im_sep|>", "\u2581the", "\t"]


def gpt2_foreign_tokens() -> dict[str, Any]:
    """Tokens outside the byte alphabet appended to the vocabulary at fixed ids (after a gap)."""
    tj = build("gpt2")
    top = max(tj["model"]["vocab"].values())
    for k, t in enumerate(FOREIGN_TOKENS):
        assert t not in tj["model"]["vocab"]
        tj["model"]["vocab"][t] = top + 1 + k
    return tj


def gpt2_id_hole() -> dict[str, Any]:
    """A byte-level vocabulary with an id missing in the middle (a token no merge uses, removed
    with its merge): ids stay as they are, the last id is above the count of tokens."""
    tj = build("gpt2")
    vocab, merges = tj["model"]["vocab"], tj["model"]["merges"]
    used = {part for merge in merges for part in merge}
    token = min(
        (t for t, i in vocab.items() if i > 500 and len(t) > 1 and t not in used),
        key=vocab.__getitem__,
    )
    del vocab[token]
    tj["model"]["merges"] = [m for m in merges if "".join(m) != token]
    return tj


def gpt2_shuffled_ids() -> dict[str, Any]:
    """Ids of the merged tokens in no relation to the merges' order (files converted from other
    formats): the merges' order alone is the priority."""
    tj = build("gpt2")
    vocab = tj["model"]["vocab"]
    merged = sorted((t for t, i in vocab.items() if i > 256), key=vocab.__getitem__)
    ids = [vocab[t] for t in merged]
    for token, i in zip(merged, ids[::-1], strict=True):
        vocab[token] = i
    return tj


def gpt2_ignore_merges() -> dict[str, Any]:
    """ignore_merges with whole words in the vocabulary that no merge sequence reaches."""
    tj = build("gpt2")
    tj["model"]["ignore_merges"] = True
    top = max(tj["model"]["vocab"].values())
    for k, t in enumerate(["Ġunreachable", "Ġparity", "1234", "ĠíķľêµŃ"]):
        tj["model"]["vocab"].setdefault(t, top + 1 + k)
    return tj


def bpe_suffix() -> dict[str, Any]:
    """A BPE with continuing_subword_prefix "##" and end_of_word_suffix "</w>" (CLIP-like, with
    Whitespace pre-tokenizer, lowercase, BPEDecoder)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<unk>", "<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tj = train(tok, trainer)
    post = template(
        "<|startoftext|> $A <|endoftext|>",
        "<|startoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1",
        tj,
        ["<|startoftext|>", "<|endoftext|>"],
    )
    return with_component(tj, "post_processor", post)


def bpe_continuing_prefix() -> dict[str, Any]:
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["[UNK]"],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return train(tok, trainer)


def with_truncation_padding() -> dict[str, Any]:
    """A GPT-2 file with truncation and padding set: we do not apply them (tok.notes says so)."""
    tok = Tokenizer.from_str(json.dumps(build("gpt2")))
    tok.enable_truncation(8)
    tok.enable_padding(length=16, pad_id=0, pad_token="<|endoftext|>")
    return doc(tok)


LAYOUTS: dict[str, Callable[[], dict[str, Any]]] = {
    "gpt2": gpt2,
    "roberta": roberta,
    "llama3": llama3,
    "qwen2": qwen2,
    "o200k": o200k,
    "deepseek": deepseek,
    "bert": bert,
    "bert_cased_processing": bert_cased_processing,
    "t5": t5,
    "xlmr": xlmr,
    "unigram_nfkc": unigram_nfkc,
    "llama2": llama2,
    "mistral": mistral,
    "sentencepiece_always": sentencepiece_always,
    "gpt_neox": gpt_neox,
    "added_flags": added_flags,
    "wordpiece_added_flags": wordpiece_added_flags,
    "gpt2_no_invalid_utf8_bytes": gpt2_no_invalid_utf8_bytes,
    "gpt2_no_control_bytes": gpt2_no_control_bytes,
    "gpt2_foreign_tokens": gpt2_foreign_tokens,
    "gpt2_ignore_merges": gpt2_ignore_merges,
    "gpt2_id_hole": gpt2_id_hole,
    "gpt2_shuffled_ids": gpt2_shuffled_ids,
    "bpe_suffix": bpe_suffix,
    "bpe_continuing_prefix": bpe_continuing_prefix,
    "with_truncation_padding": with_truncation_padding,
}


@functools.cache
def _built(name: str) -> str:
    # Builders are called from several tests and build on each other: each layout is trained
    # once per process.
    return json.dumps(LAYOUTS[name]())


def build(name: str) -> dict[str, Any]:
    """A fresh copy of layout `name`'s tokenizer.json (callers may edit it)."""
    out: dict[str, Any] = json.loads(_built(name))
    return out


def write(tj: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    return path


# ---- the texts and the comparison the parity and schema tests share -----------------------

# Every special or added token of the layouts above, for text that contains them.
ADDED_CONTENTS = [
    "<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<|begin_of_text|>",
    "<|reserved_special_token_0|>", "<|im_start|>", "<|im_end|>", "<｜begin▁of▁sentence｜>",
    "[CLS]", "[SEP]", "[MASK]", "[UNK]", "<|user|>", "<|bot|>", "[WORD]", "<Norm>", "<NORM>",
    "<reserved_0>", "Reserved_1", "RESERVED_1", "ing me", "[ENT]", "[E2]", "xyzzy", "XYZZY",
    "Plugh", "plugh", "<|startoftext|>", "\t\t", "hello world", "<|im_sep|>",
]  # fmt: skip

HARD_TEXTS = [
    "",
    " ",
    "a",
    "Hello world! It's a test, isn't it? We'll see what they've done.",
    "ﬁnance ﬂow ① ② ⑳ ＡＢＣ ｆｕｌｌ－ｗｉｄｔｈ ㍿ ℌ ™ ½ x² ﬀ",
    "e\u0301 a\u0308 o\u0302\u0323 n\u0303 vs ñ, Å vs A\u030a, Zalgo: Z\u0351\u0352\u0353a\u0354",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👋🏽 wave 🇰🇷🇯🇵 ❤️‍🔥 1️⃣",
    "line one\r\nline two\r\n\r\n\rthree\n\n\n",
    "spaces" + " " * 40 + "end   \t\t  \n  \u3000 \u00a0 \u2003 x",
    "digits 12345678901234567890 and 3.14159265358979 and 1,000,000 and ٣٤٥ and १२३",
    "English 한국어 텍스트 中文文本 العربية النص हिन्दी पाठ Ελληνικά Русский ไทย",
    "안녕하세요, 세계! 대한민국의 수도는 서울이다.",
    "北京是中国的首都。東京は日本の首都です。",
    "مرحبا بالعالم! هذه جملة عربية.",
    "नमस्ते दुनिया। यह एक वाक्य है।",
    "\x00\x01\x07\x1b[0m\x7f control \u200b zero-width \u200d joiner \ufeff BOM \u2028 ls",
    "    leading and trailing spaces    ",
    "İstanbul ß ẞ Σίσυφος ΟΔΥΣΣΕΥΣ ǅ ǈ Ǳ",
    "def f(x):\n\tif x <= 10 && y != 3:\n\t\treturn x ** 2  # comment\n    pass\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Mr. O'Neil's dogs' toys: 'quoted' \"double\" `back` ’curly’ “curly” «guillemets»",
    "UPPER lower MiXeD CamelCaseWord snake_case_word kebab-case-word",
    " ".join(ADDED_CONTENTS),
    "".join(ADDED_CONTENTS),
    "x<|endoftext|>y <s>text</s> [CLS]a[SEP] b [MASK] <mask> c <|user|> hi <|bot|> there",
    "a [WORD] b x[WORD]y [WORD]! <Norm> <NORM> <reserved_0>RESERVED_1 ing me bring me",
    "[ENT] x[ENT]y [E2]  z xyzzy XYZZY Plugh PLUGH <|im_start|>user\nhi<|im_end|>\n",
    "\t\t\t\t tabs \t\t",
    "é è ê ë É \u00e9\u0301 ÿ þ ð",
    "an unreachable parity 1234 한국 hello world ж <|im_sep|>",
]  # fmt: skip

# Pieces the hypothesis texts are drawn from, besides arbitrary characters.
PIECES = sorted(
    {piece for text in HARD_TEXTS for piece in re.split(r"(\s+)", text) if piece}
    | set(ADDED_CONTENTS)
    | {" " * n for n in (2, 3, 4, 8, 25)}
    | {"\r\n", "\n\n", "\u0301", "\u200d", "\ufe0f", "🏽", "0", "99999", "'s", "'LL"}
)


def hf_tokenizer(tj: dict[str, Any]) -> Tokenizer:
    """`tokenizers`' own reading of `tj`, without truncation and padding (we do not apply
    those; tok.notes says so)."""
    hf = Tokenizer.from_str(json.dumps(tj))
    hf.no_truncation()
    hf.no_padding()
    return hf


class HFFailed(Exception):
    """`tokenizers` itself raised or panicked on this input."""


def hf_encode(hf: Tokenizer, text: str, add_special: bool, split_special: bool) -> list[int]:
    hf.encode_special_tokens = split_special
    try:
        return list(hf.encode(text, add_special_tokens=add_special).ids)
    except (KeyboardInterrupt, SystemExit):
        raise
    # pyo3's PanicException derives from BaseException. tokenizers 0.2x has panicked on
    # multi-byte text next to single_word/lstrip/rstrip added tokens (a byte offset inside a
    # character); none seen with 0.23.3, but a panic is no answer to compare with.
    except BaseException as e:
        raise HFFailed(f"{type(e).__name__}: {e}") from None


def hf_decode(hf: Tokenizer, ids: list[int], skip: bool) -> str:
    try:
        return str(hf.decode(ids, skip_special_tokens=skip))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise HFFailed(f"{type(e).__name__}: {e}") from None


def mismatches(ours: Any, hf: Tokenizer, texts: list[str], limit: int = 5) -> list[str]:
    """Every difference between ours and HF on `texts` (ids with add_special_tokens and
    split_special_tokens both ways, decode of those ids with skip_special_tokens both ways), as
    readable lines; texts HF itself fails on are left out (see `hf_encode`)."""
    out: list[str] = []
    for text in texts:
        for add in (False, True):
            for split in (False, True):
                try:
                    want = hf_encode(hf, text, add, split)
                except HFFailed:
                    continue
                got = ours.encode(text, add_special_tokens=add, split_special_tokens=split)
                if list(got) != want:
                    out.append(
                        f"encode({text!r}, add_special_tokens={add}, split_special_tokens="
                        f"{split}): want {want} got {list(got)}"
                    )
                    continue
                for skip in (False, True):
                    try:
                        want_text = hf_decode(hf, want, skip)
                    except HFFailed:
                        continue
                    got_text = ours.decode(want, skip_special_tokens=skip)
                    if got_text != want_text:
                        out.append(
                            f"decode({want}, skip_special_tokens={skip}) of {text!r}: "
                            f"want {want_text!r} got {got_text!r}"
                        )
        if len(out) >= limit:
            break
    return out


def byte_decoder() -> dict[str, int]:
    return {byte_char(b): b for b in range(256)}


def tiktoken_ranks(tj: dict[str, Any]) -> dict[bytes, int]:
    """The mergeable ranks of a byte-level BPE file: its model vocab (added tokens left out) as
    bytes, ranked 0..n-1 in id order (merge order, for a trained vocabulary)."""
    dec = byte_decoder()
    added = {a["content"] for a in tj["added_tokens"]}
    vocab = sorted((i, t) for t, i in tj["model"]["vocab"].items() if t not in added)
    return {bytes(dec[c] for c in token): rank for rank, (_, token) in enumerate(vocab)}


def write_tiktoken(ranks: dict[bytes, int], path: Path) -> Path:
    """A .tiktoken file as tiktoken writes it: `base64(token) rank` per line, by rank."""
    lines = [
        f"{base64.b64encode(t).decode()} {r}\n"
        for t, r in sorted(ranks.items(), key=lambda x: x[1])
    ]
    path.write_text("".join(lines), encoding="ascii")
    return path
