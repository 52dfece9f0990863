"""Reading what `dataprep tokenize` wrote: the manifest, and a split's shards as one table.

A shard directory holds `manifest.json`, the shards (`train-NNNNN.arrow`, `val-NNNNN.arrow`:
Arrow IPC streams, one row per sequence, the columns in the README's "Tokenize into shards") and
a copy of the tokenizer. Everything in Python that reads one goes through this module:

    Manifest     the one parser of `manifest.json`: typed and strict (an unknown schema version,
                 a missing or unknown field, a value of the wrong type is refused with one line
                 naming the file and the field)
    ShardSet     the shards of one split behind one global row id: verification against the
                 manifest, zero-copy record batches, rows, documents, and the random access by
                 row id (`gather`) that the trainer's micro-batches are built with
    open_shard   one shard file as a memory-mapped `pyarrow.Table`
    input_ids    the `(rows, seq_len)` token array of such a table

A shard directory in object storage (`ShardSet("s3://bucket/prefix")`) is read through a local
cache whose shards are verified before first use (`dataprep/shard_cache.py`); from there on it
is the same memory-mapped files.

The field names and layouts follow the writer (`rust/src/shards/`): `manifest.rs` for the
manifest, `mod.rs` for causal-LM rows, `mlm.rs` for masked-LM rows.

>>> import dataprep, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> f = d / "a.txt"
>>> _ = f.write_text("hello world. " * 200)
>>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
>>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
>>> shards = ShardSet(d / "out")
>>> shards.verify(), shards.objective, shards.seq_len
([], 'clm', 64)
>>> shards.gather([0])["input_ids"].shape
(1, 64)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dataprep import _core, storage

if TYPE_CHECKING:
    from dataprep.shard_cache import ShardCache

Array = npt.NDArray[Any]
PathLike = str | os.PathLike[str]

SCHEMA_VERSION = 1  # the shard and manifest schema this module reads (rust/src/shards/mod.rs)
MANIFEST = "manifest.json"


# --- manifest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard, as the manifest records it."""

    file: str  # name in the shard directory
    rows: int
    tokens: int  # real (non-pad) tokens
    bytes: int  # file size
    sha256: str  # of the whole file, hex


@dataclass(frozen=True)
class SplitInfo:
    """One split (`train`, `val`): its totals and its shards in row order."""

    rows: int
    tokens: int
    documents: int
    dropped_tokens: int  # tokens of a last partial row left out under `--last-row drop`
    shards: tuple[ShardInfo, ...]


@dataclass(frozen=True)
class TokenizerInfo:
    """The copy of the tokenizer kept next to the shards, and the ids the rows were built with.

    MLM shards record `[SEP]` as `eos_id` and `[CLS]` as `bos_id` (their `MlmInfo` has them all).
    """

    file: str
    sha256: str
    vocab_size: int
    eos_id: int
    bos_id: int | None
    pad_id: int


@dataclass(frozen=True)
class InputInfo:
    """One input file of the run."""

    path: str
    bytes: int


@dataclass(frozen=True)
class DocumentCounts:
    """Documents read, per split, and left out by reason (`empty`, `exact_duplicate`, ...)."""

    read: int
    bytes: int
    train: int
    val: int
    skipped: dict[str, int]
    invalid_utf8_replaced: int  # kept with invalid UTF-8 / lone surrogates replaced by U+FFFD
    # Absent from manifests written before they were counted: 0 there.
    truncated_documents: int = 0  # WikiExtractor documents without `</doc>` (kept)
    binary_skipped: int = 0  # input files skipped as binary (files, not documents)
    binary_skipped_paths: tuple[str, ...] = ()  # the first of them


@dataclass(frozen=True)
class StaticMasking:
    """How statically masked MLM shards were masked (see `dataprep.mask_batch`)."""

    dupe_factor: int  # differently masked copies of each row
    probability: float
    strategy: str
    replace_mask: float
    replace_random: float
    span_p: float | None  # span strategy only
    max_span: int | None  # span strategy only
    max_predictions: int | None
    special_ids: tuple[int, ...]  # never masked


@dataclass(frozen=True)
class MlmInfo:
    """The `mlm` block of MLM shards: special ids, NSP options, static masking (None: dynamic)."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int | None  # None when the tokenizer has no mask token (dynamic masking needs one)
    nsp_block_docs: int | None  # nsp layout only
    short_seq_prob: float | None  # nsp layout only
    static_masking: StaticMasking | None


_CHECKSUM_KEY = b'"manifest_sha256": "'


def check_manifest_bytes(raw: bytes, path: PathLike) -> None:
    """Checks a manifest's own checksum: the SHA-256 of the file with the 64 hex digits of its
    `manifest_sha256` read as zeros (the Rust writer's rule, `shards/manifest.rs`). A manifest
    without one (written before it existed) passes.

    >>> check_manifest_bytes(b'{"manifest_sha256": "' + b"1" * 64 + b'"}', "m.json")
    Traceback (most recent call last):
    ValueError: m.json: checksum mismatch: changed since it was written; rerun `dataprep tokenize` into a fresh directory
    """
    at = raw.rfind(_CHECKSUM_KEY)
    if at < 0 or len(raw) < at + len(_CHECKSUM_KEY) + 64:
        return
    start = at + len(_CHECKSUM_KEY)
    stated = raw[start : start + 64]
    zeroed = raw[:start] + b"0" * 64 + raw[start + 64 :]
    if hashlib.sha256(zeroed).hexdigest().encode() != stated:
        raise ValueError(
            f"{path}: checksum mismatch: changed since it was written; "
            "rerun `dataprep tokenize` into a fresh directory"
        )


@dataclass(frozen=True)
class Manifest:
    """A parsed `manifest.json`: what a shard directory holds and how it was made.

    Read it with `Manifest.read(directory)`; the fields mirror `rust/src/shards/manifest.rs`.
    Parsing is strict: an unknown schema version, a missing or unknown field and a value of the
    wrong type are refused with a one-line `ValueError` naming the file.

    Attributes:
        path: The `manifest.json` this was read from (shard and tokenizer files are relative to
            its directory, `directory`).
        objective: `clm` (packed causal-LM rows) or `mlm` (`[CLS] A [SEP] (B [SEP])` rows).
        layout: MLM only: `full_sentence` or `nsp`; None for CLM.
        mlm: MLM only: the special ids, NSP options and static masking; None for CLM.
        seq_len, dtype: Tokens per row and the storage type of `input_ids` (`uint16`/`uint32`).
        config: Every option of the command that made the shards (free-form).
        splits: Per split name, its totals and shards in row order.
        Others: as written by `dataprep tokenize` (versions, hashes, inputs, document counts).

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "a.txt"
    >>> _ = f.write_text("hello world. " * 200)
    >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
    >>> m = Manifest.read(d / "out")
    >>> m.objective, m.seq_len, m.dtype, list(m.splits)
    ('clm', 64, 'uint16', ['train', 'val'])
    >>> m.splits["train"].rows == sum(s.rows for s in m.splits["train"].shards)
    True
    >>> m.tokenizer_path.name, m.special_token_ids()["eos"]  # the special token comes last
    ('tok.json', 266)
    """

    path: Path
    schema_version: int
    dataprep_version: str
    objective: Literal["clm", "mlm"]
    seq_len: int
    dtype: Literal["uint16", "uint32"]
    tokenizer: TokenizerInfo
    config: dict[str, Any]
    config_hash: str
    inputs: tuple[InputInfo, ...]
    documents: DocumentCounts
    splits: dict[str, SplitInfo]
    # Written only for MLM shards (`skip_serializing_if = "Option::is_none"`).
    layout: Literal["full_sentence", "nsp"] | None = None
    mlm: MlmInfo | None = field(default=None)
    # The manifest's own checksum (`check_manifest_bytes`); empty in manifests that predate it.
    manifest_sha256: str = ""

    @classmethod
    def read(cls, path: PathLike) -> Manifest:
        """Reads and checks the manifest of a shard directory (or the `manifest.json` path).

        Besides the types, checks that each split's row and token totals are the sums over its
        shards.

        Raises:
            FileNotFoundError: There is no `manifest.json` (not a shard directory, or a run
                that has not finished).
            ValueError: It is not a valid manifest, or of another schema version.

        >>> import pathlib, tempfile
        >>> Manifest.read(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        FileNotFoundError: .../manifest.json: no manifest.json (not a directory written by ...
        """
        p = Path(path)
        mpath = p / MANIFEST if p.is_dir() or p.name != MANIFEST else p
        if not mpath.is_file():
            raise FileNotFoundError(
                f"{mpath}: no manifest.json (not a directory written by `dataprep tokenize`, "
                "or an unfinished run)"
            )
        try:
            raw = mpath.read_bytes()
            check_manifest_bytes(raw, mpath)
            data = json.loads(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{mpath}: not a valid manifest ({e})") from e
        return cls.from_dict(data, mpath)

    @classmethod
    def from_dict(cls, data: Any, path: PathLike) -> Manifest:
        """Builds a manifest from its decoded JSON; `path` is where it lives (for file paths
        and error messages). `read` is this after reading the file.

        >>> Manifest.from_dict({"schema_version": 2}, "shards/manifest.json")
        Traceback (most recent call last):
        ValueError: shards/manifest.json: schema version 2, this version of dataprep reads 1
        """
        mpath = Path(path)
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(
                f"{mpath}: schema version {data['schema_version']}, "
                f"this version of dataprep reads {SCHEMA_VERSION}"
            )
        try:
            manifest: Manifest = _parse(cls, {**_as_dict(data, ""), "path": mpath}, "")
        except _Invalid as e:
            raise ValueError(f"{mpath}: not a valid manifest ({e})") from None
        for name, sp in manifest.splits.items():
            for what, total in [("rows", sp.rows), ("tokens", sp.tokens)]:
                counted = sum(getattr(s, what) for s in sp.shards)
                if counted != total:
                    raise ValueError(
                        f"{mpath}: split {name!r} says {total} {what}, its shards {counted}"
                    )
        mlm = manifest.objective == "mlm"
        if mlm != (manifest.mlm is not None) or mlm != (manifest.layout is not None):
            raise ValueError(
                f"{mpath}: not a valid manifest (objective {manifest.objective} "
                f"{'needs' if mlm else 'takes no'} 'mlm' and 'layout' fields)"
            )
        return manifest

    @property
    def directory(self) -> Path:
        """The shard directory (shard and tokenizer file names are relative to it)."""
        return self.path.parent

    @property
    def tokenizer_path(self) -> Path:
        """The copy of the tokenizer next to the shards."""
        return self.directory / self.tokenizer.file

    @property
    def pattern(self) -> str | None:
        """The split pattern the run was given (for a `.tiktoken` tokenizer without sidecar)."""
        pattern = self.config.get("pattern")
        return pattern if isinstance(pattern, str) else None

    def split(self, name: str) -> SplitInfo:
        """The split `name`; a `ValueError` naming the file and the splits it has otherwise."""
        if name not in self.splits:
            raise ValueError(f"{self.path}: no split {name!r} (has: {', '.join(self.splits)})")
        return self.splits[name]

    def split_rows(self, name: str) -> int:
        """Rows of split `name`, 0 when there is no such split."""
        sp = self.splits.get(name)
        return 0 if sp is None else sp.rows

    def shard_paths(self, split: str) -> list[Path]:
        """The shard files of `split`, in row order."""
        return [self.directory / s.file for s in self.split(split).shards]

    def special_token_ids(self) -> dict[str, int | None]:
        """Where the manifest keeps its special ids, by name; None where absent.

        `eos`, `bos` from the tokenizer block; `cls`, `sep`, `mask` from the `mlm` block of MLM
        shards; `pad` from the `mlm` block, else the tokenizer block.
        """
        tok, mlm = self.tokenizer, self.mlm
        return {
            "eos": tok.eos_id,
            "bos": tok.bos_id,
            "pad": tok.pad_id if mlm is None else mlm.pad_id,
            "cls": None if mlm is None else mlm.cls_id,
            "sep": None if mlm is None else mlm.sep_id,
            "mask": None if mlm is None else mlm.mask_id,
        }

    def load_tokenizer(self) -> _core.Tokenizer:
        """The tokenizer copy next to the shards, with the run's split pattern."""
        if not self.tokenizer_path.is_file():
            raise FileNotFoundError(
                f"{self.tokenizer_path}: tokenizer copy listed in {self.path} is missing"
            )
        return _core.Tokenizer.from_file(os.fspath(self.tokenizer_path), self.pattern)

    def verify(
        self, splits: Sequence[str] | None = None, *, part: tuple[int, int] = (0, 1)
    ) -> list[str]:
        """Checks the tokenizer copy and every shard of `splits` (default: all) against the
        manifest.

        The tokenizer copy: exists, has the recorded SHA-256. Each shard, in this order: exists,
        has the recorded size and SHA-256, holds the recorded rows of `seq_len` tokens and
        real-token count. Reads every byte.

        Args:
            splits: The splits whose shards to check (default: all).
            part: `(k, n)`: check only files `k, k + n, k + 2n, ...` of the list (the
                tokenizer copy, then the shards in split and row order), so that `n` processes
                share the work (the trainer's ranks).

        Returns:
            One line per file that does not match, naming it; empty when all match.
        """
        k, n = part
        if not 0 <= k < n:
            raise ValueError(f"part {k} of {n} does not exist")
        problems: list[str] = []
        tok = self.tokenizer_path
        if k == 0:
            if not tok.is_file():
                problems.append(f"{tok}: tokenizer copy missing (listed in the manifest)")
            elif (digest := sha256_file(tok)) != self.tokenizer.sha256:
                problems.append(f"{tok}: {_mismatch(digest, self.tokenizer.sha256)}")
        infos = [info for name in (self.splits if splits is None else splits)
                 for info in self.split(name).shards]  # fmt: skip
        for i, info in enumerate(infos, start=1):
            if i % n != k:
                continue
            problem = _check_shard(self.directory / info.file, info, self.seq_len)
            if problem is not None:
                problems.append(problem)
        return problems


class _Invalid(Exception):
    """A manifest field that does not parse; the message names the field."""


def _as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where or 'the manifest'} is {_kind(value)}, expected an object")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({json.dumps(value)[:40]})"


def _parse(tp: Any, value: Any, where: str) -> Any:
    """`value` (decoded JSON) as type `tp`: a dataclass of this module (every field present
    unless it has a default, none other), `X | None`, `Literal`, `dict[str, X]`,
    `tuple[X, ...]`, `int`, `float`, `str` or `Any`. `where` is the field's dotted path."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        obj = _as_dict(value, where)
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(obj) - set(fields))
        if unknown:
            raise _Invalid(f"unknown field {_join(where, unknown[0])!r}")
        kw: dict[str, Any] = {}
        for name, f in fields.items():
            if name in obj:
                kw[name] = _parse(hints[name], obj[name], _join(where, name))
            elif f.default is dataclasses.MISSING:
                raise _Invalid(f"missing field {_join(where, name)!r}")
        return tp(**kw)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _parse(inner, value, where)
    if tp is Any or (tp is Path and isinstance(value, Path)):  # `Manifest.path`, never JSON
        return value
    if origin is Literal:
        if value not in args:
            raise _Invalid(f"{where} is {_kind(value)}, expected one of {', '.join(args)}")
        return value
    if origin is dict:
        return {k: _parse(args[1], v, _join(where, k)) for k, v in _as_dict(value, where).items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise _Invalid(f"{where} is {_kind(value)}, expected a list")
        return tuple(_parse(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    # bool is an int to Python, never to the writer.
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise _Invalid(f"{where} is {_kind(value)}, expected {getattr(tp, '__name__', tp)}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (shards, tokenizer copies, checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(got: str, want: str) -> str:
    return f"checksum mismatch (sha256 {got[:12]}…, the manifest says {want[:12]}…)"


def _check_shard(path: Path, info: ShardInfo, seq_len: int) -> str | None:
    """What is wrong with one shard file against its manifest entry, or None."""
    if not path.is_file():
        return f"{path}: missing (listed in the manifest)"
    size = path.stat().st_size
    if size != info.bytes:
        return f"{path}: {size} bytes, the manifest says {info.bytes}"
    if (digest := sha256_file(path)) != info.sha256:
        return f"{path}: {_mismatch(digest, info.sha256)}"
    try:
        table = open_shard(path)
    except (pa.ArrowInvalid, OSError) as e:
        return f"{path}: not a readable Arrow IPC stream ({e})"
    if table.num_rows != info.rows:
        return f"{path}: {table.num_rows} rows, the manifest says {info.rows}"
    width = table.schema.field("input_ids").type.list_size
    if width != seq_len:
        return f"{path}: rows of {width} tokens, the manifest says {seq_len}"
    tokens = int(np.sum(table.column("n_tokens").to_numpy(), dtype=np.int64))
    if tokens != info.tokens:
        return f"{path}: {tokens} tokens, the manifest says {info.tokens}"
    return None


# --- single shard files -------------------------------------------------------------------


def open_shard(path: PathLike) -> pa.Table:
    """Memory-maps a shard file (zero-copy) as a `pyarrow.Table`, one chunk per record batch.

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "a.txt"
    >>> _ = f.write_text("hello world. " * 200)
    >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
    >>> open_shard(d / "out" / "train-00000.arrow").column_names
    ['input_ids', 'doc_starts', 'n_tokens']
    """
    return pa.ipc.open_stream(pa.memory_map(os.fspath(path))).read_all()


def input_ids(table: pa.Table) -> Array:
    """The `(rows, seq_len)` token array of a shard table.

    Zero-copy when the table is one record batch (shards of up to 1,024 rows); a table of
    several is copied into one array once. `ShardSet.iter_batches` never copies.

    >>> ids = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4], pa.uint16()), 2)
    >>> input_ids(pa.table({"input_ids": ids})).tolist()
    [[1, 2], [3, 4]]
    """
    col = table.column("input_ids").combine_chunks()
    width = col.type.list_size
    ids: Array = col.flatten().to_numpy(zero_copy_only=True).reshape(-1, width)
    return ids


# --- a split's shards ---------------------------------------------------------------------


# A column of one record batch as numpy: `(rows, width)` for fixed-size lists, `(rows,)` for
# scalars, `(offsets, values)` for variable-length lists (`doc_starts`).
_View = Array | tuple[Array, Array]


@dataclass
class _Shard:
    """An opened shard: record-batch row offsets and zero-copy numpy views of its columns."""

    starts: Array  # (batches + 1,) first row of each record batch, then the row count
    columns: dict[str, list[_View]]  # name -> one view per record batch


def _column_view(arr: pa.Array) -> _View:
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        # flatten() honours the array offset (.values does not).
        fixed: Array = arr.flatten().to_numpy(zero_copy_only=True).reshape(-1, t.list_size)
        return fixed
    if pa.types.is_list(t):
        return arr.offsets.to_numpy(), arr.values.to_numpy(zero_copy_only=True)
    scalar: Array = arr.to_numpy(zero_copy_only=True)
    return scalar


class ShardSet:
    """One split of a shard directory written by `dataprep tokenize`, as one table of rows.

    Global row id `i` is the `i`-th row of the split's shards concatenated in manifest order
    (the trainer's `sample_index`). Opening checks the manifest and that every shard file is
    there; `verify()` checks their contents. Shards are memory-mapped on first use (zero-copy
    numpy views of the Arrow buffers), and checked against the manifest's row count and
    `seq_len` then. A pickled `ShardSet` (a DataLoader worker under `spawn`) carries only the
    manifest and opens its own maps.

    Args:
        directory: The shard directory (holding `manifest.json`), or its `s3://bucket/prefix`
            URL: then the manifest is read from the bucket and each shard is downloaded into
            a local cache and verified before its first use (`dataprep.shard_cache`).
        split: `train`, `val`, or any split the manifest has.
        cache: Remote sets: the cache root (default `shard_cache.default_root()`).

    Attributes:
        directory, split, manifest: Where and what was read (`manifest` is a `Manifest`).
        info: The split's `SplitInfo` (totals, shards).
        num_rows, seq_len, objective (`clm`/`mlm`), layout (`full_sentence`/`nsp`, None for
            CLM), static_masking (the shards hold masked input and a `labels` column),
            vocab_size, dtype (of `input_ids`).
        pad_id, eos_id, bos_id, cls_id, sep_id, mask_id: Special ids from the manifest (None
            where the tokenizer or objective has none; MLM shards record `[SEP]` as eos and
            `[CLS]` as bos).
        tokenizer_path: The copy of the tokenizer next to the shards.
        files: The split's shard paths (in the cache directory for a remote set).
        remote: The `ShardCache` of a remote set, None for a local one.

    Raises:
        FileNotFoundError: No manifest, or a shard it lists is missing (the message names it).
        ValueError: An invalid manifest, or no such split.

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "a.txt"
    >>> _ = f.write_text("hello world. " * 200)
    >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
    >>> s = ShardSet(d / "out")
    >>> len(s) == s.manifest.splits["train"].rows, s.files[0].name
    (True, 'train-00000.arrow')
    >>> s.decode(0)[:24]
    'hello world. hello world'
    """

    def __init__(
        self, directory: PathLike, split: str = "train", *, cache: PathLike | None = None
    ) -> None:
        # An `s3://` set is read through a local cache (dataprep/shard_cache.py): its manifest
        # copy and shards live there, each shard fetched and verified before its first use.
        self.remote: ShardCache | None = None
        if storage.is_remote(directory):
            from dataprep.shard_cache import ShardCache

            self.remote = ShardCache(os.fspath(directory), cache)
            self.manifest = self.remote.manifest
        elif cache is not None:
            raise ValueError(f"{directory}: a shard cache is for s3:// shard sets, not local ones")
        else:
            self.manifest = Manifest.read(directory)
        self.directory = self.manifest.directory
        self.split = split
        m = self.manifest
        self.info = m.split(split)
        ids = m.special_token_ids()
        self.objective = m.objective
        self.seq_len = m.seq_len
        self.dtype = np.dtype(m.dtype)
        self.layout = m.layout
        self.static_masking = m.mlm is not None and m.mlm.static_masking is not None
        self.vocab_size = m.tokenizer.vocab_size
        self.eos_id, self.bos_id = ids["eos"], ids["bos"]
        self.pad_id, self.cls_id, self.sep_id = ids["pad"], ids["cls"], ids["sep"]
        self.mask_id = ids["mask"]
        self.tokenizer_path = m.tokenizer_path
        self.files = m.shard_paths(split)
        counts = np.array([s.rows for s in self.info.shards], dtype=np.int64)
        # Row id -> shard: shard k holds rows starts[k] .. starts[k + 1].
        self._starts: Array = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_rows = int(self._starts[-1])
        missing = [f for f in self.files if not f.is_file()] if self.remote is None else []
        if self.remote is not None:
            self.remote.check_space(self.info.shards)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"{missing[0]}: shard listed in {m.path} is missing{more}")
        self._open: dict[int, _Shard] = {}
        self._special_ids: tuple[int, ...] | None = None
        self._tokenizer: _core.Tokenizer | None = None

    def __len__(self) -> int:
        return self.num_rows

    @property
    def source(self) -> str:
        """Where the set is read from: its URL (remote) or its directory (local)."""
        return self.remote.url if self.remote is not None else os.fspath(self.directory)

    def fetch_ahead(self, rows: Array | None = None) -> None:
        """Remote sets: starts downloading the split's shards in the background, those holding
        `rows` first, in the order these rows first appear, then the others in manifest order.
        Nothing for a local set.

        Args:
            rows: Global row ids in the order a loader will read them (a prefix is enough).
        """
        if self.remote is None:
            return
        order: list[int] = []
        if rows is not None and len(rows):
            shard_of = np.searchsorted(self._starts, np.asarray(rows), side="right") - 1
            ks, first = np.unique(shard_of, return_index=True)
            order = ks[np.argsort(first, kind="stable")].tolist()
        seen = set(order)
        order += [k for k in range(len(self.files)) if k not in seen]
        self.remote.fetch_ahead([self.info.shards[k] for k in order])

    def __repr__(self) -> str:
        return (
            f"ShardSet({self.source!r}, split={self.split!r}: {self.num_rows} rows "
            f"x {self.seq_len}, {self.objective}, {len(self.files)} shards)"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # memory maps do not pickle; each process opens its own
        state["_tokenizer"] = None
        return state

    # --- the tokenizer ----------------------------------------------------------------------

    @property
    def tokenizer(self) -> _core.Tokenizer:
        """The tokenizer copy next to the shards (loaded once)."""
        if self._tokenizer is None:
            self._tokenizer = self.manifest.load_tokenizer()
        return self._tokenizer

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Every special id of the tokenizer plus the manifest's (never masked, never drawn as
        a random replacement), sorted. Reads the tokenizer copy once.

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> ShardSet(d / "out").special_ids  # 267 ids trained: the special token is the last
        (266,)
        """
        if self._special_ids is None:
            ids = {i for i in self.manifest.special_token_ids().values() if i is not None}
            ids.update(i for _, i in self.tokenizer.special_tokens)
            self._special_ids = tuple(sorted(ids))
        return self._special_ids

    # --- checks -----------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Checks each shard of the split against the manifest: size, SHA-256, row count and
        width, real-token count. Reads every byte.

        Returns:
            One line per shard that does not match, naming the file; empty when all match.

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> s = ShardSet(d / "out")
        >>> s.verify()
        []
        >>> with open(s.files[0], "r+b") as f:
        ...     _ = f.seek(-100, 2)
        ...     _ = f.write(b"x")
        >>> s.verify()  # doctest: +ELLIPSIS
        ['.../train-00000.arrow: checksum mismatch (sha256 ...)']
        """
        if self.remote is not None:
            for info in self.info.shards:  # fetched (and hashed) first: a mismatch raises
                self.remote.shard(info)
        return self.manifest.verify([self.split])

    # --- reading ----------------------------------------------------------------------------

    def _shard(self, k: int) -> _Shard:
        shard = self._open.get(k)
        if shard is not None:
            return shard
        path = self.files[k]
        if self.remote is not None:
            self.remote.shard(self.info.shards[k])
        mm = pa.memory_map(os.fspath(path))
        try:
            reader = pa.ipc.open_stream(mm)
            names = reader.schema.names
            batches = list(reader)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{path}: not a readable Arrow IPC stream ({e})") from e
        finally:
            # NOTE: the arrays keep the mapping alive; closing releases the file descriptor, which
            # matters with thousands of shards opened by every worker of every rank.
            mm.close()
        sizes = [b.num_rows for b in batches]
        rows = sum(sizes)
        expected = int(self._starts[k + 1] - self._starts[k])
        if rows != expected:
            raise ValueError(f"{path}: {rows} rows, the manifest says {expected}")
        shard = _Shard(
            starts=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            columns={n: [_column_view(b.column(n)) for b in batches] for n in names},
        )
        if "input_ids" in shard.columns and batches:
            ids = shard.columns["input_ids"][0]
            width = ids[1].shape[0] if isinstance(ids, tuple) else ids.shape[1]
            if width != self.seq_len:
                raise ValueError(
                    f"{path}: rows of {width} tokens, the manifest says {self.seq_len}"
                )
        self._open[k] = shard
        return shard

    def table(self, shard: int) -> pa.Table:
        """Shard number `shard` of the split as a memory-mapped `pyarrow.Table` (zero-copy)."""
        if self.remote is not None:
            self.remote.shard(self.info.shards[shard])
        return open_shard(self.files[shard])

    def locate(self, row: int) -> tuple[Path, int]:
        """The shard file that holds global row `row`, and the row's index in it.

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> path, local = ShardSet(d / "out").locate(1)
        >>> path.name, local
        ('train-00000.arrow', 1)
        """
        if not 0 <= row < self.num_rows:
            raise IndexError(f"row {row} out of range for {self.num_rows} rows of {self.split!r}")
        k = int(np.searchsorted(self._starts, row, side="right") - 1)
        return self.files[k], row - int(self._starts[k])

    def _views(self, columns: Sequence[str] | None) -> Iterator[tuple[int, dict[str, _View]]]:
        """`(rows, {name: view})` per record batch of the split, in row order."""
        for k in range(len(self.files)):
            shard = self._shard(k)
            names = list(shard.columns) if columns is None else list(columns)
            for name in names:
                if name not in shard.columns:
                    raise KeyError(
                        f"{self.files[k]}: no column {name!r} (has: {', '.join(shard.columns)})"
                    )
            for j in range(len(shard.starts) - 1):
                rows = int(shard.starts[j + 1] - shard.starts[j])
                yield rows, {name: shard.columns[name][j] for name in names}

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Array]]:
        """The split's record batches in row order, as zero-copy numpy views of the mapped files.

        Fixed-size list columns come as `(rows, seq_len)` arrays, scalar columns as `(rows,)`;
        a variable-length list column (`doc_starts`) as two entries: `doc_starts` (the values of
        all rows of the batch) and `doc_starts_offsets` (`rows + 1` offsets into them). The
        views are read-only and keep their shard mapped while referenced.

        Args:
            columns: Column names to give (default: all of the schema).

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> b = next(ShardSet(d / "out").iter_batches(["input_ids", "doc_starts"]))
        >>> b["input_ids"].shape[1], b["input_ids"].dtype, b["input_ids"].flags.writeable
        (64, dtype('uint16'), False)
        >>> b["doc_starts"].tolist(), b["doc_starts_offsets"][:3].tolist()
        ([0], [0, 1, 1])
        """
        for _, views in self._views(columns):
            out: dict[str, Array] = {}
            for name, view in views.items():
                if isinstance(view, tuple):
                    out[f"{name}_offsets"], out[name] = view
                else:
                    out[name] = view
            yield out

    def iter_rows(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The split's rows in order, one dict per row: zero-copy views for list columns
        (`(seq_len,)` for fixed-size lists, the row's offsets for `doc_starts`), Python ints for
        scalar columns.

        Args:
            columns: Column names to give (default: all of the schema).

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> row = next(ShardSet(d / "out").iter_rows())
        >>> row["input_ids"].shape, row["doc_starts"].tolist(), row["n_tokens"]
        ((64,), [0], 64)
        """
        for rows, views in self._views(columns):
            for r in range(rows):
                row: dict[str, Any] = {}
                for name, view in views.items():
                    if isinstance(view, tuple):
                        offsets, values = view
                        row[name] = values[offsets[r] : offsets[r + 1]]
                    elif view.ndim == 1:
                        row[name] = view[r].item()
                    else:
                        row[name] = view[r]
                yield row

    def documents(self) -> Iterator[Array]:
        """Causal-LM shards: each document's tokens as packed (with the BOS/EOS the packer
        added), in corpus order, rebuilt from `doc_starts` across row boundaries.

        A document within one row is a zero-copy view, one that spans rows a fresh array. A
        split written with `--last-row drop` ends with the part of its last document that was
        kept. MLM rows record no document boundaries (a row is `[CLS] A [SEP] (B [SEP])` of
        sentences): iterate `iter_rows()` there; this raises a `ValueError`.

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> s = ShardSet(d / "out")
        >>> docs = list(s.documents())
        >>> len(docs), s.tokenizer.decode(docs[0].tolist()).endswith("world. <|endoftext|>")
        (1, True)
        >>> docs[0].size == s.manifest.splits["train"].tokens
        True
        """
        if self.objective != "clm":
            raise ValueError(
                f"{self.directory}: {self.objective} rows record no document boundaries "
                "(only causal-LM rows do); iterate rows instead"
            )
        pending: list[Array] = []  # the pieces of the document being read
        for batch in self.iter_batches(["input_ids", "doc_starts", "n_tokens"]):
            ids, n = batch["input_ids"], batch["n_tokens"]
            starts, offsets = batch["doc_starts"], batch["doc_starts_offsets"]
            for r in range(n.size):
                tokens = ids[r, : n[r]]
                cuts = starts[offsets[r] : offsets[r + 1]].tolist()
                if not cuts:
                    pending.append(tokens)
                    continue
                if cuts[0] > 0:
                    pending.append(tokens[: cuts[0]])
                for a, b in zip(cuts, [*cuts[1:], len(tokens)], strict=True):
                    if pending:
                        yield _joined(pending)
                    pending = [tokens[a:b]]
        if pending:
            yield _joined(pending)

    def decode(self, row: int) -> str:
        """The text of global row `row`: its real tokens (`n_tokens`) decoded with the shards'
        tokenizer, special tokens included."""
        ids = self.gather([row], ["input_ids", "n_tokens"])
        return self.tokenizer.decode(ids["input_ids"][0, : int(ids["n_tokens"][0])].tolist())

    def samples(self, rows: int = 2) -> list[tuple[str, int, str]]:
        """The first `rows` rows of the split decoded (what `dataprep inspect` shows), as
        `(shard file name, row in that shard, text)`.

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> [(name, row, text[:11]) for name, row, text in ShardSet(d / "out").samples(2)]
        [('train-00000.arrow', 0, 'hello world'), ('train-00000.arrow', 1, ' world. hel')]
        """
        out = []
        for row in range(min(rows, self.num_rows)):
            path, local = self.locate(row)
            out.append((path.name, local, self.decode(row)))
        return out

    def gather(
        self, row_ids: Sequence[int] | Array, columns: Sequence[str] | None = None
    ) -> dict[str, Array]:
        """The given rows (global ids, any order, repeats allowed), as fresh numpy arrays.

        Rows are read shard by shard and record batch by record batch in ascending order and
        returned in the requested order: one fancy index per column per touched record batch.
        Fixed-size list columns come back `(rows, seq_len)`, scalar columns `(rows,)`, and the
        `doc_starts` list column as a `(rows, seq_len)` uint8 mask, 1 where a document begins.

        Args:
            row_ids: Global row ids in `0 .. num_rows`.
            columns: Column names to read (default: all of the schema).

        >>> import dataprep, pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> f = d / "a.txt"
        >>> _ = f.write_text("hello world. " * 200)
        >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
        >>> _ = dataprep.tokenize(f, d / "tok.json", d / "out", seq_len=64)
        >>> rows = ShardSet(d / "out").gather([2, 0, 2])
        >>> rows["input_ids"].shape, rows["doc_starts"][1].nonzero()[0].tolist()
        ((3, 64), [0])
        """
        rows = np.asarray(row_ids, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            bad = rows[(rows < 0) | (rows >= self.num_rows)][0]
            raise IndexError(f"row {bad} out of range for {self.num_rows} rows of {self.split!r}")
        if self.num_rows == 0:
            raise IndexError(f"split {self.split!r} has no rows")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        shard_of = np.searchsorted(self._starts, srt, side="right") - 1
        # Dtypes and widths from a shard that has rows (the first requested, or row 0's).
        probe = self._shard(
            int(np.searchsorted(self._starts, srt[0] if rows.size else 0, "right") - 1)
        )
        names = list(columns) if columns is not None else list(probe.columns)
        out: dict[str, Array] = {}
        for name in names:
            if name not in probe.columns:
                raise KeyError(f"{self.directory}: the {self.split} shards have no column {name!r}")
            view = probe.columns[name][0]
            if isinstance(view, tuple):
                out[name] = np.zeros((rows.size, self.seq_len), dtype=np.uint8)
            else:
                out[name] = np.empty((rows.size, *view.shape[1:]), dtype=view.dtype)
        for a, b in _runs(shard_of):
            k = int(shard_of[a])
            shard = self._shard(k)
            local = srt[a:b] - self._starts[k]
            batch_of = np.searchsorted(shard.starts, local, side="right") - 1
            for c, d in _runs(batch_of):
                j = int(batch_of[c])
                loc = local[c:d] - shard.starts[j]
                dest = order[a + c : a + d]
                for name in names:
                    view = shard.columns[name][j]
                    if isinstance(view, tuple):
                        _scatter_starts(out[name], dest, loc, *view)
                    else:
                        out[name][dest] = view[loc]
        return out


def _joined(pieces: list[Array]) -> Array:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _runs(keys: Array) -> Iterator[tuple[int, int]]:
    """`(start, stop)` of each run of equal values in a sorted array."""
    if keys.size == 0:
        return
    if keys[0] == keys[-1]:  # the common case: one shard, one record batch
        yield 0, keys.size
        return
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    yield from zip([0, *cuts.tolist()], [*cuts.tolist(), keys.size], strict=True)


def _scatter_starts(mask: Array, dest: Array, loc: Array, offsets: Array, values: Array) -> None:
    """Sets `mask[dest[i], v] = 1` for each offset `v` in list row `loc[i]`, without a row loop."""
    lo = offsets[loc].astype(np.int64)
    lens = offsets[loc + 1].astype(np.int64) - lo
    total = int(lens.sum())
    if total:
        # Index of each list element in `values`: row i's run starts at lo[i].
        first = np.cumsum(lens) - lens
        idx = np.repeat(lo - first, lens) + np.arange(total)
        mask[np.repeat(dest, lens), values[idx]] = 1


__all__ = [
    "SCHEMA_VERSION",
    "DocumentCounts",
    "InputInfo",
    "Manifest",
    "MlmInfo",
    "ShardInfo",
    "ShardSet",
    "SplitInfo",
    "StaticMasking",
    "TokenizerInfo",
    "input_ids",
    "open_shard",
]
