"""Atomic checkpoints: `RUN/checkpoints/step-00000100/{state.pt, meta.json}`.

A checkpoint is written under a temporary name and renamed into place, so a directory named
`step-*` is always complete: a crash (or `kill -9`) while saving leaves the previous checkpoint
as the latest. The newest `keep_last` are kept. One file holds everything resume needs: model,
optimizer, the step (the learning-rate schedule is a pure function of it), the data position
(epoch, step in epoch) and every rank's RNG states. `meta.json` is the same minus tensors, for
people and tools, and it records the SHA-256 of `state.pt` and of itself (`checksums`), so a
flipped byte in either is found before the state is used: `load_latest_good` then reports it (one
line) and falls back to the previous checkpoint.

NOTE: ranks read the checkpoint from the same path, so multi-node runs need `--out` on a
shared filesystem (as torchtitan and nanoGPT assume).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep.shards import sha256_file

_NAME = re.compile(r"^step-(\d{8})$")
STATE = "state.pt"
META = "meta.json"


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose files do not match their recorded checksums, or do not load; the
    message is one line naming the file."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def latest(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's random-number generator states (Python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    run_dir: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep_last: int
) -> Path:
    """Writes checkpoint `step` atomically, then drops all but the newest `keep_last`.

    Call on one rank (rank 0): model and optimizer states are the same on every DDP rank.
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / STATE, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    # Read back (from the page cache): the digest is of the bytes that resume will read.
    checksums = {STATE: sha256_file(tmp / STATE)}
    meta = {**meta, "checksums": checksums}
    checksums[META] = _meta_digest(meta)
    with open(tmp / META, "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():  # the same step saved again (a resumed run that stopped at once)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    # Temporaries of crashed saves (other pids) are garbage once a newer save completed.
    for stale in root.glob(".step-*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of `meta` as canonical JSON, without its own entry in `checksums`."""
    sums = {k: v for k, v in meta.get("checksums", {}).items() if k != META}
    body = {**meta, "checksums": sums}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def is_legacy(meta: dict[str, Any]) -> bool:
    """A checkpoint of a trainer that recorded no checksums and no data fingerprint: it cannot
    be verified. (One flipped byte can damage one key, never both.)"""
    return "checksums" not in meta and "data" not in meta


def read_meta(path: Path) -> dict[str, Any]:
    """`meta.json` of checkpoint `path`, checked against its own checksum (a legacy one, see
    `is_legacy`, is returned unchecked).

    Raises:
        CorruptCheckpoint: It is missing, not JSON, or its content does not match its checksum.
    """
    file = Path(path) / META
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCheckpoint(f"{file}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(f"{file}: not a JSON object")
    if is_legacy(meta):
        return meta
    sums = meta.get("checksums")
    if not isinstance(sums, dict) or not isinstance(sums.get(META), str):
        raise CorruptCheckpoint(f"{file}: its checksums are missing or damaged")
    if _meta_digest(meta) != sums[META]:
        raise CorruptCheckpoint(f"{file}: content does not match its recorded SHA-256")
    return meta


def verify(path: Path) -> dict[str, Any]:
    """Checks `meta.json` and `state.pt` of checkpoint `path` against the recorded SHA-256s;
    returns the meta. Raises CorruptCheckpoint naming the file that does not match."""
    meta = read_meta(path)
    if is_legacy(meta):
        return meta
    state = Path(path) / STATE
    want = meta["checksums"].get(STATE)
    try:
        got = sha256_file(state)
    except OSError as e:
        raise CorruptCheckpoint(f"{state}: unreadable ({e.strerror})") from None
    if got != want:
        raise CorruptCheckpoint(
            f"{state}: checksum mismatch (sha256 {got[:12]}…, meta.json says {str(want)[:12]}…)"
        )
    return meta


def load(path: Path, *, check: bool = True) -> dict[str, Any]:
    """The state saved by `save` (on the CPU; the caller moves tensors where they belong).

    `check`: verify the checksums first (`verify`). Raises CorruptCheckpoint (a RuntimeError)
    naming the file when a checksum does not match or the state does not load.
    """
    if check:
        verify(path)
    try:
        # weights_only=False: the RNG states are numpy/Python objects; the file is our own.
        state: dict[str, Any] = torch.load(
            Path(path) / STATE, map_location="cpu", weights_only=False
        )
    except Exception as e:  # unpickling a damaged file can raise anything
        raise CorruptCheckpoint(f"{Path(path) / STATE}: cannot load ({e})") from e
    return state


def load_latest_good(run_dir: Path) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint of the run that passes its checksums and loads, with one line per
    newer checkpoint that did not, and one if it is a legacy checkpoint that could not be
    verified (`(path, state, notes)`); None when the run has none.

    Raises:
        CorruptCheckpoint: There are checkpoints, and none of them is good (the message lists
            why, newest first).
    """
    found = list_checkpoints(run_dir)
    problems: list[str] = []
    for path in reversed(found):
        try:
            state = load(path)
        except CorruptCheckpoint as e:
            problems.append(str(e))
            continue
        notes = [f"skipped {line}" for line in problems]
        if is_legacy(state):
            notes.append(f"{path}: saved by an older trainer, without checksums: not verified")
        return path, state, notes
    if problems:
        raise CorruptCheckpoint(
            f"no usable checkpoint in {checkpoint_dir(run_dir)}: " + "; ".join(problems)
        )
    return None
