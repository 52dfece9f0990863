"""`tokenize`: corpus -> packed Arrow shards for causal LM, with a manifest; resumable."""

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
) -> dict[str, Any]:
    """Tokenizes a corpus into packed causal-LM shards and returns the manifest.

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
        dedup=dedup,
        dedup_threshold=dedup_threshold,
        pattern=pattern,
        format=format,
        text_unit=text_unit,
        jsonl_field=jsonl_field,
        parquet_column=parquet_column,
        invalid_utf8=invalid_utf8,
        progress=progress,
    )
    return json.loads(text)
