"""Training byte-level BPE tokenizers and exporting them (HF `tokenizer.json`, tiktoken)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataprep import _core

if TYPE_CHECKING:
    import tiktoken

PathLike = str | os.PathLike[str]


def tiktoken_paths(out: PathLike) -> tuple[Path, Path]:
    """The tiktoken ranks file and its JSON sidecar written next to a `tokenizer.json`.

    >>> tiktoken_paths("tok.json")
    (PosixPath('tok.tiktoken'), PosixPath('tok.tiktoken.json'))
    """
    ranks = Path(out).with_suffix(".tiktoken")
    return ranks, ranks.with_name(ranks.name + ".json")


def train_bpe(
    inputs: PathLike | Sequence[PathLike],
    vocab_size: int,
    *,
    out: PathLike | None = None,
    tiktoken: bool = True,
    pattern: str = "gpt2",
    special_tokens: Sequence[str] = (),
    min_frequency: int = 2,
    max_token_length: int | None = None,
    threads: int | None = None,
    holdout_every: int = 100,
    format: str = "auto",
    text_unit: str = "file",
    jsonl_field: str = "text",
    parquet_column: str = "text",
    invalid_utf8: str = "replace",
    progress: _core.Progress | None = None,
) -> tuple[_core.Tokenizer, dict[str, Any]]:
    """Trains a byte-level BPE tokenizer on files or directories of text.

    Args:
        inputs: Files or directories (walked recursively). Formats: WikiExtractor `<doc>` files,
            plain text, JSONL, Parquet; `.gz`, `.bz2`, `.zst` are read transparently.
        vocab_size: Total vocabulary size, including the 256 byte tokens and `special_tokens`.
        out: Where to write `tokenizer.json`; checked for writability before training starts.
        tiktoken: Also write `<out stem>.tiktoken` and its `.tiktoken.json` sidecar.
        pattern: `gpt2`, `cl100k`, `o200k`, or a regex.
        special_tokens: Given ids 0..k-1 in this order.
        min_frequency: Pairs seen fewer times are never merged.
        max_token_length: Longest token in bytes.
        threads: Worker threads (default: all cores).
        holdout_every: Every n-th document is held back to measure bytes per token (0: none).
        format: `auto`, `wiki`, `text`, `jsonl` or `parquet`.
        text_unit: Plain text: a document is a `file` or a blank-line separated `paragraph`.
        jsonl_field: JSONL field with the text.
        parquet_column: Parquet column with the text.
        invalid_utf8: `replace` (U+FFFD), `skip` the document, or `error`.
        progress: A `Progress` to poll from another thread (see `dataprep.cli`).

    Returns:
        The tokenizer and a dict of statistics (bytes, documents, unique words, timings,
        held-out bytes and tokens).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("low lower lowest " * 50)
    >>> tok, stats = train_bpe(d, 260, holdout_every=0)
    >>> tok.decode(tok.encode("lowest")) == "lowest"
    True
    """
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if out is not None:
        _core.check_writable(os.fspath(out))
        if tiktoken:
            for p in tiktoken_paths(out):
                _core.check_writable(os.fspath(p))
    tok, stats = _core.train_bpe(
        [os.fspath(p) for p in paths],
        vocab_size,
        pattern=pattern,
        special_tokens=list(special_tokens),
        min_frequency=min_frequency,
        max_token_length=max_token_length,
        threads=threads,
        holdout_every=holdout_every,
        format=format,
        text_unit=text_unit,
        jsonl_field=jsonl_field,
        parquet_column=parquet_column,
        invalid_utf8=invalid_utf8,
        progress=progress,
    )
    if out is not None:
        tok.save(os.fspath(out))
        if tiktoken:
            ranks, _ = tiktoken_paths(out)
            tok.save_tiktoken(os.fspath(ranks), name=Path(out).stem)
    return tok, stats


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
