"""`tokenize` with the tokenizers people continue from, not only byte-level BPE: WordPiece (BERT),
Unigram (T5) and SentencePiece-style BPE (Llama-2), built here with the `tokenizers` library.
Causal and MLM rows hold HF's ids; the special tokens around documents come from each file's
post-processor; whole-word masking finds word starts by each model's convention."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tokenizers
from click.testing import CliRunner
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

import dataprep
from dataprep.cli import main


def bert(texts: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(vocab_size=900, special_tokens=specials, show_progress=False),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return tok


def t5(texts: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        texts,
        trainers.UnigramTrainer(
            vocab_size=3000,
            special_tokens=["<pad>", "</s>", "<unk>"],
            unk_token="<unk>",
            show_progress=False,
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return tok


def llama2(texts: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1200,
            special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
            show_progress=False,
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


def xlmr(texts: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        texts,
        trainers.UnigramTrainer(
            vocab_size=3000,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            unk_token="<unk>",
            show_progress=False,
        ),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


# name -> (builder, BOS, EOS for causal rows: what the post-processor says, else by name)
LAYOUTS = {
    "bert": (bert, "[CLS]", "[SEP]"),
    "t5": (t5, None, "</s>"),
    "xlmr": (xlmr, "<s>", "</s>"),
    "llama2": (llama2, "<s>", "</s>"),
}
# What MLM rows need that the file does not say (Llama-2 has no CLS/SEP/PAD roles).
MLM_OPTIONS = {
    "bert": {},
    "xlmr": {},
    "llama2": {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<unk>"},
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def model_tok(request, tmp_path_factory, demo_texts: list[str]):  # type: ignore[no-untyped-def]
    name = request.param
    build, bos, eos = LAYOUTS[name]
    hf = build([t for t in demo_texts for t in t.splitlines() if t.strip()])
    path = tmp_path_factory.mktemp(name) / "tokenizer.json"
    hf.save(str(path))
    hf.encode_special_tokens = True  # documents are text: a "[SEP]" typed in one stays text
    return name, path, hf, bos, eos


def stream_of(out: Path) -> list[int]:
    got: list[int] = []
    for p in dataprep.Manifest.read(out).shard_paths("train"):
        t = dataprep.open_shard(p)
        ids, n = dataprep.input_ids(t), t.column("n_tokens").to_numpy()
        got += [x for r in range(len(ids)) for x in ids[r, : n[r]].tolist()]
    return got


def test_causal_rows_hold_hf_ids_between_the_post_processors_specials(
    model_tok, demo_corpus: Path, demo_texts: list[str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name, path, hf, bos, eos = model_tok
    tok = dataprep.Tokenizer.from_file(str(path))
    # BERT's WordPiece layout runs on our own WordPiece engine; the other models on the crate.
    assert tok.engine == ("own" if name == "bert" else "hf")
    out = tmp_path / "s"
    r = CliRunner().invoke(
        main,
        [
            "tokenize",
            str(demo_corpus),
            "--tokenizer",
            str(path),
            "--out",
            str(out),
            "--seq-len",
            "128",
        ],
    )
    assert r.exit_code == 0, r.output
    before = f'BOS "{bos}" + ' if bos else ""
    described = f'tokenizer: {tok.engine} engine; each document: {before}text + EOS "{eos}"'
    assert described in r.output, r.output
    bos_id = hf.token_to_id(bos) if bos else None
    eos_id = hf.token_to_id(eos)
    expected: list[int] = []
    for text in demo_texts:
        expected += ([bos_id] if bos_id is not None else []) + hf.encode(
            text, add_special_tokens=False
        ).ids
        expected.append(eos_id)
    assert stream_of(out) == expected
    # An option overrides the post-processor's choice.
    out2 = tmp_path / "s2"
    m = dataprep.tokenize(demo_corpus, path, out2, seq_len=128, use_bos=False)
    assert m["tokenizer"]["bos_id"] is None and m["tokenizer"]["eos_id"] == eos_id


def test_mlm_rows_and_word_starts_follow_each_models_convention(
    model_tok, demo_corpus: Path, demo_texts: list[str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name, path, hf, bos, eos = model_tok
    if name not in MLM_OPTIONS:
        pytest.skip("T5 puts </s> after a text and nothing before: MLM rows would need --cls-token")
    out = tmp_path / "m"
    m = dataprep.tokenize(
        demo_corpus, path, out, seq_len=64, objective="mlm", shard_size="20KB", **MLM_OPTIONS[name]
    )
    assert m["mlm"]["cls_id"] == hf.token_to_id(bos) and m["mlm"]["sep_id"] == hf.token_to_id(eos)
    paths = dataprep.Manifest.read(out).shard_paths("train")
    t = pa.concat_tables([pa.ipc.open_stream(pa.memory_map(str(p))).read_all() for p in paths])

    def col(c: str) -> np.ndarray:
        a = t.column(c).combine_chunks()
        return a.values.to_numpy().reshape(len(a), a.type.list_size)

    ids, sm, ws = col("input_ids"), col("special_tokens_mask"), col("word_start")
    n = t.column("n_tokens").to_numpy()
    got = [int(x) for r in range(len(ids)) for x in ids[r, : n[r]][sm[r, : n[r]] == 0]]
    got_ws = [int(x) for r in range(len(ids)) for x in ws[r, : n[r]][sm[r, : n[r]] == 0]]
    exp: list[int] = []
    exp_tokens: list[str] = []
    exp_first: list[bool] = []
    for text in demo_texts:
        for s in dataprep.split_sentences(text):
            e = hf.encode(s, add_special_tokens=False)
            exp += e.ids
            exp_tokens += e.tokens
            exp_first += [i == 0 for i in range(len(e.ids))]
    assert got == exp
    if name == "bert":
        # A "##" piece never starts a word; a word of letters starts at its first piece.
        assert not any(t.startswith("##") for t, w in zip(exp_tokens, got_ws, strict=True) if w)
        firsts = [
            w for t, w in zip(exp_tokens, got_ws, strict=True) if re.fullmatch(r"[a-z]{2,}", t)
        ]
        assert firsts and all(firsts)
    else:
        # SentencePiece: a word starts at a piece carrying the marker (or a sentence's first).
        assert got_ws == [
            int(f or t.startswith("▁")) for t, f in zip(exp_tokens, exp_first, strict=True)
        ]


def test_word_starts_by_convention(model_tok) -> None:  # type: ignore[no-untyped-def]
    name, path, hf, _, _ = model_tok
    tok = dataprep.Tokenizer.from_file(str(path))
    text = "The quick brown fox, unbelievably, jumps over 12 lazy dogs."
    ids, ws = dataprep.encode_with_word_starts(tok, text)
    enc = hf.encode(text, add_special_tokens=False)
    assert ids.tolist() == enc.ids
    if name == "bert":
        # one start per word of letters or digits; "##" pieces and punctuation continue
        assert [t for t, w in zip(enc.tokens, ws, strict=True) if w] == [
            t for t in enc.tokens if not t.startswith("##") and re.search(r"\w", t)
        ]
    else:
        # SentencePiece: a word starts at a piece carrying the marker
        assert [bool(w) for w in ws] == [
            i == 0 or t.startswith("▁") for i, t in enumerate(enc.tokens)
        ]
