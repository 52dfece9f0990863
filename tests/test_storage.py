"""dataprep.storage against a real S3-compatible server (`rclone serve s3`, tests/s3server.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from s3server import S3Server

import dataprep
from dataprep import storage


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_list_upload_download_round_trip(s3_env: S3Server, tmp_path: Path) -> None:
    base = s3_env.bucket("rtrip")
    src = _tree(tmp_path / "src", {"b.bin": os.urandom(3 << 20), "a/x.txt": b"x" * 10})
    assert storage.list_files(f"{base}/p") == []
    for name in ("b.bin", "a/x.txt"):
        storage.upload(src / name, f"{base}/p/{name}")
    assert storage.list_files(f"{base}/p") == [("a/x.txt", 10), ("b.bin", 3 << 20)]
    assert storage.list_files(f"{base}/p/") == storage.list_files(f"{base}/p")
    assert storage.exists(f"{base}/p/b.bin") and not storage.exists(f"{base}/p/c.bin")
    assert storage.read_bytes(f"{base}/p/a/x.txt") == b"x" * 10
    want = hashlib.sha256((src / "b.bin").read_bytes()).hexdigest()
    got = storage.download(f"{base}/p/b.bin", tmp_path / "dl" / "b.bin", sha256=want)
    assert got == want
    assert (tmp_path / "dl" / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["b.bin"]  # no temporary left
    with pytest.raises(FileNotFoundError, match=r"s3://rtrip/p/c\.bin: no such object"):
        storage.read_bytes(f"{base}/p/c.bin")


def test_settings_applied_are_exactly_the_drivers(
    s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Ray task does with the driver's settings: a node's own AWS_* (here an endpoint
    that takes precedence and a stray session token) is not used, and is back afterwards."""
    base = s3_env.bucket("settings")
    driver = storage.settings()
    assert driver == {k: v for k, v in s3_env.env.items() if v}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_SESSION_TOKEN", "node-token")
    with pytest.raises(dataprep.DataprepError, match=r"cannot reach http://127\.0\.0\.1:9"):
        storage.list_files(base)
    with storage.settings_applied(driver):
        assert storage.settings() == driver
        assert storage.list_files(base) == []
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert os.environ["AWS_SESSION_TOKEN"] == "node-token"
    with (
        pytest.raises(ValueError, match="HOME: not an object-storage setting"),
        storage.settings_applied({"HOME": "/"}),
    ):
        pass


def test_download_checksum_mismatch_leaves_nothing(s3_env: S3Server, tmp_path: Path) -> None:
    base = s3_env.bucket("mismatch")
    (tmp_path / "f").write_bytes(b"payload" * 1000)
    storage.upload(tmp_path / "f", f"{base}/f")
    dest = tmp_path / "out" / "f"
    with pytest.raises(
        dataprep.DataprepError, match=r"^s3://mismatch/f: checksum mismatch \(sha256 "
    ):
        storage.download(f"{base}/f", dest, sha256="0" * 64)
    with pytest.raises(
        dataprep.DataprepError, match=r"^s3://mismatch/f: 7000 bytes, expected 7001$"
    ):
        storage.download(f"{base}/f", dest, size=7001)
    assert list(dest.parent.iterdir()) == []


_KILL_AFTER_DATA = """
import os, signal, sys
from dataprep import storage
n = int(sys.argv[3])
def progress(name, size, seen=[]):
    seen.append(name)
    if len(seen) == n:
        os.kill(os.getpid(), signal.SIGKILL)
storage.upload_set(sys.argv[1], sys.argv[2], threads=1, progress=progress)
"""


def _killed_upload(src: Path, url: str, after: int) -> None:
    """`upload_set` in a fresh process, SIGKILLed once `after` objects are uploaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_DATA, os.fspath(src), url, str(after)], env=env
    )
    assert proc.returncode == -9


def test_upload_set_commits_last_and_a_rerun_finishes(s3_env: S3Server, tmp_path: Path) -> None:
    base = s3_env.bucket("sets") + "/shards"
    v1 = {"train-00000.arrow": b"a" * 5000, "tok.json": b"{}", "manifest.json": b'{"v": 1}'}
    v2 = {"train-00000.arrow": b"b" * 6000, "train-00001.arrow": b"c" * 10, "tok.json": b"{}",
          "manifest.json": b'{"v": 2}', ".dataprep.lock": b""}  # fmt: skip
    one, two = _tree(tmp_path / "v1", v1), _tree(tmp_path / "v2", v2)
    assert storage.upload_set(one, base) == (3, 5000 + 2 + 8)
    assert storage.read_bytes(f"{base}/manifest.json") == b'{"v": 1}'

    # Killed after every data object of v2 is up, before the manifest: no manifest at all (not
    # v1's naming v2's objects), and the data objects are there.
    _killed_upload(two, base, after=3)
    names = dict(storage.list_files(base))
    assert "manifest.json" not in names and names["train-00001.arrow"] == 10
    # Killed after the first object: the same.
    _killed_upload(two, base, after=1)
    assert not storage.exists(f"{base}/manifest.json")

    assert storage.upload_set(two, base) == (4, 6000 + 10 + 2 + 8)
    assert storage.list_files(base) == [
        ("manifest.json", 8), ("tok.json", 2), ("train-00000.arrow", 6000),
        ("train-00001.arrow", 10),
    ]  # fmt: skip
    assert storage.read_bytes(f"{base}/manifest.json") == b'{"v": 2}'
    with pytest.raises(FileNotFoundError, match="only a finished output directory"):
        storage.upload_set(tmp_path / "v1" / "nothing", base)


def test_upload_set_indexes_go_after_the_data(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`indexes` (an MDS split's index.json, a Megatron .idx): removed first with the commit
    object, before any upload; uploaded after every data object and before the commit object."""
    base = s3_env.bucket("sets") + "/indexed"
    files = {"a/shard.00000.mds": b"x" * 300, "a/shard.00001.mds": b"y", "a/index.json": b"{}",
             "b.idx": b"i", "b.bin": b"bb", "export.json": b'{"v": 1}'}  # fmt: skip
    root = _tree(tmp_path / "set", files)
    calls: list[str] = []
    delete, upload = storage.delete, storage.upload
    monkeypatch.setattr(storage, "delete", lambda u: calls.append(f"delete {u}") or delete(u))
    monkeypatch.setattr(storage, "upload", lambda p, u: calls.append(f"upload {u}") or upload(p, u))
    n = storage.upload_set(root, base, commit="export.json", indexes=["a/index.json", "b.idx"])
    assert n == (6, 300 + 1 + 2 + 1 + 2 + 8)
    names = [c.removeprefix(f"upload {base}/") for c in calls[3:]]
    assert calls[:3] == [f"delete {base}/{x}" for x in ("export.json", "a/index.json", "b.idx")]
    assert sorted(names[:3]) == ["a/shard.00000.mds", "a/shard.00001.mds", "b.bin"]
    assert names[3:] == ["a/index.json", "b.idx", "export.json"]
    assert {name: storage.read_bytes(f"{base}/{name}") for name, _ in storage.list_files(base)} == {
        name: data for name, data in files.items()
    }
    with pytest.raises(FileNotFoundError, match=r"b\.json: an index to upload that is not in"):
        storage.upload_set(root, base, commit="export.json", indexes=["b.json"])


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("gs://b/shards", "gs:// is not supported"),
        ("hdfs://nn/shards", "hdfs:// is not supported"),
        ("http://host/shards", "http:// is not supported"),
        ("file:///tmp/shards", "file:// is not supported (object storage is s3:// only; give"),
        ("s3://B_ad/shards", "'B_ad' is not a bucket name"),
        ("s3://bucket/a/../b", "empty, '.' or '..' part"),
    ],
)
def test_unsupported_urls_are_refused(url: str, what: str) -> None:
    with pytest.raises(ValueError, match=f"^{url}: ") as e:
        storage.list_files(url)
    assert what in str(e.value) and "\n" not in str(e.value)


def test_server_errors_are_one_line_naming_the_url(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = s3_env.bucket("errors")
    (tmp_path / "f").write_bytes(b"x")
    storage.upload(tmp_path / "f", f"{base}/f")
    with pytest.raises(dataprep.DataprepError, match=r"^s3://nobucket/p: no such bucket at http"):
        storage.list_files("s3://nobucket/p")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
    for call in (lambda: storage.list_files(base), lambda: storage.read_bytes(f"{base}/f")):
        with pytest.raises(
            dataprep.DataprepError, match=r"^s3://errors.*: access denied by http"
        ) as e:
            call()
        assert "AWS_SECRET_ACCESS_KEY" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ValueError, match=r"^AWS_SECRET_ACCESS_KEY is not set"):
        storage.list_files(base)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    with pytest.raises(
        dataprep.DataprepError, match=r"^s3://errors/f: cannot reach http://127\.0\.0\.1:1"
    ):
        storage.read_bytes(f"{base}/f")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:1")
    with pytest.raises(ValueError, match=r"^AWS_ENDPOINT_URL=127\.0\.0\.1:1: expected http://"):
        storage.read_bytes(f"{base}/f")


def test_trailing_checksum_refusal_names_the_fix(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclone refuses the SDK's default trailing checksums (HTTP 411): the error names the two
    variables, and with them set (the fixture's environment) the same upload works."""
    base = s3_env.bucket("crcs")
    (tmp_path / "f").write_bytes(b"x" * 100)
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION")
    monkeypatch.delenv("AWS_RESPONSE_CHECKSUM_VALIDATION")
    with pytest.raises(dataprep.DataprepError) as e:
        storage.upload(tmp_path / "f", f"{base}/f")
    msg = str(e.value)
    assert msg.startswith("s3://crcs/f: ") and "HTTP 411" in msg and "\n" not in msg
    assert "AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED" in msg
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    assert storage.upload(tmp_path / "f", f"{base}/f") == 100


def test_compressed_files_are_stored_as_they_are(s3_env: S3Server, tmp_path: Path) -> None:
    """pyarrow compresses and decompresses by extension unless told not to: a `.gz` object must
    hold the file's bytes (its listed size is the file's), and come back unchanged."""
    import gzip

    base = s3_env.bucket("gzbytes")
    src = tmp_path / "a.jsonl.gz"
    src.write_bytes(gzip.compress(b'{"text": "x"}\n' * 1000))
    storage.upload(src, f"{base}/a.jsonl.gz")
    assert storage.list_files(base) == [("a.jsonl.gz", src.stat().st_size)]
    assert storage.read_bytes(f"{base}/a.jsonl.gz") == src.read_bytes()
    storage.download(f"{base}/a.jsonl.gz", tmp_path / "b.jsonl.gz", size=src.stat().st_size)
    assert (tmp_path / "b.jsonl.gz").read_bytes() == src.read_bytes()
