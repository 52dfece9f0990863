"""Atomic checkpoints: `RUN/checkpoints/step-00000100/{state.pt, meta.json}`.

A checkpoint is written under a temporary name and renamed into place, so a directory named
`step-*` is always complete: a crash (or `kill -9`) while saving leaves the previous checkpoint
as the latest. The newest `keep_last` are kept. One file holds everything resume needs: model,
optimizer, the step (the learning-rate schedule is a pure function of it), the data position
(epoch, step in epoch) and every rank's RNG states. `meta.json` is the same minus tensors, for
people and tools.

NOTE: ranks read the checkpoint from the same path, so multi-node runs need `--out` on a
shared filesystem (as torchtitan and nanoGPT assume).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step-(\d{8})$")


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
    with open(tmp / "state.pt", "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    with open(tmp / "meta.json", "w") as fh:
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


def load(path: Path) -> dict[str, Any]:
    """The state saved by `save` (on the CPU; the caller moves tensors where they belong)."""
    try:
        # weights_only=False: the RNG states are numpy/Python objects; the file is our own.
        state: dict[str, Any] = torch.load(
            Path(path) / "state.pt", map_location="cpu", weights_only=False
        )
        return state
    except (OSError, RuntimeError, EOFError) as e:
        raise RuntimeError(f"{path}: cannot read checkpoint: {e}") from e
