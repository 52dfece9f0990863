"""`s3://` inputs and outputs of the corpus commands (`tokenize`, `train-bpe`).

The Rust core reads local files. For remote inputs this module lists the run's inputs in the
order the core reads local ones (`listing`), and gives the files a process reads a local copy
(`stage`); the core gets the list as its `listing` keyword, so manifests, work units, the
configuration hash and error messages name the objects (`s3://bucket/key`), never their
copies. A remote output is built in a local directory and uploaded as a committed set
(`storage.upload_set`: data objects first, the commit object last).

Order: a remote prefix is walked as the core walks a local directory: every level sorted by
name, entries whose name starts with `.` skipped (sorting the keys by their `/`-separated parts
gives exactly that order; sorting the keys as strings would not: `a-c` < `a/b` but the walk
visits the directory `a` first). Inputs keep the order they were given; a file given twice is
read once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from dataprep import _core, storage
from dataprep._core import DataprepError

# (name, size): an input as plans and work units name it.
Entry = tuple[str, int]
# (name, size, local copy or None): the core's `listing` keyword.
Listed = tuple[str, int, str | None]


def any_remote(inputs: Sequence[str]) -> bool:
    """Whether some input is a URL (then the run needs a listing).

    >>> any_remote(["corpus/", "s3://b/k"]), any_remote(["corpus/"])
    (True, False)
    """
    return any(storage.is_remote(i) for i in inputs)


def _walk_order(key: str) -> list[str]:
    """The sort key that orders object keys as a directory walk visits them.

    >>> sorted(["a-c", "a/b", "a/a/z", "b"], key=_walk_order)
    ['a/a/z', 'a/b', 'a-c', 'b']
    """
    return key.split("/")


def listing(inputs: Sequence[str]) -> list[Entry]:
    """The run's input files, `(name, size)`, in the core's reading order: a local input as
    `_core.discover` expands it, a remote one (an object, or a prefix walked like a directory).

    Raises:
        DataprepError: A remote input with no object (naming it), or a server error.
    """
    out: list[Entry] = []
    seen: set[str] = set()
    for item in inputs:
        if storage.is_remote(item):
            found = _remote_files(item)
        else:
            found = [(path, size) for path, size in _core.discover([item])]
        for name, size in found:
            if name not in seen:
                seen.add(name)
                out.append((name, size))
    return out


def _remote_files(url: str) -> list[Entry]:
    prefix = url.rstrip("/")
    below = [
        (key, size)
        for key, size in storage.list_files(prefix)
        if not any(part.startswith(".") for part in key.split("/"))
    ]
    if below:
        return [
            (storage.join(prefix, key), size)
            for key, size in sorted(below, key=lambda e: _walk_order(e[0]))
        ]
    size = storage.size(prefix)
    if size is None:
        raise DataprepError(f"{url}: no such object, and no objects under it")
    return [(prefix, size)]


def stage(entries: Sequence[Entry], directory: str | os.PathLike[str]) -> list[Listed]:
    """The core's listing for `entries`, each with a local copy: a local file is its own copy,
    a remote object is downloaded to `directory/<bucket>/<key>` (a copy already there with the
    listed size is reused).
    """
    root = Path(directory)
    out: list[Listed] = []
    for name, size in entries:
        if not storage.is_remote(name):
            out.append((name, size, name))
            continue
        u = storage.S3Url.parse(name)
        local = root / u.bucket / u.key
        if not (local.is_file() and local.stat().st_size == size):
            storage.download(name, local, size=size)
        out.append((name, size, str(local)))
    return out


def unstaged(entries: Sequence[Entry]) -> list[Listed]:
    """The core's listing for `entries` with no local copy: for plans and assembling steps,
    which read no input.
    """
    return [(name, size, None) for name, size in entries]


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/dataprep`, else `~/.cache/dataprep`: staged inputs (`inputs/`) and
    outputs built before upload (`outputs/`), each at `<bucket>/<key>`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "dataprep"


def local_path(url: str, kind: str) -> str:
    """Where the object or prefix `url` is staged (`kind` "inputs") or built (`kind` "outputs").

    >>> os.environ["XDG_CACHE_HOME"] = "/c"
    >>> local_path("s3://data/shards/en", "outputs")
    '/c/dataprep/outputs/data/shards/en'
    >>> del os.environ["XDG_CACHE_HOME"]
    """
    u = storage.S3Url.parse(url)
    return os.fspath(cache_root() / kind / u.bucket / u.key)


@contextlib.contextmanager
def local_run(
    inputs: Sequence[str], out: str | None
) -> Iterator[tuple[list[Listed] | None, str | None]]:
    """For a run that reads `inputs` and writes `out`: the core's listing (None when every input
    is local: the core discovers them) and the local path to write (`out` itself, or where a
    remote `out` is built before the caller uploads it). Remote inputs are staged under
    `cache_root()/inputs` (a rerun reuses the copies) and removed when the run succeeds.
    """
    staged: list[Listed] | None = None
    if any_remote(inputs):
        staged = stage(listing(inputs), cache_root() / "inputs")
    local_out = local_path(out, "outputs") if out is not None and storage.is_remote(out) else out
    yield staged, local_out
    for name, _, copy in staged or []:
        if copy is not None and copy != name:
            with contextlib.suppress(FileNotFoundError):
                os.remove(copy)
