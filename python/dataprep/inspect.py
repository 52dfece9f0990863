"""Reading shards back: manifest summary, checksum validation, decoded sample rows."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import _core


class ShardError(Exception):
    """A shard does not match its manifest entry."""


def open_shard(path: str | os.PathLike[str]) -> pa.Table:
    """Memory-maps a shard (zero-copy) as a `pyarrow.Table`."""
    return pa.ipc.open_stream(pa.memory_map(os.fspath(path))).read_all()


def input_ids(table: pa.Table) -> np.ndarray:
    """The `(rows, seq_len)` token array of a shard table, without a copy.

    >>> t = pa.table({"input_ids": pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4], pa.uint16()), 2)})
    >>> input_ids(t).tolist()
    [[1, 2], [3, 4]]
    """
    col = table.column("input_ids").combine_chunks()
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=True).reshape(-1, width)


def inspect_shards(
    directory: str | os.PathLike[str], verify: bool = True, rows: int = 2
) -> dict[str, Any]:
    """Loads `manifest.json`, checks every shard against it and decodes a few rows.

    Returns:
        `{"manifest": ..., "problems": [...], "samples": [(shard, row, text), ...]}`;
        `problems` is empty when every shard's checksum, row and token counts match.
    """
    d = Path(directory)
    mpath = d / "manifest.json"
    if not mpath.exists():
        raise _core.DataprepError(f"{d}: no manifest.json (not a shard directory, or unfinished)")
    manifest = json.loads(mpath.read_text())
    problems: list[str] = []
    if verify:
        for split, info in manifest["splits"].items():
            for shard in info["shards"]:
                p = d / shard["file"]
                if not p.exists():
                    problems.append(f"{p}: missing ({split})")
                    continue
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if h.hexdigest() != shard["sha256"]:
                    problems.append(f"{p}: checksum mismatch")
                    continue
                t = open_shard(p)
                if t.num_rows != shard["rows"]:
                    problems.append(f"{p}: {t.num_rows} rows, manifest says {shard['rows']}")
                elif sum(t.column("n_tokens").to_pylist()) != shard["tokens"]:
                    problems.append(f"{p}: token count differs from the manifest")
    samples: list[tuple[str, int, str]] = []
    train = manifest["splits"].get("train", {}).get("shards", [])
    if rows and train and (d / train[0]["file"]).exists():
        tok = _core.Tokenizer.from_file(
            os.fspath(d / manifest["tokenizer"]["file"]), manifest["config"].get("pattern")
        )
        t = open_shard(d / train[0]["file"])
        ids = input_ids(t)
        n = t.column("n_tokens").to_numpy()
        for r in range(min(rows, len(ids))):
            samples.append((train[0]["file"], r, tok.decode(ids[r, : n[r]].tolist())))
    return {"manifest": manifest, "problems": problems, "samples": samples}
