"""Training byte-level BPE tokenizers and exporting them (HF `tokenizer.json`, tiktoken)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataprep import _core, remote, storage
from dataprep.options import plain
from dataprep.tokenize import PathLike, paths

if TYPE_CHECKING:
    import tiktoken


def tiktoken_paths(out: PathLike) -> tuple[Path, Path]:
    """The tiktoken ranks file and its JSON sidecar written next to a `tokenizer.json`.

    >>> tiktoken_paths("tok.json")
    (PosixPath('tok.tiktoken'), PosixPath('tok.tiktoken.json'))
    """
    ranks, sidecar = _core.tiktoken_paths(os.fspath(out))
    return Path(ranks), Path(sidecar)


def train_bpe(
    inputs: PathLike | Sequence[PathLike],
    vocab_size: int | None = None,
    *,
    progress: _core.Progress | None = None,
    **options: Any,
) -> tuple[_core.Tokenizer, dict[str, Any]]:
    """Trains a byte-level BPE tokenizer on files or directories of text.

    Args:
        inputs: Files or directories (walked recursively). Formats: WikiExtractor `<doc>` files,
            plain text, JSONL, Parquet; `.gz`, `.bz2`, `.zst` are read transparently.
        vocab_size: Total vocabulary size, including the 256 byte tokens and the special tokens
            (default 32000).
        progress: A `Progress` to poll from another thread (see `dataprep.cli`).
        **options: The options of `dataprep train-bpe` by their Python names (README table, or
            `dataprep.options.properties("train-bpe")`): `out` (where to write `tokenizer.json`,
            checked for writability before training; with `tiktoken`, also the `.tiktoken` pair
            next to it), `pattern`, `special_tokens`, `min_frequency`, `max_token_length`,
            `threads`, `holdout_every` and the corpus reading options.

    Returns:
        The tokenizer and a dict of statistics (bytes, documents, unique words, timings,
        held-out bytes and tokens, `outputs`: the files written).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("low lower lowest " * 50)
    >>> tok, stats = train_bpe(d, 260, holdout_every=0)
    >>> tok.decode(tok.encode("lowest")) == "lowest"
    True
    """
    opts = plain(options)
    ins = paths(inputs)
    opts["inputs"] = ins
    if vocab_size is not None:
        opts["vocab_size"] = vocab_size
    dest = opts.pop("out", None)
    with remote.local_run(ins, dest) as (listing, local_out):
        if local_out is not None:
            opts["out"] = local_out
        tok, stats = _core.train_bpe(progress=progress, listing=listing, **opts)
        if dest is not None and storage.is_remote(dest):
            stats["outputs"] = upload_outputs(stats["outputs"], dest)
    return tok, stats


def upload_outputs(outputs: Sequence[str], dest: str) -> list[str]:
    """Uploads the files a training wrote locally (`outputs`, tokenizer.json first) next to
    the remote `dest`, the tokenizer.json last: the file a reader loads names the set complete.
    Returns their remote names, in the order of `outputs`."""
    written = [Path(p) for p in outputs]
    for p in written[1:] + written[:1]:
        storage.upload(p, storage.join(dest.rsplit("/", 1)[0], p.name))
    return [storage.join(dest.rsplit("/", 1)[0], p.name) for p in written]


def tiktoken_encoding(ranks_path: PathLike) -> tiktoken.Encoding:
    """Builds a `tiktoken.Encoding` from a `.tiktoken` export and its `.json` sidecar."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks_path = Path(ranks_path)
    meta = json.loads(ranks_path.with_name(ranks_path.name + ".json").read_text())
    return tiktoken.Encoding(
        name=meta["name"],
        pat_str=meta["pat_str"],
        mergeable_ranks=load_tiktoken_bpe(os.fspath(ranks_path)),
        special_tokens=meta["special_tokens"],
    )
