"""Exact and near-duplicate removal (MinHash LSH), streaming and memory-bounded in the Rust core.

The stages, their invariants and the normalization are documented in `rust/src/dedup/mod.rs`;
`docs/README-dedup.md` has the user guide.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataprep import _core

PathLike = str | os.PathLike[str]

SUMMARY_NAME = "summary.json"


def banding(
    threshold: float = 0.8, num_perm: int = 128, verify: bool = True
) -> tuple[int, int, float]:
    """The LSH banding chosen for `threshold`: `(bands, rows, P(candidate | J = threshold))`.

    Bands x rows minimise the expected false-positive + false-negative rate; with verification
    false negatives weigh more (false positives are caught by the exact Jaccard check).

    >>> banding(0.8, 128, verify=False)[:2]
    (9, 13)
    """
    return _core.dedup_banding(threshold, num_perm, verify)


def dedup(
    inputs: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    *,
    mode: str = "near",
    threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    bands: tuple[int, int] | None = None,
    verify: bool = True,
    nfc: bool = True,
    whitespace: bool = True,
    lowercase: bool = False,
    seed: int = 1,
    threads: int | None = None,
    memory_mb: int = 512,
    temp_dir: PathLike | None = None,
    format: str = "auto",
    text_unit: str = "file",
    jsonl_field: str = "text",
    parquet_column: str = "text",
    invalid_utf8: str = "replace",
    progress: _core.Progress | None = None,
) -> dict[str, Any]:
    """Removes exact and near-duplicate documents from files or directories.

    Args:
        inputs: Files or directories (walked recursively), in any format `train_bpe` reads.
        out: Output directory for the kept documents (one file per input: JSONL lines and
            Parquet rows are copied with all their fields; wiki/text become JSONL), the cluster
            report `clusters.jsonl` and `summary.json`. None: only find the duplicates.
        mode: `exact` (normalized-text hash) or `near` (exact, then MinHash LSH).
        threshold: Jaccard similarity of word n-gram shingles at and above which two documents
            are near duplicates.
        ngram: Words per shingle. Scripts without spaces (CJK, Thai...) count each character as
            a word, so their shingles are character n-grams.
        num_perm: MinHash permutations.
        bands: `(bands, rows)` override; default derived from `threshold` (see `banding`).
        verify: Check every candidate pair by its true Jaccard, so that no pair below
            `threshold` is removed.
        nfc: Exact key: Unicode NFC first.
        whitespace: Exact key: collapse whitespace runs to one space, strip the ends.
        lowercase: Exact key: compare case-insensitively.
        seed: Seed of the MinHash permutations.
        threads: Worker threads (default: all cores). The result does not depend on it.
        memory_mb: Budget of the in-memory sort buffers; beyond it records spill to disk.
        temp_dir: Where sorted runs are spilled (default: the system temporary directory).
        format: `auto`, `wiki`, `text`, `jsonl` or `parquet`.
        text_unit: Plain text: a document is a `file` or a blank-line separated `paragraph`.
        jsonl_field: JSONL field with the text.
        parquet_column: Parquet column with the text.
        invalid_utf8: `replace` (U+FFFD), `skip` the document, or `error`.
        progress: A `Progress` to poll from another thread (see `dataprep.cli`).

    Returns:
        Statistics: documents, bytes, `exact_removed`, `near_removed`, `kept`, `bands`, `rows`,
        pair counts, timings (`total_seconds` includes writing), `removed` (sorted corpus
        indices, numpy uint64) and, with `out`, `outputs` and `report` paths.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.jsonl").write_text('{"text": "same text"}\\n{"text": "same  text"}\\n')
    >>> stats = dedup(d, mode="exact")
    >>> stats["removed"].tolist()
    [1]
    """
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        _core.check_writable(os.fspath(Path(out) / SUMMARY_NAME))
    start = time.perf_counter()
    stats: dict[str, Any] = _core.dedup(
        [os.fspath(p) for p in paths],
        None if out is None else os.fspath(out),
        mode=mode,
        threshold=threshold,
        ngram=ngram,
        num_perm=num_perm,
        bands=bands,
        verify=verify,
        nfc=nfc,
        whitespace=whitespace,
        lowercase=lowercase,
        seed=seed,
        threads=threads,
        memory_mb=memory_mb,
        temp_dir=None if temp_dir is None else os.fspath(temp_dir),
        format=format,
        text_unit=text_unit,
        jsonl_field=jsonl_field,
        parquet_column=parquet_column,
        invalid_utf8=invalid_utf8,
        progress=progress,
    )
    stats["total_seconds"] = time.perf_counter() - start
    if out is not None:
        summary = {k: v for k, v in stats.items() if k != "removed"}
        summary["outputs"] = [os.fspath(p) for p in stats["outputs"]]
        summary["report"] = os.fspath(stats["report"])
        summary["ngram"], summary["num_perm"], summary["seed"] = ngram, num_perm, seed
        summary["normalization"] = {"nfc": nfc, "whitespace": whitespace, "lowercase": lowercase}
        write_json_atomic(Path(out) / SUMMARY_NAME, summary)
    return stats


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes `obj` as JSON to a temporary sibling, then renames it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
