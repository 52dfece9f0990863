"""`tokenize`: corpus -> packed Arrow shards for causal LM or MLM, with a manifest; resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dataprep import _core

PathLike = str | os.PathLike[str]

EOS_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "[SEP]")
BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>")
PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>")
CLS_CANDIDATES = ("[CLS]", "<s>")
SEP_CANDIDATES = ("[SEP]", "</s>")
MLM_PAD_CANDIDATES = ("[PAD]", "<pad>")
MASK_CANDIDATES = ("[MASK]", "<mask>")
LAYOUTS = {"full-sentence": "full_sentence", "nsp": "nsp"}


def _find(
    tok: _core.Tokenizer, wanted: str | None, candidates: Sequence[str], what: str
) -> int | None:
    if wanted is not None:
        tid = tok.special_id(wanted)
        if tid is None:
            raise ValueError(f"{what} token {wanted!r} is not a special token of the tokenizer")
        return tid
    return next((t for c in candidates if (t := tok.special_id(c)) is not None), None)


def parse_size(text: str | int) -> int:
    """Bytes in `256MB`, `1.5GB`, `4096`.

    >>> parse_size("256MB"), parse_size("2KiB"), parse_size(10)
    (256000000, 2048, 10)
    """
    if isinstance(text, int):
        return text
    s = text.strip().upper().removesuffix("B")
    units = {"KI": 1 << 10, "MI": 1 << 20, "GI": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s))


def tokenize(
    inputs: PathLike | Sequence[PathLike],
    tokenizer: PathLike,
    out: PathLike,
    *,
    seq_len: int = 2048,
    val_fraction: float = 0.0,
    seed: int = 0,
    shard_size: str | int = "256MB",
    last_row: str = "pad",
    threads: int | None = None,
    eos_token: str | None = None,
    bos_token: str | None = None,
    use_bos: bool = True,
    pad_token: str | None = None,
    dedup: str = "none",
    dedup_threshold: float = 0.8,
    pattern: str | None = None,
    format: str = "auto",
    text_unit: str = "file",
    jsonl_field: str = "text",
    parquet_column: str = "text",
    invalid_utf8: str = "replace",
    progress: _core.Progress | None = None,
    objective: str = "clm",
    layout: str = "full-sentence",
    cls_token: str | None = None,
    sep_token: str | None = None,
    mask_token: str | None = None,
    nsp_block_docs: int = 256,
    short_seq_prob: float = 0.1,
    static_masking: bool = False,
    dupe_factor: int = 1,
    mask_probability: float = 0.15,
    mask_strategy: str = "bernoulli",
    replace_mask: float = 0.8,
    replace_random: float = 0.1,
    span_p: float = 0.2,
    max_span: int = 10,
    max_predictions: int | None = None,
) -> dict[str, Any]:
    """Tokenizes a corpus into packed causal-LM (or MLM) shards and returns the manifest.

    Each document becomes `[BOS] tokens [EOS]` (BOS only if the tokenizer has one); documents
    are concatenated and cut into rows of `seq_len`. Rerunning the same call on the same `out`
    resumes an interrupted run, and returns at once when it is complete.

    Args:
        inputs: Files or directories (see `train_bpe` for formats).
        tokenizer: A `tokenizer.json` (byte-level BPE, ours or HF's) or a `.tiktoken` file.
        out: Output directory: `train-NNNNN.arrow`, `val-NNNNN.arrow`, `manifest.json` and a copy
            of the tokenizer.
        seq_len: Tokens per row.
        val_fraction: Share of documents for the `val` split (seeded hash of document index).
        seed: Seed of the split.
        shard_size: Target shard size (`256MB`); a shard closes at the next document boundary.
        last_row: The final partial row: `pad` (with `n_tokens` < seq_len) or `drop` (counted).
        threads: Encoder threads (default: all cores).
        eos_token, bos_token, pad_token: Override the special tokens found by name.
        use_bos: Put BOS before each document when the tokenizer has one.
        dedup: `none`, `exact` (normalized-text hash) or `near` (exact, then MinHash LSH with
            verification), applied before encoding; the first of each group is kept and the
            counts land in the manifest under `documents.skipped`.
        dedup_threshold: Jaccard similarity for `near`.
        pattern: Split pattern for a `.tiktoken` file without a `.json` sidecar.
        format, text_unit, jsonl_field, parquet_column, invalid_utf8: Corpus reading options.
        progress: A `Progress` to poll from another thread.
        objective: `clm` (packed causal rows) or `mlm` (`[CLS] A [SEP] (B [SEP])` rows, see
            docs/README-mlm-tokenize.md).
        layout: MLM: `full-sentence` (RoBERTa packing across documents) or `nsp` (BERT pairs
            with next-sentence labels).
        cls_token, sep_token, mask_token: MLM special tokens (default: found by name; pad is
            `[PAD]`/`<pad>`).
        nsp_block_docs: NSP: documents per block; a random B comes from another document of the
            same block, and shards close only at block ends.
        short_seq_prob: NSP: probability of a shorter target length (BERT).
        static_masking: MLM: mask at prep time; adds a `labels` column.
        dupe_factor: With static masking: differently masked copies of each row.
        mask_probability, mask_strategy, replace_mask, replace_random, span_p, max_span,
            max_predictions: The masking configuration (see `dataprep.mask.mask_batch`).

    Returns:
        The manifest (also written to `out/manifest.json`).

    >>> import tempfile, pathlib, dataprep
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("hello world " * 100)
    >>> _ = dataprep.train_bpe(d / "a.txt", 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> m = tokenize(d / "a.txt", d / "tok.json", d / "shards", seq_len=64)
    >>> m["splits"]["train"]["rows"] > 0
    True
    """
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    tok = _core.Tokenizer.from_file(os.fspath(tokenizer), pattern)
    if objective == "mlm":
        return _tokenize_mlm(**locals())
    if objective != "clm":
        raise ValueError(f"unknown objective {objective!r} (clm, mlm)")
    eos = _find(tok, eos_token, EOS_CANDIDATES, "EOS")
    if eos is None:
        raise ValueError(
            f"{os.fspath(tokenizer)}: no EOS token found (looked for {', '.join(EOS_CANDIDATES)}); "
            "pass eos_token / --eos-token"
        )
    bos = _find(tok, bos_token, BOS_CANDIDATES, "BOS") if use_bos else None
    pad = _find(tok, pad_token, PAD_CANDIDATES, "pad")
    pad = eos if pad is None else pad
    dtype_bytes = 2 if tok.vocab_size <= 1 << 16 else 4
    rows_per_shard = max(1, parse_size(shard_size) // (seq_len * dtype_bytes))
    threads = threads or os.cpu_count() or 1
    config = {
        "objective": "clm",
        "inputs": [os.fspath(p) for p in paths],
        "tokenizer": os.fspath(tokenizer),
        "seq_len": seq_len,
        "val_fraction": val_fraction,
        "seed": seed,
        "shard_size": str(shard_size),
        "rows_per_shard": rows_per_shard,
        "last_row": last_row,
        "eos_id": eos,
        "bos_id": bos,
        "pad_id": pad,
        "pattern": pattern,
        "dedup": dedup,
        "dedup_threshold": dedup_threshold if dedup == "near" else None,
        "format": format,
        "text_unit": text_unit,
        "jsonl_field": jsonl_field,
        "parquet_column": parquet_column,
        "invalid_utf8": invalid_utf8,
    }
    text = _core.tokenize(
        [os.fspath(p) for p in paths],
        os.fspath(tokenizer),
        os.fspath(out),
        seq_len=seq_len,
        val_fraction=val_fraction,
        seed=seed,
        rows_per_shard=rows_per_shard,
        last_row=last_row,
        threads=threads,
        eos_id=eos,
        bos_id=bos,
        pad_id=pad,
        # Thread count is left out: it never changes the output, so it must not block a resume.
        config_json=json.dumps(config, sort_keys=True),
        loaded=tok,
        dedup=dedup,
        dedup_threshold=dedup_threshold,
        format=format,
        text_unit=text_unit,
        jsonl_field=jsonl_field,
        parquet_column=parquet_column,
        invalid_utf8=invalid_utf8,
        progress=progress,
    )
    return json.loads(text)


def _need(
    tok: _core.Tokenizer,
    tokenizer: PathLike,
    wanted: str | None,
    candidates: Sequence[str],
    what: str,
    option: str,
) -> int:
    tid = _find(tok, wanted, candidates, what)
    if tid is None:
        raise ValueError(
            f"{os.fspath(tokenizer)}: no {what} token found (looked for {', '.join(candidates)}); "
            f"pass {option}"
        )
    return tid


def _tokenize_mlm(**kw: Any) -> dict[str, Any]:
    """`tokenize(objective="mlm")`: the special ids, the configuration, then the shared pipeline."""
    tok: _core.Tokenizer = kw["tok"]
    tokenizer = kw["tokenizer"]
    if kw["layout"] not in LAYOUTS:
        raise ValueError(f"unknown MLM layout {kw['layout']!r} (full-sentence, nsp)")
    layout = LAYOUTS[kw["layout"]]
    cls = _need(tok, tokenizer, kw["cls_token"], CLS_CANDIDATES, "CLS", "--cls-token")
    sep = _need(tok, tokenizer, kw["sep_token"], SEP_CANDIDATES, "SEP", "--sep-token")
    pad = _need(tok, tokenizer, kw["pad_token"], MLM_PAD_CANDIDATES, "PAD", "--pad-token")
    # Recorded in the manifest for dynamic masking; required only to mask here.
    mask = _find(tok, kw["mask_token"], MASK_CANDIDATES, "MASK")
    if kw["static_masking"]:
        mask = _need(tok, tokenizer, kw["mask_token"], MASK_CANDIDATES, "MASK", "--mask-token")
    if kw["dupe_factor"] < 1:
        raise ValueError("dupe-factor must be at least 1")
    if kw["dupe_factor"] > 1 and not kw["static_masking"]:
        raise ValueError("dupe-factor needs static masking (--static-masking)")
    seq_len, dupes = kw["seq_len"], kw["dupe_factor"] if kw["static_masking"] else 1
    dtype_bytes = 2 if tok.vocab_size <= 1 << 16 else 4
    # input_ids + token types + special mask + word starts (+ int32 labels when masked).
    row_bytes = seq_len * (dtype_bytes + 3 + (4 if kw["static_masking"] else 0)) + 5
    rows_per_shard = max(1, parse_size(kw["shard_size"]) // row_bytes)
    specials = sorted({i for _, i in tok.special_tokens} | {cls, sep, pad})
    masking = (
        {
            "dupe_factor": dupes,
            "probability": kw["mask_probability"],
            "strategy": kw["mask_strategy"],
            "replace_mask": kw["replace_mask"],
            "replace_random": kw["replace_random"],
            "span_p": kw["span_p"] if kw["mask_strategy"] == "span" else None,
            "max_span": kw["max_span"] if kw["mask_strategy"] == "span" else None,
            "max_predictions": kw["max_predictions"],
            "special_ids": specials,
        }
        if kw["static_masking"]
        else None
    )
    mlm = {
        "cls_id": cls,
        "sep_id": sep,
        "pad_id": pad,
        "mask_id": mask,
        "nsp_block_docs": kw["nsp_block_docs"] if layout == "nsp" else None,
        "short_seq_prob": kw["short_seq_prob"] if layout == "nsp" else None,
        "static_masking": masking,
    }
    paths = kw["paths"]
    config = {
        "objective": "mlm",
        "layout": layout,
        "mlm": mlm,
        "inputs": [os.fspath(p) for p in paths],
        "tokenizer": os.fspath(tokenizer),
        "seq_len": seq_len,
        "val_fraction": kw["val_fraction"],
        "seed": kw["seed"],
        "shard_size": str(kw["shard_size"]),
        "rows_per_shard": rows_per_shard,
        "pattern": kw["pattern"],
        "format": kw["format"],
        "text_unit": kw["text_unit"],
        "jsonl_field": kw["jsonl_field"],
        "parquet_column": kw["parquet_column"],
        "invalid_utf8": kw["invalid_utf8"],
    }
    text = _core.tokenize(
        [os.fspath(p) for p in paths],
        os.fspath(tokenizer),
        os.fspath(kw["out"]),
        seq_len=seq_len,
        val_fraction=kw["val_fraction"],
        seed=kw["seed"],
        rows_per_shard=rows_per_shard,
        last_row="pad",
        threads=kw["threads"] or os.cpu_count() or 1,
        # The manifest's tokenizer block wants an end-of-text id: for MLM rows that is [SEP].
        eos_id=sep,
        bos_id=cls,
        pad_id=pad,
        # Thread count is left out: it never changes the output, so it must not block a resume.
        config_json=json.dumps(config, sort_keys=True),
        loaded=tok,
        format=kw["format"],
        text_unit=kw["text_unit"],
        jsonl_field=kw["jsonl_field"],
        parquet_column=kw["parquet_column"],
        invalid_utf8=kw["invalid_utf8"],
        progress=kw["progress"],
        objective="mlm",
        layout=layout,
        cls_id=cls,
        sep_id=sep,
        mask_id=mask,
        nsp_block_docs=kw["nsp_block_docs"],
        short_seq_prob=kw["short_seq_prob"],
        static_masking=kw["static_masking"],
        dupe_factor=dupes,
        mask_probability=kw["mask_probability"],
        mask_prob=kw["replace_mask"],
        random_prob=kw["replace_random"],
        mask_strategy=kw["mask_strategy"],
        span_p=kw["span_p"],
        max_span=kw["max_span"],
        max_predictions=kw["max_predictions"],
        special_ids=specials,
        mlm_json=json.dumps(mlm, sort_keys=True),
    )
    return json.loads(text)
