"""Exact and near-duplicate removal (MinHash LSH), streaming and memory-bounded in the Rust core.

The stages, their invariants and the normalization are documented in `rust/src/dedup/mod.rs`;
the README's "Deduplication" section is the user guide.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataprep import _core, storage
from dataprep.options import plain
from dataprep.tokenize import PathLike, paths

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
    progress: _core.Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Removes exact and near-duplicate documents from files or directories.

    Args:
        inputs: Files or directories (walked recursively), in any format `train_bpe` reads.
        out: Output directory for the kept documents (one file per input: JSONL lines and
            Parquet rows are copied with all their fields; wiki/text become JSONL), the cluster
            report `clusters.jsonl` and `summary.json`. None: only find the duplicates.
        progress: A `Progress` to poll from another thread (see `dataprep.cli`).
        **options: The options of `dataprep dedup` by their Python names (README table, or
            `dataprep.options.properties("dedup")`): `mode` (`exact` or `near`), `threshold`,
            `ngram`, `num_perm`, `bands`, `verify`, `nfc`, `whitespace`, `lowercase`, `seed`,
            `threads`, `memory_mb`, `temp_dir` and the corpus reading options. Options of near
            mode are refused in exact mode.

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
    opts = plain(options)
    opts["inputs"] = paths(inputs)
    remote = [
        p
        for p in [*opts["inputs"], *([os.fspath(out)] if out is not None else [])]
        if storage.is_remote(p)
    ]
    if remote:
        raise ValueError(
            f"{remote[0]}: dedup reads and writes local paths only (s3:// is not supported yet)"
        )
    if out is not None:
        opts["out"] = os.fspath(out)
        _core.check_options("dedup", **opts)
        Path(out).mkdir(parents=True, exist_ok=True)
        _core.check_writable(os.fspath(Path(out) / SUMMARY_NAME))
    start = time.perf_counter()
    stats: dict[str, Any] = _core.dedup(progress=progress, **opts)
    stats["total_seconds"] = time.perf_counter() - start
    if out is not None:
        summary = {k: v for k, v in stats.items() if k != "removed"}
        summary["outputs"] = [os.fspath(p) for p in stats["outputs"]]
        summary["report"] = os.fspath(stats["report"])
        for k in ("ngram", "num_perm", "seed", "normalization"):  # the order it always had
            summary[k] = summary.pop(k)
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
