"""Exporting causal-LM shards for other trainers: Megatron-LM, MosaicML streaming, nanoGPT-style
flat token files, Parquet (`dataprep export`).

What goes out is the document token stream of each split: causal shards are documents
(`[BOS] tokens [EOS]` as packed) concatenated and cut into rows, and each row's `doc_starts`
records where documents begin in it; so the rows' real tokens (`n_tokens`) in order are the
documents in corpus order, and `doc_starts` gives their boundaries exactly. Each format gets one
document per record (Megatron sequence, MDS sample, Parquet row, offsets entry). A split written
with `--last-row drop` ends with the part of its last document that was kept. MLM shards are
refused: their rows are `[CLS] A [SEP] (B [SEP])` of sentences (masked, for static masking),
with no document boundaries, and none of these formats has a place for that layout.

The formats (one set of files per split, `train` and `val`):

    megatron  `<split>.bin` + `<split>.idx`: Megatron-LM's `IndexedDataset` (the `MMIDIDX` index
              of `megatron/core/datasets/indexed_dataset.py`), one sequence per document and
              one document per sequence; dtype uint16 for vocabularies below 65,500 ids,
              int32 above (Megatron's `DType.optimal_dtype`; it has no uint32 code): the bytes
              `tools/preprocess_data.py --append-eod` writes; `--data-path OUT/train`.
    mds       `<split>/index.json` + `<split>/shard.NNNNN.mds`: MosaicML streaming MDS, one
              column `input_ids` (`ndarray:uint16` or `ndarray:uint32`), uncompressed, shards
              of at most `mds_shard_bytes` (the bytes `streaming.MDSWriter` would write).
    bin       `<split>.bin` (the tokens, flat uint16 or uint32, nanoGPT's `np.memmap` layout),
              `<split>.offsets` (little-endian uint64, documents + 1 entries: document i is
              tokens `offsets[i]:offsets[i+1]`) and `header.json` (dtype, vocab size, the
              tokenizer's SHA-256 and special ids, per split its token and document counts).
    parquet   `<split>.parquet`: one row per document, column `input_ids` (`list<uint16>` or
              `list<uint32>`), one row group per record batch of the shards.

The output directory, like every output of dataprep: one writer at a time (the lock file
`lock.rs` uses, so an export and a `tokenize` exclude each other too); every file written under
a temporary name and renamed when complete; `export.json` written last, with the SHA-256 of
every file and its own checksum. A directory holding anything else, or an export of other shards
or another format, is refused. A killed run leaves its finished splits (in the journal,
`.export-journal.json`) and temporary files; a rerun removes the temporary files, checks the
finished splits against their recorded SHA-256 and writes the rest: the bytes are the same as
an uninterrupted run's (nothing depends on time, host or thread count). A rerun of a finished
export checks it and writes nothing.

`--out s3://bucket/prefix` (every format): the export is built in the local cache
(`remote.local_path`, resumable like any output directory) and uploaded as a committed set: the
data objects first, then each split's index (Megatron `.idx`, MDS `index.json`, bin
`header.json`), `export.json` last; so a reader that finds an index finds the objects it names,
complete (`streaming.StreamingDataset(remote="s3://bucket/prefix", ...)` reads the MDS export).
The prefix must be empty or hold an export of the same shards and options.

Memory is bounded: one record batch of the shards at a time (1,024 rows x seq_len tokens, read
from the file, not mapped), plus the document being assembled (mds, parquet: the longest
document), plus one MDS shard (`mds_shard_bytes`, 64 MiB by default). Megatron's index grows
with the documents (20 bytes each), so its lengths go to a temporary file and the index is
assembled from it in chunks.

>>> import dataprep, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> f = d / "a.txt"
>>> _ = f.write_text("hello world. " * 200)
>>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
>>> _ = dataprep.tokenize(f, d / "tok.json", d / "shards", seq_len=64)
>>> summary = export(d / "shards", d / "bin", "bin")
>>> summary["splits"]["train"]["documents"], sorted(p.name for p in (d / "bin").iterdir())
(1, ['export.json', 'header.json', 'train.bin', 'train.offsets'])
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

import dataprep
from dataprep import remote, storage
from dataprep.shards import MANIFEST, Manifest, check_manifest_bytes, sha256_file

Array = npt.NDArray[Any]
PathLike = str | os.PathLike[str]
Format = Literal["megatron", "mds", "bin", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)

EXPORT_MANIFEST = "export.json"
JOURNAL = ".export-journal.json"
LOCK_FILE = ".dataprep.lock"  # the name `rust/src/lock.rs` uses: one writer per directory
EXPORT_VERSION = 1  # of the layout below; a change that changes bytes bumps it

# Megatron-LM `indexed_dataset.py`: `_INDEX_HEADER`, version 1, and the `DType` codes we write.
MEGATRON_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_DTYPE_CODES = {"uint16": 8, "int32": 4}
MEGATRON_UINT16_BELOW = 65500  # `DType.optimal_dtype`: uint16 for fewer ids, else int32

# MosaicML streaming: `MDSWriter`'s default shard size limit and its index layout version.
MDS_SHARD_BYTES = 1 << 26
MDS_MIN_SHARD_BYTES = 1 << 10
_MDS_SHAPE_DTYPES = ("uint8", "uint16", "uint32", "uint64")  # NDArray shape dtype codes 0..3

_TMP = re.compile(r"^\..+\.tmp-\d+$")
_CHUNK = 1 << 20  # elements per chunk when assembling Megatron's index


class ExportError(ValueError):
    """What `export` refuses, in one line naming the option, file or component."""


# --- the token stream -------------------------------------------------------------------


def token_stream(manifest: Manifest, split: str) -> Iterator[tuple[Array, Array]]:
    """A causal split as `(tokens, starts)` per record batch: the real tokens of the batch's
    rows in order (1-D, the shards' dtype) and the positions in `tokens` where a document
    begins (int64, increasing). Reads one record batch at a time (not memory-mapped, so the
    resident memory is one batch).

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "a.txt"
    >>> _ = f.write_text("hello world. " * 200)
    >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(f, d / "tok.json", d / "shards", seq_len=64)
    >>> m = Manifest.read(d / "shards")
    >>> tokens, starts = next(token_stream(m, "train"))
    >>> starts.tolist(), tokens.size == m.splits["train"].tokens
    ([0], True)
    """
    seq_len = manifest.seq_len
    first = True
    for path in manifest.shard_paths(split):
        try:
            reader = pa.ipc.open_stream(pa.OSFile(os.fspath(path)))
            for batch in reader:
                ids_col = batch.column("input_ids")
                if ids_col.type.list_size != seq_len:
                    raise ExportError(
                        f"{path}: rows of {ids_col.type.list_size} tokens, "
                        f"the manifest says {seq_len}"
                    )
                ids = ids_col.flatten().to_numpy(zero_copy_only=True).reshape(-1, seq_len)
                n = batch.column("n_tokens").to_numpy(zero_copy_only=True).astype(np.int64)
                ds = batch.column("doc_starts")
                offsets = ds.offsets.to_numpy().astype(np.int64)
                values = ds.values.to_numpy(zero_copy_only=True)[offsets[0] : offsets[-1]]
                if bool((n == seq_len).all()):
                    tokens = ids.reshape(-1)
                else:
                    tokens = ids[np.arange(seq_len)[None, :] < n[:, None]]
                row_start = np.cumsum(n) - n
                starts = np.repeat(row_start, np.diff(offsets)) + values.astype(np.int64)
                if first and (starts.size == 0 or starts[0] != 0):
                    raise ExportError(
                        f"{path}: the split {split!r} does not begin at a document start"
                    )
                first = False
                yield tokens, starts
        except (pa.ArrowInvalid, OSError, KeyError) as e:
            raise ExportError(f"{path}: not a readable causal-LM shard ({e})") from e


class _Documents:
    """Turns the token stream into whole documents: `feed` returns the documents completed by a
    chunk as `(values, offsets)` (document i is `values[offsets[i]:offsets[i+1]]`); `finish`
    returns the last one. Keeps only the open document's pieces."""

    def __init__(self) -> None:
        self.pending: list[Array] = []

    def feed(self, tokens: Array, starts: Array) -> tuple[Array, Array] | None:
        held = sum(p.size for p in self.pending)
        cuts = starts + held
        if held == 0 and cuts.size and cuts[0] == 0:
            cuts = cuts[1:]  # a document that starts the chunk closes nothing
        if cuts.size == 0:
            self.pending.append(tokens)
            return None
        values = np.concatenate([*self.pending, tokens]) if self.pending else tokens
        last = int(cuts[-1])
        self.pending = [values[last:].copy()]  # a copy: the chunk's buffer can go
        offsets = np.concatenate([[0], cuts]).astype(np.int64)
        return values[:last], offsets

    def finish(self) -> tuple[Array, Array] | None:
        pieces, self.pending = self.pending, []
        if not pieces:
            return None
        values = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        return values, np.array([0, values.size], dtype=np.int64)


# --- writers: one per format and split ----------------------------------------------------


def _tmp(path: Path) -> Path:
    """The temporary name of an output (the Rust side's `fsutil::temp_path` rule)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


class _Writer:
    """Writes one split in one format under temporary names; `commit` renames them."""

    def __init__(self, out: Path, split: str, dtype: np.dtype[Any]) -> None:
        self.out, self.split, self.dtype = out, split, dtype
        self.tokens = 0
        self.documents = 0
        self._files: list[tuple[Path, Path]] = []  # (temporary, final)

    def _open(self, name: str) -> IO[bytes]:
        final = self.out / name
        final.parent.mkdir(exist_ok=True)
        tmp = _tmp(final)
        self._files.append((tmp, final))
        return open(tmp, "wb")

    def write(self, tokens: Array, starts: Array) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def commit(self) -> list[Path]:
        """Syncs and renames every file of the split to its final name; returns the names."""
        for tmp, _ in self._files:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        for tmp, final in self._files:
            os.replace(tmp, final)
        return [final for _, final in self._files]

    def abort(self) -> None:
        for tmp, _ in self._files:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


class _StreamWriter(_Writer):
    """Shared by megatron and bin: the tokens go straight to `<split>.bin`; the document starts
    (global token positions) to a side file as they come."""

    def __init__(self, out: Path, split: str, dtype: np.dtype[Any], file_dtype: str) -> None:
        super().__init__(out, split, dtype)
        self.file_dtype = np.dtype(file_dtype)
        self.bin = self._open(f"{split}.bin")

    def write(self, tokens: Array, starts: Array) -> None:
        self.bin.write(np.ascontiguousarray(tokens, dtype=self.file_dtype).tobytes())
        self.on_starts(starts + self.tokens)
        self.tokens += tokens.size
        self.documents += starts.size

    def on_starts(self, starts: Array) -> None:
        raise NotImplementedError


class _MegatronWriter(_StreamWriter):
    def __init__(self, out: Path, split: str, dtype: np.dtype[Any], vocab_size: int) -> None:
        # Megatron's own choice (`DType.optimal_dtype`, what preprocess_data.py writes): uint16
        # below 65,500 ids, else int32 (it has no uint32).
        file_dtype = _megatron_dtype(vocab_size)
        super().__init__(out, split, dtype, file_dtype)
        self.idx = self._open(f"{split}.idx")
        # Sequence lengths, spilled: the index needs all of them before the pointers.
        self.lengths_path = _tmp(out / f"{split}.lengths")
        self.lengths = open(self.lengths_path, "w+b")  # noqa: SIM115
        self.open_start: int | None = None

    def on_starts(self, starts: Array) -> None:
        if starts.size == 0:
            return
        bounds = starts if self.open_start is None else np.concatenate([[self.open_start], starts])
        self.lengths.write(np.diff(bounds).astype("<i4").tobytes())
        self.open_start = int(starts[-1])

    def close(self) -> None:
        if self.open_start is not None:
            self.lengths.write(np.array([self.tokens - self.open_start], "<i4").tobytes())
        self.bin.close()
        n = self.documents
        itemsize = self.file_dtype.itemsize
        idx = self.idx
        idx.write(MEGATRON_HEADER)
        idx.write(struct.pack("<Q", 1))
        idx.write(struct.pack("<B", MEGATRON_DTYPE_CODES[self.file_dtype.name]))
        idx.write(struct.pack("<Q", n))  # sequences: one per document
        idx.write(struct.pack("<Q", n + 1))  # document_indices: 0, 1, ..., n
        self.lengths.seek(0)
        while chunk := self.lengths.read(4 * _CHUNK):
            idx.write(chunk)
        self.lengths.seek(0)
        pointer = 0
        while chunk := self.lengths.read(4 * _CHUNK):
            lengths = np.frombuffer(chunk, "<i4").astype(np.int64) * itemsize
            ends = np.cumsum(lengths) + pointer
            idx.write((ends - lengths).astype("<i8").tobytes())
            pointer = int(ends[-1])
        for a in range(0, n + 1, _CHUNK):
            idx.write(np.arange(a, min(a + _CHUNK, n + 1), dtype="<i8").tobytes())
        idx.close()
        self.lengths.close()
        self.lengths_path.unlink()

    def abort(self) -> None:
        super().abort()
        with contextlib.suppress(FileNotFoundError):
            self.lengths_path.unlink()


class _BinWriter(_StreamWriter):
    def __init__(self, out: Path, split: str, dtype: np.dtype[Any], vocab_size: int) -> None:
        super().__init__(out, split, dtype, dtype.name)
        self.offsets = self._open(f"{split}.offsets")

    def on_starts(self, starts: Array) -> None:
        self.offsets.write(starts.astype("<u8").tobytes())

    def close(self) -> None:
        self.offsets.write(np.array([self.tokens], "<u8").tobytes())
        self.offsets.close()
        self.bin.close()


class _ParquetWriter(_Writer):
    def __init__(self, out: Path, split: str, dtype: np.dtype[Any], vocab_size: int) -> None:
        super().__init__(out, split, dtype)
        self.docs = _Documents()
        self.value_type = pa.from_numpy_dtype(dtype)
        schema = pa.schema([pa.field("input_ids", pa.list_(self.value_type), nullable=False)])
        self.file = self._open(f"{split}.parquet")
        self.writer = pq.ParquetWriter(self.file, schema)
        self.schema = schema

    def _put(self, done: tuple[Array, Array] | None) -> None:
        if done is None:
            return
        values, offsets = done
        column = pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), pa.array(values, self.value_type)
        )
        self.writer.write_table(pa.Table.from_arrays([column], schema=self.schema))
        self.documents += offsets.size - 1

    def write(self, tokens: Array, starts: Array) -> None:
        self.tokens += tokens.size
        self._put(self.docs.feed(tokens, starts))

    def close(self) -> None:
        self._put(self.docs.finish())
        self.writer.close()
        self.file.close()


class _MdsWriter(_Writer):
    """Writes what `streaming.MDSWriter(columns={"input_ids": "ndarray:<dtype>"},
    size_limit=limit)` writes for one sample per document: same shard split, same bytes."""

    def __init__(
        self, out: Path, split: str, dtype: np.dtype[Any], vocab_size: int, size_limit: int
    ) -> None:
        super().__init__(out, split, dtype)
        self.docs = _Documents()
        self.size_limit = size_limit
        self.config = {
            "version": 2,
            "format": "mds",
            "compression": None,
            "hashes": [],
            "size_limit": size_limit,
            "column_names": ["input_ids"],
            "column_encodings": [f"ndarray:{dtype.name}"],
            "column_sizes": [None],
        }
        self.config_data = json.dumps(self.config, sort_keys=True).encode()
        self.shards: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.samples: list[bytes] = []
        self.shard_size = 4 + 4 + len(self.config_data)  # MDSWriter's extra_bytes_per_shard

    def _encode(self, doc: Array) -> bytes:
        # NDArray with a static dtype and a dynamic shape: [ndim << 2 | shape dtype][shape][values]
        shape_dtype = next(i for i, t in enumerate(_MDS_SHAPE_DTYPES) if doc.size < 1 << (8 << i))
        datum = (
            bytes([(1 << 2) | shape_dtype])
            + np.array([doc.size], _MDS_SHAPE_DTYPES[shape_dtype]).tobytes()
            + np.ascontiguousarray(doc).tobytes()
        )
        return np.array([len(datum)], np.uint32).tobytes() + datum

    def _flush(self) -> None:
        n = len(self.samples)
        name = f"shard.{len(self.shards):05}.mds"
        sizes = [len(s) for s in self.samples]
        offsets = np.array([0, *sizes]).cumsum().astype(np.uint32)
        offsets += 4 + offsets.nbytes + len(self.config_data)
        with self._open(f"{self.split}/{name}") as f:
            f.write(np.uint32(n).tobytes())
            f.write(offsets.tobytes())
            f.write(self.config_data)
            for s in self.samples:
                f.write(s)
            size = f.tell()
        self.shards.append(
            {
                "samples": n,
                "raw_data": {"basename": name, "bytes": size, "hashes": {}},
                "zip_data": None,
                **self.config,
            }
        )
        self._reset()

    def _put(self, done: tuple[Array, Array] | None) -> None:
        if done is None:
            return
        values, offsets = done
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            sample = self._encode(values[a:b])
            size = len(sample) + 4  # MDSWriter's extra_bytes_per_sample
            if self.size_limit < self.shard_size + size and self.samples:
                self._flush()
            self.samples.append(sample)
            self.shard_size += size
            self.documents += 1

    def write(self, tokens: Array, starts: Array) -> None:
        self.tokens += tokens.size
        self._put(self.docs.feed(tokens, starts))

    def close(self) -> None:
        self._put(self.docs.finish())
        if self.samples:
            self._flush()
        with self._open(f"{self.split}/index.json") as f:
            f.write(json.dumps({"version": 2, "shards": self.shards}, sort_keys=True).encode())


# --- the output directory -----------------------------------------------------------------


class _Lock:
    """One writer per output directory: the protocol of `rust/src/lock.rs` (an exclusive
    `flock` on `.dataprep.lock`, holding the holder's name; released by the kernel if the
    holder dies), so that an export and a `dataprep tokenize` exclude each other as well."""

    def __init__(self, directory: Path, holder: str = "dataprep export") -> None:
        self.path = directory / LOCK_FILE
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise ExportError(
                    f"{directory}: is being written by {holder}; wait for it to finish, "
                    "or write elsewhere"
                ) from None
            # The holder before us may have removed the file after we opened it (see lock.rs).
            ours, now = os.fstat(fd), _stat(self.path)
            if now is not None and (now.st_ino, now.st_dev) == (ours.st_ino, ours.st_dev):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        me = f"{holder} (pid {os.getpid()} on {socket.gethostname()})\n"
        os.write(fd, me.encode())
        self.fd = fd

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _with_checksum(obj: dict[str, Any]) -> bytes:
    """JSON with a last field `manifest_sha256`: the SHA-256 of the text with its 64 digits read
    as zeros (the rule of the shards' manifest, checked by `check_manifest_bytes`)."""
    text = json.dumps({**obj, "manifest_sha256": "0" * 64}, indent=2).encode() + b"\n"
    digest = hashlib.sha256(text).hexdigest().encode()
    at = text.rfind(b'"manifest_sha256": "') + len(b'"manifest_sha256": "')
    return text[:at] + digest + text[at + 64 :]


def _expected(fmt: str, split: str) -> list[str]:
    """Files of one split by name (MDS: its directory, whose shards are numbered)."""
    return {
        "megatron": [f"{split}.bin", f"{split}.idx"],
        "mds": [split],
        "bin": [f"{split}.bin", f"{split}.offsets"],
        "parquet": [f"{split}.parquet"],
    }[fmt]


def _belongs(fmt: str, splits: Sequence[str], name: str) -> bool:
    """Whether `name` (relative to the output, `/`-separated) is a file this export writes.

    >>> _belongs("mds", ["train"], "train/shard.00003.mds"), _belongs("mds", ["train"], "x.txt")
    (True, False)
    """
    if name in {EXPORT_MANIFEST, *(["header.json"] if fmt == "bin" else [])}:
        return True
    if fmt == "mds":
        split, _, file = name.partition("/")
        return split in splits and (
            file == "index.json" or re.fullmatch(r"shard\.\d{5}\.mds", file) is not None
        )
    return any(name in _expected(fmt, split) for split in splits)


def _indexes(fmt: str, splits: Sequence[str]) -> list[str]:
    """The files a reader opens first and that name or locate the data files: uploaded after
    the data (and before `export.json`) when the output is `s3://`."""
    if fmt == "megatron":
        return [f"{s}.idx" for s in splits]
    if fmt == "mds":
        return [f"{s}/index.json" for s in splits]
    if fmt == "bin":
        return ["header.json"]
    return []  # parquet: one object per split, its footer in it


def _check_contents(out: Path, fmt: str, splits: Sequence[str]) -> None:
    """Refuses a directory that holds anything but this export's files (or its leftovers)."""
    for entry in sorted(out.iterdir()):
        name = entry.name
        if (_TMP.match(name) and entry.is_file()) or name in {JOURNAL, LOCK_FILE}:
            continue
        if fmt == "mds" and name in splits and entry.is_dir():
            for sub in sorted(entry.iterdir()):
                if not (_belongs(fmt, splits, f"{name}/{sub.name}") or _TMP.match(sub.name)):
                    raise ExportError(
                        f"--out {out} holds {name}/{sub.name}, which is not part of an MDS "
                        "export: write into an empty or new directory"
                    )
            continue
        if not _belongs(fmt, splits, name):
            raise _foreign(str(out), name, fmt, splits, "directory")


def _foreign(out: str, name: str, fmt: str, splits: Sequence[str], place: str) -> ExportError:
    """The refusal of an `--out` that holds `name`, which no export of `splits` writes."""
    return ExportError(
        f"--out {out} holds {name!r}, which is not part of a {fmt} export of "
        f"{', '.join(splits)}: write into an empty or new {place}"
    )


def _check_remote(url: str, plan: _Plan) -> list[tuple[str, int]]:
    """Refuses an `s3://` prefix that holds anything but this export's objects, or an export
    of other shards or options; returns its objects `(name, bytes)`."""
    objects = storage.list_files(url)
    for name, _ in objects:
        if not _belongs(plan.fmt, plan.splits, name):
            raise _foreign(url, name, plan.fmt, plan.splits, "prefix")
    if any(name == EXPORT_MANIFEST for name, _ in objects):
        url_manifest = storage.join(url, EXPORT_MANIFEST)
        try:
            raw = storage.read_bytes(url_manifest)
            check_manifest_bytes(raw, EXPORT_MANIFEST)
            config = json.loads(raw)["config"]
        except (ValueError, UnicodeDecodeError, KeyError) as e:
            raise ExportError(f"{url_manifest}: not a readable export.json ({e})") from None
        if config != plan.config:
            raise ExportError(
                f"--out {url} holds an export of other shards or options ({EXPORT_MANIFEST}); "
                "write elsewhere"
            )
    return objects


def _upload(out: Path, url: str, plan: _Plan, objects: list[tuple[str, int]]) -> dict[str, Any]:
    """Uploads a finished export directory to `url` as a committed set (data, then the
    indexes, then `export.json`), unless the prefix already holds it: the same `export.json`
    and every object it lists with its size."""
    local = (out / EXPORT_MANIFEST).read_bytes()
    data = json.loads(local)
    entries = [f for sp in data["splits"].values() for f in sp["files"]]
    entries += [data["header"]] if "header" in data else []
    sizes = dict(objects)
    if (
        EXPORT_MANIFEST in sizes
        and all(sizes.get(e["file"]) == e["bytes"] for e in entries)
        and storage.read_bytes(storage.join(url, EXPORT_MANIFEST)) == local
    ):
        return {"url": url, "objects": 0, "bytes": 0}
    n, nbytes = storage.upload_set(
        out, url, commit=EXPORT_MANIFEST, indexes=_indexes(plan.fmt, plan.splits)
    )
    return {"url": url, "objects": n, "bytes": nbytes}


def _remove_leftovers(out: Path, fmt: str, splits: Sequence[str], keep: set[str]) -> None:
    """Removes temporary files and the files of splits not recorded as finished."""
    for entry in [*out.iterdir(), *(p for s in splits if (out / s).is_dir() for p in (out / s).iterdir())]:  # fmt: skip
        if _TMP.match(entry.name) and entry.is_file():
            entry.unlink()
    for split in splits:
        if split in keep:
            continue
        for name in _expected(fmt, split):
            p = out / name
            if p.is_dir():
                for sub in p.iterdir():
                    sub.unlink()
                p.rmdir()
            elif p.exists():
                p.unlink()
    with contextlib.suppress(FileNotFoundError):
        (out / "header.json").unlink()


def _file_entries(out: Path, files: Sequence[Path]) -> list[dict[str, Any]]:
    return [
        {"file": p.relative_to(out).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(files)
    ]


def _check_files(out: Path, entries: Sequence[dict[str, Any]]) -> str | None:
    """The first recorded file that is missing or changed, as a line naming it; None if all
    match."""
    for e in entries:
        p = out / e["file"]
        if not p.is_file():
            return f"{p}: missing (listed in the export)"
        if p.stat().st_size != e["bytes"] or sha256_file(p) != e["sha256"]:
            return f"{p}: changed since it was written (size or SHA-256 differs from the export)"
    return None


def read_export(directory: PathLike) -> dict[str, Any]:
    """Reads and checks `export.json` of an export directory: its own checksum and the size
    and SHA-256 of every file it lists. Raises `ExportError` naming the first problem.

    >>> read_export(".")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dataprep.export.ExportError: .../export.json: no export.json (not a finished `dataprep export`)
    """
    out = Path(directory)
    path = out / EXPORT_MANIFEST
    if not path.is_file():
        raise ExportError(f"{path.resolve()}: no export.json (not a finished `dataprep export`)")
    raw = path.read_bytes()
    try:
        check_manifest_bytes(raw, path)
        data: dict[str, Any] = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportError(str(e)) from None
    files = [f for sp in data["splits"].values() for f in sp["files"]]
    problem = _check_files(out, [*files, *([data["header"]] if "header" in data else [])])
    if problem:
        raise ExportError(problem)
    return data


# --- export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    fmt: str
    splits: tuple[str, ...]
    config: dict[str, Any]
    left_out: tuple[str, ...]  # splits of the shards not exported (empty, or not asked for)


def _plan(
    manifest: Manifest, fmt: str, splits: Sequence[str] | None, mds_shard_bytes: int | None
) -> _Plan:
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: not one of {', '.join(FORMATS)}")
    if mds_shard_bytes is not None and fmt != "mds":
        raise ExportError(f"--mds-shard-bytes applies to --format mds only, not {fmt}")
    if mds_shard_bytes is None:
        mds_shard_bytes = MDS_SHARD_BYTES
    if isinstance(mds_shard_bytes, bool) or not isinstance(mds_shard_bytes, int):
        raise ExportError(f"--mds-shard-bytes {mds_shard_bytes!r}: not an integer")
    if not MDS_MIN_SHARD_BYTES <= mds_shard_bytes < 1 << 32:
        raise ExportError(
            f"--mds-shard-bytes {mds_shard_bytes}: must be between {MDS_MIN_SHARD_BYTES} and "
            f"{(1 << 32) - 1} (MDS offsets are uint32)"
        )
    if manifest.objective != "clm":
        raise ExportError(
            f"{manifest.path}: {manifest.objective} shards ([CLS] A [SEP] rows of sentences, "
            "no document boundaries) have no token stream to export; export causal-LM shards "
            "(`dataprep tokenize --objective clm`)"
        )
    if splits:
        for s in splits:
            if s not in manifest.splits:
                raise ExportError(f"--split {s!r}: the shards have {', '.join(manifest.splits)}")
            if manifest.splits[s].rows == 0:
                raise ExportError(f"--split {s!r}: the split has no rows")
        chosen = tuple(dict.fromkeys(splits))
    else:
        chosen = tuple(s for s, sp in manifest.splits.items() if sp.rows)
    if not chosen:
        raise ExportError(f"{manifest.path}: no split has rows; nothing to export")
    source = manifest.path.read_bytes()
    config = {
        "export_version": EXPORT_VERSION,
        "format": fmt,
        "splits": list(chosen),
        "source_manifest_sha256": hashlib.sha256(source).hexdigest(),
        **({"mds_shard_bytes": mds_shard_bytes} if fmt == "mds" else {}),
    }
    return _Plan(fmt, chosen, config, tuple(s for s in manifest.splits if s not in chosen))


def export(
    shards: PathLike,
    out: PathLike,
    format: str,
    *,
    splits: Sequence[str] | None = None,
    mds_shard_bytes: int | None = None,
    on_split: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Exports the documents of causal-LM shards to another trainer's format (module docs).

    Args:
        shards: A shard directory written by `dataprep tokenize` (checked against its manifest's
            SHA-256 before anything is written).
        out: The output directory: created if missing; must be empty or hold an (unfinished or
            finished) export of the same shards in the same format. Or an `s3://bucket/prefix`
            (a string; every format): the export is built in `remote.local_path(out,
            "outputs")` as a local one would be, then uploaded as a committed set: the data
            objects, then each split's index (`.idx`, MDS `index.json`, bin `header.json`),
            `export.json` last (README, Object storage). The prefix must be empty or hold an
            export of the same shards and options; a rerun finishes an interrupted upload, and
            uploads nothing when the prefix already holds this export.
        format: `megatron`, `mds`, `bin` or `parquet`.
        splits: The splits to export (default: every split that has rows).
        mds_shard_bytes: MDS only: the largest shard file (MDSWriter's `size_limit`; default
            `MDS_SHARD_BYTES`, 64 MiB).
        on_split: Called as `(split, documents, tokens)` after each split is written.

    Returns:
        The export manifest (`export.json`) as a dict, plus `seconds`, `resumed` (the splits
        kept from an earlier run), `unchanged` (True when the export was already complete and
        nothing was written), `left_out` (splits of the shards not exported: not asked for,
        or without rows) and, for an `s3://` out, `uploaded` (`url`, `objects`, `bytes`;
        0 objects when the prefix already held this export).

    Raises:
        ExportError: An invalid option, MLM shards, shards that fail their checksums, an output
            directory that holds something else or is being written.
    """
    t0 = time.perf_counter()
    try:
        if storage.is_remote(shards):
            raise ExportError(
                f"{shards}: export reads a local shard directory (s3:// shards are not "
                "supported yet); download the shard set first"
            )
        url = os.fspath(out) if storage.is_remote(out) else None
    except ValueError as e:  # another scheme (gs://, ...): one line naming it
        raise ExportError(str(e)) from None
    manifest = Manifest.read(shards)
    plan = _plan(manifest, format, splits, mds_shard_bytes)
    objects = _check_remote(url, plan) if url is not None else []
    out_dir = Path(remote.local_path(url, "outputs")) if url is not None else Path(out)
    src, dst = manifest.directory.resolve(), out_dir.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise ExportError(f"--out {out_dir} and the shards {manifest.directory} overlap")
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _Lock(out_dir)
    try:
        result = _export_locked(manifest, out_dir, plan, on_split, t0)
        if url is not None:
            result["uploaded"] = _upload(out_dir, url, plan, objects)
            result["seconds"] = time.perf_counter() - t0
        return result
    finally:
        lock.release()


def _export_locked(
    manifest: Manifest,
    out: Path,
    plan: _Plan,
    on_split: Callable[[str, int, int], None] | None,
    t0: float,
) -> dict[str, Any]:
    _check_contents(out, plan.fmt, plan.splits)
    if (out / EXPORT_MANIFEST).is_file():
        done = read_export(out)
        if done["config"] != plan.config:
            raise ExportError(
                f"--out {out} holds an export of other shards or options ({EXPORT_MANIFEST}); "
                "write elsewhere"
            )
        extra = {"resumed": [], "unchanged": True, "left_out": list(plan.left_out)}
        return {**done, "seconds": time.perf_counter() - t0, **extra}
    journal: dict[str, Any] = {"config": plan.config, "splits": {}}
    if (out / JOURNAL).is_file():
        try:
            old = json.loads((out / JOURNAL).read_bytes())
        except (ValueError, UnicodeDecodeError) as e:
            raise ExportError(f"{out / JOURNAL}: unreadable ({e}); remove it to start over") from e
        if old.get("config") != plan.config:
            raise ExportError(
                f"--out {out} holds an unfinished export of other shards or options "
                f"({JOURNAL}); write elsewhere"
            )
        for split, info in old["splits"].items():
            if _check_files(out, info["files"]) is None:
                journal["splits"][split] = info
    resumed = list(journal["splits"])
    _remove_leftovers(out, plan.fmt, plan.splits, set(resumed))
    problems = manifest.verify(plan.splits)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(problems[0] + more)
    tok = manifest.tokenizer
    dtype = np.dtype(manifest.dtype)
    for split in plan.splits:
        if split in journal["splits"]:
            continue
        writer = _make_writer(plan, out, split, dtype, tok.vocab_size)
        try:
            for tokens, starts in token_stream(manifest, split):
                writer.write(tokens, starts)
            writer.close()
            files = writer.commit()
        except BaseException:
            writer.abort()
            raise
        journal["splits"][split] = {
            "documents": writer.documents,
            "tokens": writer.tokens,
            "files": _file_entries(out, files),
        }
        _write_atomic(out / JOURNAL, json.dumps(journal, indent=2).encode())
        if on_split is not None:
            on_split(split, writer.documents, writer.tokens)
    result: dict[str, Any] = {
        "format": plan.fmt,
        "dataprep_version": dataprep.__version__,
        "config": plan.config,
        "source": {
            "directory": os.fspath(manifest.directory),
            "objective": manifest.objective,
            "seq_len": manifest.seq_len,
        },
        "dtype": _file_dtype(plan.fmt, dtype, tok.vocab_size),
        "tokenizer": {
            "file": os.fspath(manifest.tokenizer_path),
            "sha256": tok.sha256,
            "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id,
            "bos_id": tok.bos_id,
        },
        "splits": journal["splits"],
    }
    if plan.fmt == "bin":
        header = {k: result[k] for k in ("format", "dtype", "tokenizer")}
        header["splits"] = {
            s: {
                "tokens": i["tokens"],
                "documents": i["documents"],
                "bin": f"{s}.bin",
                "offsets": f"{s}.offsets",
            }
            for s, i in journal["splits"].items()
        }
        header["offsets_dtype"] = "<u8"
        _write_atomic(out / "header.json", json.dumps(header, indent=2).encode() + b"\n")
        result["header"] = _file_entries(out, [out / "header.json"])[0]
    _write_atomic(out / EXPORT_MANIFEST, _with_checksum(result))
    with contextlib.suppress(FileNotFoundError):
        (out / JOURNAL).unlink()
    extra = {"resumed": resumed, "unchanged": False, "left_out": list(plan.left_out)}
    return {**result, "seconds": time.perf_counter() - t0, **extra}


def _megatron_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size < MEGATRON_UINT16_BELOW else "int32"


def _file_dtype(fmt: str, dtype: np.dtype[Any], vocab_size: int) -> str:
    return _megatron_dtype(vocab_size) if fmt == "megatron" else dtype.name


def _make_writer(plan: _Plan, out: Path, split: str, dtype: np.dtype[Any], vocab: int) -> _Writer:
    if plan.fmt == "megatron":
        return _MegatronWriter(out, split, dtype, vocab)
    if plan.fmt == "bin":
        return _BinWriter(out, split, dtype, vocab)
    if plan.fmt == "parquet":
        return _ParquetWriter(out, split, dtype, vocab)
    return _MdsWriter(out, split, dtype, vocab, plan.config["mds_shard_bytes"])


# --- reading back (what the other trainers' readers do; used by tests and `bin` users) ------


def read_bin(directory: PathLike, split: str = "train") -> tuple[Array, Array]:
    """The tokens (`np.memmap`, read-only) and document offsets of a `bin` export's split.

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> f = d / "a.txt"
    >>> _ = f.write_text("hello world. " * 200)
    >>> _ = dataprep.train_bpe(f, 300, out=d / "tok.json", special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(f, d / "tok.json", d / "shards", seq_len=64)
    >>> _ = export(d / "shards", d / "bin", "bin")
    >>> tokens, offsets = read_bin(d / "bin")
    >>> tokens.dtype, offsets.tolist() == [0, tokens.size]
    (dtype('uint16'), True)
    """
    d = Path(directory)
    header = json.loads((d / "header.json").read_text())
    info = header["splits"][split]
    tokens = np.memmap(d / info["bin"], dtype=np.dtype(header["dtype"]), mode="r")
    offsets = np.fromfile(d / info["offsets"], dtype=np.dtype(header["offsets_dtype"]))
    return tokens, offsets


__all__ = [
    "EXPORT_MANIFEST",
    "FORMATS",
    "MANIFEST",
    "ExportError",
    "export",
    "read_bin",
    "read_export",
    "token_stream",
]
