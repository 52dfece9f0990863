"""`tokenize`: corpus -> packed Arrow shards for causal LM or MLM, with a manifest; resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dataprep import _core
from dataprep.options import plain

PathLike = str | os.PathLike[str]


def paths(inputs: PathLike | Sequence[PathLike]) -> list[str]:
    """One path or several, as strings.

    >>> paths("a"), paths(["a", "b"])
    (['a'], ['a', 'b'])
    """
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    return [os.fspath(p) for p in items]


def tokenize(
    inputs: PathLike | Sequence[PathLike],
    tokenizer: PathLike,
    out: PathLike,
    *,
    progress: _core.Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Tokenizes a corpus into packed causal-LM (or MLM) shards and returns the manifest.

    Each document becomes `[BOS] tokens [EOS]` (BOS only if the tokenizer has one); documents
    are concatenated and cut into rows of `seq_len`. With `objective="mlm"` rows are
    `[CLS] A [SEP] (B [SEP])`. Rerunning the same call on the same `out` resumes an interrupted
    run, and returns at once when it is complete.

    Args:
        inputs: Files or directories (see `train_bpe` for formats).
        tokenizer: A `tokenizer.json` (byte-level BPE, ours or HF's) or a `.tiktoken` file.
        out: Output directory: `train-NNNNN.arrow`, `val-NNNNN.arrow`, `manifest.json` and a copy
            of the tokenizer.
        progress: A `Progress` to poll from another thread.
        **options: The options of `dataprep tokenize`, by their Python names (`seq_len=512`,
            `objective="mlm"`, ...): the README's table, or `dataprep.options.properties(
            "tokenize")`. An unknown option, a value out of range, or an option that does not
            apply to the objective is refused with a `ValueError` naming it.

    Returns:
        The manifest (also written to `out/manifest.json`).

    >>> import tempfile, pathlib, dataprep
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("hello world " * 100)
    >>> _ = dataprep.train_bpe(d / "a.txt", 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> m = tokenize(d / "a.txt", d / "tok.json", d / "shards", seq_len=64)
    >>> m["splits"]["train"]["rows"] > 0
    True
    >>> tokenize(d / "a.txt", d / "tok.json", d / "s2", layout="nsp")
    Traceback (most recent call last):
    ...
    ValueError: --layout applies to --objective mlm only
    """
    opts = plain(options)
    opts.update(inputs=paths(inputs), tokenizer=os.fspath(tokenizer), out=os.fspath(out))
    manifest: dict[str, Any] = json.loads(_core.tokenize(progress=progress, **opts))
    return manifest
