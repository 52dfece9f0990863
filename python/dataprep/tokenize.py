"""`tokenize`: corpus -> packed Arrow shards for causal LM or MLM, with a manifest; resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dataprep import _core, remote, storage
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
        inputs: Files or directories (see `train_bpe` for formats), or `s3://` objects and
            prefixes (staged under `remote.cache_root()`; see README, Object storage).
        tokenizer: A `tokenizer.json` (byte-level BPE, ours or HF's) or a `.tiktoken` file.
        out: Output directory: `train-NNNNN.arrow`, `val-NNNNN.arrow`, `manifest.json` and a copy
            of the tokenizer; an `s3://` prefix is built locally, then uploaded with the
            manifest last.
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
    ins, dest = paths(inputs), os.fspath(out)
    opts.update(inputs=ins, tokenizer=local_tokenizer(tokenizer))
    with remote.local_run(ins, dest) as (listing, local_out):
        text = _core.tokenize(progress=progress, listing=listing, out=local_out, **opts)
        if storage.is_remote(dest):
            storage.upload_set(local_out or dest, dest)
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def local_tokenizer(tokenizer: PathLike) -> str:
    """The tokenizer's path; a URL is refused (it is part of the configuration as typed, so a
    staged copy's path would make every node's work units differ).

    >>> local_tokenizer("s3://b/tok.json")
    Traceback (most recent call last):
    ...
    ValueError: --tokenizer s3://b/tok.json: a tokenizer in object storage is not read directly; download it first
    """
    path = os.fspath(tokenizer)
    if storage.is_remote(path):
        raise ValueError(
            f"--tokenizer {path}: a tokenizer in object storage is not read directly; download it first"
        )
    return path
