"""Object storage: the one module for paths that may be `s3://bucket/prefix` URLs.

Everything in dataprep that reads or writes a path a user may give as a URL goes through here:

    is_remote     whether a path is an `s3://` URL (other schemes are refused, naming them)
    filesystem    a `pyarrow.fs.S3FileSystem` configured from the usual AWS environment variables
    list_files    the objects under a prefix: relative names and sizes, sorted
    exists, read_bytes, download, upload
                  one object; `download` writes a temporary name, renames it, and checks an
                  expected size and SHA-256 while streaming
    upload_set    a local output directory as a committed set: the commit object (`manifest.json`,
                  an export's `export.json`) and any index files are removed first and uploaded
                  last, so a reader never finds a manifest or index that names missing or
                  half-replaced objects; a rerun after a kill finishes the set

Configuration (read at every `filesystem()` call, so a changed environment takes effect):

    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL   an S3-compatible server (`http://host:port` or
        `https://...`); unset = AWS itself. With an endpoint, buckets are addressed path-style
        (`host/bucket/key`, what MinIO, rclone, SeaweedFS and Ceph expect); on AWS,
        virtual-hosted style.
    AWS_REGION, AWS_DEFAULT_REGION          the region (signing); unset = the SDK's default
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                                            credentials; unset = the SDK's default chain
                                            (`~/.aws`, instance and container roles)

On a Ray cluster, the driver hands these settings to its tasks (`settings`, applied in the task
by `settings_applied`): the worker nodes need no AWS_* environment of their own.

NOTE: recent AWS SDKs (pyarrow 26's included) upload with a trailing CRC checksum in chunked
encoding, which several S3-compatible servers refuse (HTTP 411 `MissingContentLength`; seen with
`rclone serve s3`). `AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED` and
`AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED` turn that off; pyarrow 26 honours them (read
when a filesystem is made). We do not set them behind the user's back: the error names them.

NOTE: pyarrow's S3 filesystem rather than fsspec/s3fs: pyarrow is already a core dependency
(the shards are Arrow), its C++ client transfers with several threads without the GIL, and its
filesystem objects are what Arrow's readers take; s3fs would add aiobotocore and botocore, whose
version pins conflict with other packages in training environments.

Errors: a URL that is not `s3://` or is malformed is a `ValueError`; a missing object a
`FileNotFoundError`; anything the server or the network refuses a `DataprepError`. Each is one
line that names the URL (and the endpoint where that helps); the CLI prints it as it is.

>>> is_remote("s3://bucket/shards"), is_remote("shards/")
(True, False)
>>> is_remote("gs://bucket/shards")
Traceback (most recent call last):
ValueError: gs://bucket/shards: gs:// is not supported (object storage is s3:// only)
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from dataprep._core import DataprepError

PathLike = str | os.PathLike[str]

SCHEME = "s3"
# NOTE: every stream is opened with `compression=None`: pyarrow's default ("detect") gzips a
# `.gz` file again on upload and gunzips it on download, so the object would not be the file.
CHUNK = 8 << 20  # bytes per read/write call when streaming an object
COMMIT = "manifest.json"  # the commit object of a shard directory
CHECKSUM_FIX = (
    "set AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED and "
    "AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED (README, Object storage)"
)

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
)


def is_remote(path: PathLike) -> bool:
    """Whether `path` is an `s3://` URL. A URL of another scheme (`gs://`, `hdfs://`,
    `http://`, `file://`, ...) is refused: a `ValueError` naming it.

    Only strings can be URLs (`pathlib.Path("s3://b/k")` is the local path `s3:/b/k`).

    >>> is_remote("s3://data/k"), is_remote(Path("s3://data/k"))
    (True, False)
    """
    if not isinstance(path, str):
        return False
    m = _URL.match(path)
    if m is None:
        return False
    scheme = m.group(1).lower()
    if scheme == SCHEME:
        return True
    hint = "; give the local path itself" if scheme == "file" else ""
    raise ValueError(f"{path}: {scheme}:// is not supported (object storage is s3:// only{hint})")


@dataclass(frozen=True)
class S3Url:
    """An `s3://bucket/key` URL split into its bucket and key (no leading or trailing `/`).

    >>> u = S3Url.parse("s3://data/shards/en/")
    >>> u.bucket, u.key, str(u), str(u / "manifest.json")
    ('data', 'shards/en', 's3://data/shards/en', 's3://data/shards/en/manifest.json')
    """

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        if not is_remote(url):
            raise ValueError(f"{url}: not an s3:// URL")
        rest = url.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ValueError(
                f"{url}: {bucket!r} is not a bucket name (3-63 lower-case letters, digits, "
                "'.' and '-')"
            )
        key = key.strip("/")
        if "//" in key or any(p in (".", "..") for p in key.split("/")):
            raise ValueError(f"{url}: the key has an empty, '.' or '..' part")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def __truediv__(self, name: str) -> S3Url:
        return S3Url(self.bucket, f"{self.key}/{name}" if self.key else name)

    @property
    def path(self) -> str:
        """`bucket/key`: the path pyarrow's S3 filesystem takes."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket


def join(url: str, name: str) -> str:
    """`url/name` for a URL, `Path(url) / name` as a string otherwise.

    >>> join("s3://data/shards/", "manifest.json"), join("shards", "manifest.json")
    ('s3://data/shards/manifest.json', 'shards/manifest.json')
    """
    if is_remote(url):
        return str(S3Url.parse(url) / name)
    return os.fspath(Path(url) / name)


# --- the filesystem -------------------------------------------------------------------------

_lock = threading.Lock()
_cache: dict[tuple[str | None, ...], pafs.S3FileSystem] = {}


def endpoint() -> str:
    """Where requests go, for messages: the endpoint URL, or AWS with its region."""
    env = os.environ
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        return url
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    return f"AWS S3 ({region})" if region else "AWS S3"


def filesystem() -> pafs.S3FileSystem:
    """A `pyarrow.fs.S3FileSystem` from the environment (see the module docstring), one per
    distinct configuration. Paths on it are `bucket/key` (`S3Url.path`).

    Raises:
        ValueError: A malformed endpoint URL, or only one of the access key pair.
    """
    key = tuple(os.environ.get(name) for name in _ENV)
    with _lock:
        fs = _cache.get(key)
        if fs is None:
            fs = _cache[key] = pafs.S3FileSystem(**_options())
        return fs


def _options() -> dict[str, object]:
    env = os.environ
    kw: dict[str, object] = {"connect_timeout": 10.0, "request_timeout": 60.0}
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        url = env.get(name)
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"{name}={url}: expected http://HOST[:PORT] or https://HOST[:PORT]")
        # Path-style addressing follows from an endpoint override (`force_virtual_addressing`
        # stays False): S3-compatible servers rarely resolve bucket subdomains.
        kw["endpoint_override"] = parts.netloc
        kw["scheme"] = parts.scheme
        break
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if bool(access) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if access else "AWS_ACCESS_KEY_ID"
        raise ValueError(f"{missing} is not set (the other of the key pair is)")
    if access:
        kw["access_key"], kw["secret_key"] = access, secret
        if env.get("AWS_SESSION_TOKEN"):
            kw["session_token"] = env["AWS_SESSION_TOKEN"]
    return kw


def settings() -> dict[str, str]:
    """This process's object-storage settings: the variables `filesystem` reads that are set
    (endpoint, region, keys and token, the two checksum variables), for a task on another node
    to read the same bucket the same way (`settings_applied`). They hold secrets: callers never
    print, log or write them to a file.

    >>> with settings_applied({"AWS_REGION": "eu-west-1"}):
    ...     settings()
    {'AWS_REGION': 'eu-west-1'}
    """
    return {name: os.environ[name] for name in _ENV if os.environ.get(name)}


@contextmanager
def settings_applied(values: Mapping[str, str]) -> Iterator[None]:
    """Runs the block with exactly `values` as the object-storage settings (`settings`' output):
    each variable `filesystem` reads is set to its value there, or unset when `values` does not
    have it (a node's own `AWS_ENDPOINT_URL_S3` would otherwise override the driver's
    `AWS_ENDPOINT_URL`, its own session token pair with the driver's keys). The process's
    environment is restored on the way out.

    NOTE: the process environment because pyarrow reads the checksum variables from it, and
    `filesystem()` keys its cache on it; a Ray worker runs one task at a time, so no other
    task sees the values.
    """
    unknown = sorted(set(values) - set(_ENV))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an object-storage setting")
    saved = {name: os.environ.get(name) for name in _ENV}
    try:
        for name in _ENV:
            if name in values:
                os.environ[name] = values[name]
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _errors(url: S3Url | str) -> Iterator[None]:
    """Turns what pyarrow raises into one line naming `url` (the module docstring's classes)."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such object") from None
    except (OSError, pa.ArrowException) as e:
        raise DataprepError(f"{url}: {_reason(str(e))}") from None


def _reason(message: str) -> str:
    """A short cause, with the fix where there is one, from an AWS SDK error message."""
    at = endpoint()
    if "MissingContentLength" in message or "HTTP status 411" in message:
        return (
            f"{at} refused the upload's trailing checksum (HTTP 411 MissingContentLength); "
            f"{CHECKSUM_FIX}"
        )
    if "NO_SUCH_BUCKET" in message:
        return f"no such bucket at {at}"
    if any(
        code in message
        for code in ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID",
                     "HTTP status 403", "HTTP status 400", "credentials")
    ):  # fmt: skip
        return (
            f"access denied by {at} (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the "
            "bucket's permissions)"
        )
    if "NETWORK_CONNECTION" in message or "curlCode" in message:
        detail = message.split("Details:", 1)[-1].strip() if "Details:" in message else ""
        return f"cannot reach {at}" + (f" ({detail})" if detail else "")
    return " ".join(message.split())  # one line


# --- objects --------------------------------------------------------------------------------


def list_files(url: str) -> list[tuple[str, int]]:
    """The objects under the prefix `url` (recursively): `(name relative to it, bytes)`,
    sorted by name; empty when there are none.

    Raises:
        DataprepError: No such bucket, access denied, the server is unreachable.
    """
    u = S3Url.parse(url)
    fs = filesystem()
    try:
        with _errors(u):
            infos = fs.get_file_info(pafs.FileSelector(u.path, recursive=True))
    except FileNotFoundError:
        return []
    cut = len(u.path) + 1
    files = [(i.path[cut:], int(i.size)) for i in infos if i.type == pafs.FileType.File]
    return sorted(files)


def exists(url: str) -> bool:
    """Whether the object `url` exists."""
    u = S3Url.parse(url)
    fs = filesystem()
    with _errors(u):
        return bool(fs.get_file_info(u.path).type == pafs.FileType.File)


def size(url: str) -> int | None:
    """The size of the object `url`, or None when there is no such object."""
    u = S3Url.parse(url)
    fs = filesystem()
    with _errors(u):
        info = fs.get_file_info(u.path)
    return int(info.size) if info.type == pafs.FileType.File else None


def read_bytes(url: str) -> bytes:
    """The whole object `url` (for small ones: manifests, tokenizers).

    Raises:
        FileNotFoundError: No such object.
    """
    u = S3Url.parse(url)
    fs = filesystem()
    with _errors(u), fs.open_input_stream(u.path, compression=None) as f:
        return bytes(f.read())


def download(
    url: str, dest: PathLike, *, sha256: str | None = None, size: int | None = None
) -> str:
    """Copies the object `url` to the local file `dest` and returns its hex SHA-256.

    Writes a temporary name next to `dest` (`.NAME.RANDOM.part`) and renames it when the whole
    object is there and matches: `dest` is either absent, as it was, or complete. With `size`
    or `sha256`, a mismatch removes the temporary file and raises (the hash is computed while
    streaming, no second read).

    Raises:
        FileNotFoundError: No such object.
        DataprepError: The server refused, or the object is not of the expected size or hash.
    """
    u = S3Url.parse(url)
    fs = filesystem()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    h = hashlib.sha256()
    n = 0
    try:
        with (
            _errors(u),
            fs.open_input_stream(u.path, compression=None) as src,
            open(tmp, "wb") as out,
        ):
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                n += len(chunk)
        digest = h.hexdigest()
        if size is not None and n != size:
            raise DataprepError(f"{u}: {n} bytes, expected {size}")
        if sha256 is not None and digest != sha256:
            raise DataprepError(
                f"{u}: checksum mismatch (sha256 {digest[:12]}…, expected {sha256[:12]}…)"
            )
        os.replace(tmp, dest)
        return digest
    finally:
        tmp.unlink(missing_ok=True)


def upload(src: PathLike, url: str) -> int:
    """Copies the local file `src` to the object `url` (replacing it); returns the bytes.

    S3 replaces an object atomically: readers see the old object or the new one, never a part.

    Raises:
        DataprepError: The server refused (the message names the fix for HTTP 411).
    """
    u = S3Url.parse(url)
    fs = filesystem()
    n = 0
    with _errors(u), open(src, "rb") as f, fs.open_output_stream(u.path, compression=None) as out:
        while chunk := f.read(CHUNK):
            out.write(chunk)
            n += len(chunk)
    return n


def delete(url: str) -> bool:
    """Removes the object `url`; False when there was none."""
    u = S3Url.parse(url)
    fs = filesystem()
    try:
        with _errors(u):
            fs.delete_file(u.path)
    except FileNotFoundError:
        return False
    except DataprepError:
        # NOTE: after the delete, pyarrow writes an empty `prefix/` object so that the
        # "directory" survives; servers that refuse such keys (rclone) fail that second step
        # with the object already gone. Gone is what was asked.
        if exists(url):
            raise
    return True


def upload_set(
    directory: PathLike,
    url: str,
    *,
    commit: str = COMMIT,
    indexes: Sequence[str] = (),
    threads: int = 4,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[int, int]:
    """Uploads a finished local output directory to the prefix `url` as a committed set.

    Order: (1) the commit object `url/commit` and the `indexes` are removed if present, (2)
    every other file is uploaded (`threads` at a time), (3) the `indexes` in order, (4) the
    commit object last. A reader that finds the commit object (or an index) therefore finds
    every object it names, complete; one that reads during an upload finds no commit object
    ("unfinished run"), never a manifest that names objects of another version. A rerun after
    a kill uploads everything again and commits.

    Files whose name starts with `.` (locks, journals, temporary files) are not uploaded.
    Objects under `url` that the directory does not have are left as they are.

    Args:
        directory: The local directory (with `commit` in it: only a finished set is uploaded).
        url: The destination prefix (`s3://bucket/prefix`).
        commit: The file uploaded last (relative to `directory`).
        indexes: Files that other readers open first and that name the data files (an MDS
            split's `index.json`, a Megatron `.idx`): uploaded after the data, before `commit`.
        threads: Objects uploaded at once.
        progress: Called with `(name, bytes)` after each object is uploaded.

    Returns:
        `(objects, bytes)` uploaded.

    Raises:
        FileNotFoundError: `directory` or its commit file does not exist.
        DataprepError: The server refused (the message names the object).
    """
    root = Path(directory)
    if not (root / commit).is_file():
        raise FileNotFoundError(
            f"{root / commit}: missing; only a finished output directory is uploaded"
        )
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    base = S3Url.parse(url)
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    missing = [n for n in indexes if n not in names or n == commit]
    if missing:
        raise FileNotFoundError(f"{root / missing[0]}: an index to upload that is not in the set")
    last = {commit, *indexes}
    data = [n for n in names if n not in last]
    for name in [commit, *indexes]:
        delete(str(base / name))

    def one(name: str) -> int:
        n = upload(root / name, str(base / name))
        if progress is not None:
            progress(name, n)
        return n

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dataprep-upload") as pool:
        total = sum(pool.map(one, data))
    total += sum(one(name) for name in [*indexes, commit])
    return len(data) + len(indexes) + 1, total


__all__ = [
    "CHECKSUM_FIX",
    "COMMIT",
    "S3Url",
    "delete",
    "download",
    "endpoint",
    "exists",
    "filesystem",
    "is_remote",
    "join",
    "list_files",
    "read_bytes",
    "settings",
    "settings_applied",
    "upload",
    "upload_set",
]
