"""A remote shard directory (`s3://bucket/prefix`) read through a local cache directory.

`ShardSet("s3://...")` (dataprep/shards.py) reads a remote set through a `ShardCache`:

- the manifest is read from the bucket and its own SHA-256 checked (as a local one), then kept
  in the cache directory; the tokenizer copy is downloaded and checked at once;
- each shard is downloaded when first needed, or ahead of use by background threads
  (`fetch_ahead`: the loaders pass the rows in the order they will read them), to a temporary
  name, its size and SHA-256 checked against the manifest while streaming, then renamed into
  the cache: no byte of a shard is used before its hash matched;
- a shard already in the cache is reused when its size and SHA-256 match (hashed once per
  process, as the trainer verifies local shards once per run); one that does not is fetched again.

Then the shards are ordinary memory-mapped local files, so a remote set yields exactly the rows of
a local copy. The cache directory of `s3://bucket/prefix` is `ROOT/bucket/prefix`, ROOT being
the trainer's `--shard-cache` or `default_root()` (`$XDG_CACHE_HOME/dataprep/shards`, else
`~/.cache/dataprep/shards`). Processes that share a cache (the ranks of one node) take a file
lock per shard, so each shard is downloaded once per node.

NOTE: the cache is not bounded: it grows to the size of the split, checked against the free
space when the set is opened. The trainer's global shuffle (train/data.py) reads rows of every
shard in every step, so a cache smaller than the split would download the data again at every
step; shuffle windows over a bounded cache (MosaicML streaming's approach) would mix less.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import shutil
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dataprep import storage
from dataprep._core import DataprepError
from dataprep.shards import MANIFEST, Manifest, ShardInfo, check_manifest_bytes, sha256_file

FETCH_THREADS = 4  # shards downloaded at once by `fetch_ahead`


def default_root() -> Path:
    """`$XDG_CACHE_HOME/dataprep/shards`, else `~/.cache/dataprep/shards`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "dataprep" / "shards"


def cache_dir(url: str, root: storage.PathLike | None = None) -> Path:
    """Where the shards of `url` are cached: `ROOT/bucket/prefix`.

    >>> cache_dir("s3://data/shards/en/", "/cache").as_posix()
    '/cache/data/shards/en'
    """
    u = storage.S3Url.parse(url)
    return Path(default_root() if root is None else root, u.bucket, *u.key.split("/"))


_instances: weakref.WeakSet[ShardCache] = weakref.WeakSet()


class ShardCache:
    """The local mirror of one remote shard directory (see the module docstring).

    Args:
        url: The shard directory (`s3://bucket/prefix`, holding `manifest.json`).
        root: The cache root (default `default_root()`).

    Attributes:
        url: The URL, normalised (`s3://bucket/prefix`).
        directory: The local cache directory; `manifest.path` is the manifest copy in it.
        manifest: The remote manifest, as read and checked.

    Raises:
        FileNotFoundError: No `manifest.json` under `url`.
        ValueError: An invalid manifest, or its checksum does not match.
        DataprepError: The server refused, or the tokenizer copy does not match.
    """

    def __init__(self, url: str, root: storage.PathLike | None = None) -> None:
        self.url = str(storage.S3Url.parse(url))
        self.directory = cache_dir(self.url, root)
        self.directory.mkdir(parents=True, exist_ok=True)
        murl = storage.join(self.url, MANIFEST)
        try:
            raw = storage.read_bytes(murl)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{murl}: no manifest.json (not a directory written by `dataprep tokenize`, "
                "or an unfinished upload)"
            ) from None
        check_manifest_bytes(raw, murl)
        local = self.directory / MANIFEST
        try:
            data = json.loads(raw)
            self.manifest = Manifest.from_dict(data, local)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{murl}: not a valid manifest ({e})") from None
        except ValueError as e:
            raise ValueError(str(e).replace(os.fspath(local), murl)) from None
        if not local.is_file() or local.read_bytes() != raw:
            tmp = local.with_name(f".{MANIFEST}.{os.getpid()}.part")
            tmp.write_bytes(raw)
            os.replace(tmp, local)
        self._verified: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) checked here
        self._reset()
        _instances.add(self)
        tok = self.manifest.tokenizer
        self.ensure(tok.file, None, tok.sha256)

    def _reset(self) -> None:
        """Fresh locks and no fetch threads (also in a forked child, where the parent's threads
        do not exist and their locks may be held forever)."""
        self._mutex = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._pending: collections.deque[ShardInfo] = collections.deque()
        self._threads: list[threading.Thread] = []

    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader worker under `spawn` gets the shards verified so far; it checks (or
        # fetches) the others itself, under the same file locks.
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["_verified"] = dict(self._verified)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()
        _instances.add(self)

    def __repr__(self) -> str:
        return f"ShardCache({self.url!r} -> {os.fspath(self.directory)!r})"

    # --- one file ---------------------------------------------------------------------------

    def _checked(self, name: str, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        return self._verified.get(name) == (st.st_size, st.st_mtime_ns)

    def _mark(self, name: str, path: Path) -> None:
        st = path.stat()
        self._verified[name] = (st.st_size, st.st_mtime_ns)

    def ensure(self, name: str, size: int | None, sha256: str) -> Path:
        """The cached file `name` of the directory, downloaded first if it is not in the cache
        with this size and SHA-256. Blocks until it is there; safe from any thread and process.

        Raises:
            DataprepError: The object does not match the manifest (naming its URL), or the
                server refused.
        """
        path = self.directory / name
        if self._checked(name, path):
            return path
        with self._mutex:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock, _file_lock(self.directory / f".{name}.lock"):
            if self._checked(name, path):
                return path
            fits = path.is_file() and (size is None or path.stat().st_size == size)
            if fits and sha256_file(path) == sha256:
                self._mark(name, path)
                return path
            path.unlink(missing_ok=True)  # stale (another version of the set) or damaged
            url = storage.join(self.url, name)
            try:
                storage.download(url, path, sha256=sha256, size=size)
            except DataprepError as e:
                raise DataprepError(
                    f"{e}: the object does not match {storage.join(self.url, MANIFEST)}"
                ) from None
            self._mark(name, path)
            return path

    def shard(self, info: ShardInfo) -> Path:
        """`ensure` for one shard of the manifest."""
        return self.ensure(info.file, info.bytes, info.sha256)

    # --- ahead of use -----------------------------------------------------------------------

    def check_space(self, shards: Iterable[ShardInfo]) -> None:
        """Refuses (DataprepError naming the cache directory) when the shards not yet cached
        would not fit in the free space of its disk."""
        need = 0
        for s in shards:
            p = self.directory / s.file
            if not (p.is_file() and p.stat().st_size == s.bytes):
                need += s.bytes
        free = shutil.disk_usage(self.directory).free
        if need > free:
            raise DataprepError(
                f"{self.directory}: the shards of {self.url} need {need:,} more bytes, the disk "
                f"has {free:,} free (the trainer's --shard-cache picks another directory)"
            )

    def fetch_ahead(self, shards: Iterable[ShardInfo], threads: int = FETCH_THREADS) -> None:
        """Downloads `shards` in this order on `threads` background threads (replacing the
        order of an earlier call). A failure is left for `ensure` to raise when the shard is
        used."""
        with self._mutex:
            self._pending = collections.deque(shards)
            self._threads = [t for t in self._threads if t.is_alive()]
            for i in range(len(self._threads), threads):
                t = threading.Thread(target=self._fetch, daemon=True, name=f"dataprep-fetch-{i}")
                self._threads.append(t)
                t.start()

    def join(self) -> None:
        """Waits until the background downloads of `fetch_ahead` are done (or have failed)."""
        with self._mutex:
            threads = list(self._threads)
        for t in threads:
            t.join()

    def _fetch(self) -> None:
        while True:
            with self._mutex:
                if not self._pending:
                    return
                info = self._pending.popleft()
            # A failure is raised again where the shard is used: the loader's thread reports it.
            with contextlib.suppress(OSError, ValueError, DataprepError):
                self.shard(info)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if absent): one downloader per file per node."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _after_fork() -> None:
    for cache in list(_instances):
        cache._reset()


os.register_at_fork(after_in_child=_after_fork)


__all__ = ["FETCH_THREADS", "ShardCache", "cache_dir", "default_root"]
