"""Atomic checkpoints: `RUN/checkpoints/step-00000100/{state.pt, meta.json}`.

A checkpoint is written under a temporary name and renamed into place, so a directory named
`step-*` is always complete: a crash (or `kill -9`) while saving leaves the previous checkpoint
as the latest. The newest `keep_last` are kept. One file holds everything resume needs: model,
optimizer, the step (the learning-rate schedule is a pure function of it), the data position
(epoch, step in epoch) and every rank's RNG states. `meta.json` is the same minus tensors, for
people and tools, and it records the SHA-256 of `state.pt` and of itself (`checksums`), so a
flipped byte in either is found before the state is used: `load_latest_good` then reports it (one
line) and falls back to the previous checkpoint.

Sharded checkpoints (`--parallel fsdp`, `save_sharded`): every rank writes its shards of the
model and optimizer with `torch.distributed.checkpoint` (DCP) into `dcp/` of the same temporary
directory, rank 0 writes `state.pt` without them (step, RNG states, metrics interval) and then,
once every rank's files are complete, hashes all files into `meta.json` and renames the
directory into place: the same guarantees (atomic, verified, keep-last-K) as a one-file
checkpoint. DCP records each tensor's global shape, so the shards load into any number of ranks,
with or without FSDP (`Trainer._resume`), and `load(...)` gives whole tensors to one process
(export, `--init-from`). The other way, a one-file checkpoint resumes under FSDP: every rank
reads the whole state and keeps its shards (`optimizer_state_by_name` renames the AdamW state
for `set_state_dict`).

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
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep.shards import sha256_file
from train import distributed

_NAME = re.compile(r"^step-(\d{8})$")
STATE = "state.pt"
META = "meta.json"
SHARDED = "dcp"  # the torch.distributed.checkpoint directory of a sharded checkpoint


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
    tmp, final = _start(run_dir, step, os.getpid())
    _write_state(tmp, state)
    return _finish(run_dir, tmp, final, meta, keep_last)


def _start(run_dir: Path, step: int, pid: int) -> tuple[Path, Path]:
    """A fresh temporary directory for checkpoint `step` (rank 0) and the final name."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp-{pid}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, final


def _write_state(tmp: Path, state: dict[str, Any]) -> None:
    with open(tmp / STATE, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _files(directory: Path) -> list[str]:
    """Every file under `directory`, as sorted relative POSIX paths."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _finish(run_dir: Path, tmp: Path, final: Path, meta: dict[str, Any], keep_last: int) -> Path:
    """Records the SHA-256 of every file of `tmp` in its meta.json, renames it to `final` and
    prunes to `keep_last` (rank 0, once every file of the checkpoint is written)."""
    root = checkpoint_dir(run_dir)
    # Read back (from the page cache): the digest is of the bytes that resume will read.
    checksums = {name: sha256_file(tmp / name) for name in _files(tmp) if name != META}
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


@contextmanager
def _quiet_dcp() -> Iterator[None]:
    """DCP's own warnings that do not concern us: a one-process load ("assuming the intent is
    to load in a single process", which it is), and its use of `TypedStorage` internals."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*TypedStorage.*", category=UserWarning)
        yield


@dataclass
class PendingSave:
    """A sharded checkpoint whose DCP files are still being written in the background
    (`--async-checkpoint`); `wait()` on every rank completes it (rank 0 then hashes and renames
    it into place). Until then the previous checkpoint is the latest."""

    future: Future[Any]
    finish: Callable[[], Path | None]

    def wait(self) -> Path | None:
        self.future.result()
        path = self.finish()
        distributed.barrier()
        return path


_CKPT_GROUP: list[Any] = []


def _checkpoint_group() -> Any:
    """A gloo process group of its own for background saves: their collectives then never
    interleave with the training's on the default group (torchtitan does the same)."""
    if not _CKPT_GROUP:
        _CKPT_GROUP.append(torch.distributed.new_group(backend="gloo"))
    return _CKPT_GROUP[0]


def save_sharded(
    run_dir: Path,
    step: int,
    tensors: dict[str, Any],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int,
    *,
    background: bool = False,
) -> Path | PendingSave | None:
    """Writes sharded checkpoint `step`: a collective, called on every rank with its own shards
    (`tensors`, DTensors from `get_state_dict`); `state` and `meta` are used on rank 0.

    Returns the final path on rank 0 (None on the others), or with `background` a
    `PendingSave` once the tensors are staged in memory (training may go on; call `wait()` on
    every rank before the next save and at the end).
    """
    import torch.distributed.checkpoint as dcp

    main = distributed.rank() == 0
    pid = int(distributed.broadcast_object(os.getpid()))  # type: ignore[call-overload]
    tmp, final = (
        _start(run_dir, step, pid)
        if main
        else (
            checkpoint_dir(run_dir) / f".step-{step:08d}.tmp-{pid}",
            checkpoint_dir(run_dir) / f"step-{step:08d}",
        )
    )
    distributed.barrier()  # the directory exists before any rank writes into it
    if main:
        _write_state(tmp, state)

    def finish() -> Path | None:
        return _finish(run_dir, tmp, final, meta, keep_last) if main else None

    if background:
        # NOTE: the writer thread outlives `_quiet_dcp` (whose filters are restored on exit):
        # its TypedStorage warning is silenced for DCP's own modules, process-wide.
        warnings.filterwarnings(
            "ignore",
            message=".*TypedStorage.*",
            category=UserWarning,
            module=r"torch\.distributed\.checkpoint",
        )
    with _quiet_dcp():
        if background:
            future = dcp.async_save(  # type: ignore[attr-defined]
                tensors, checkpoint_id=tmp / SHARDED, process_group=_checkpoint_group()
            )
            return PendingSave(future, finish)  # type: ignore[arg-type]
        dcp.save(tensors, checkpoint_id=tmp / SHARDED)  # type: ignore[attr-defined]
    distributed.barrier()  # every rank's shards are on disk
    path = finish()
    distributed.barrier()
    return path


def is_sharded(path: Path) -> bool:
    """Whether checkpoint `path` holds its tensors as DCP shards (`--parallel fsdp`)."""
    return (Path(path) / SHARDED).is_dir()


def load_sharded(path: Path, tensors: dict[str, Any]) -> None:
    """Fills `tensors` (from `get_state_dict`: sharded or whole) in place from the DCP shards
    of `path`, whatever the number of ranks that saved them; a collective when a process group
    is up."""
    import torch.distributed.checkpoint as dcp

    with _quiet_dcp():
        dcp.load(tensors, checkpoint_id=Path(path) / SHARDED)  # type: ignore[attr-defined]


def load_full_weights(path: Path) -> dict[str, torch.Tensor]:
    """The whole model state dict of sharded checkpoint `path` (every tensor complete), read by
    this process alone (`no_dist`: no collective, so one rank may call it, e.g. the export at
    the end of a run)."""
    # NOTE: the private loader of `format_utils.dcp_to_torch_save`: the public `dcp.load` only
    # fills keys the caller's dict already has.
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    out: dict[str, Any] = {}
    try:
        with _quiet_dcp():
            _load_state_dict(
                out,
                storage_reader=FileSystemReader(Path(path) / SHARDED),
                planner=_EmptyStateDictLoadPlanner(keys={"model"}),  # type: ignore[no-untyped-call]
                no_dist=True,
            )
    except Exception as e:  # a damaged shard can raise anything
        raise CorruptCheckpoint(f"{Path(path) / SHARDED}: cannot load ({e})") from e
    return dict(out["model"])


def optimizer_state_by_name(
    saved: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """An optimizer state of `optimizer.state_dict()`'s form (parameters numbered in the order
    of the param groups) keyed by parameter name instead, the form `set_state_dict` takes: how
    a one-file (ddp) checkpoint's AdamW state goes into an FSDP-sharded optimizer.

    `optimizer` is this run's, built over `model` the way the saving run built its own
    (`optim.build_optimizer`: same groups, same parameter order; `fully_shard` keeps names and
    order), so number `k` of the saved state is the `k`-th parameter of its groups.

    Raises:
        ValueError: The saved groups do not have this optimizer's sizes (another model or
            another grouping; one line).
    """
    groups = optimizer.param_groups
    want = [len(g["params"]) for g in groups]
    got = [len(g["params"]) for g in saved["param_groups"]]
    if got != want:
        raise ValueError(f"its optimizer has param groups of {got} parameters, this run's {want}")
    names = {id(p): name for name, p in model.named_parameters()}
    fqn: dict[int, str] = {}
    for saved_group, group in zip(saved["param_groups"], groups, strict=True):
        for number, param in zip(saved_group["params"], group["params"], strict=True):
            fqn[number] = names[id(param)]
    return {
        "state": {fqn[k]: v for k, v in saved["state"].items()},
        "param_groups": [
            {**g, "params": [fqn[k] for k in g["params"]]} for g in saved["param_groups"]
        ],
    }


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
    sums = {name: want for name, want in meta["checksums"].items() if name != META}
    present = [name for name in _files(Path(path)) if name != META]
    for name in [STATE, *sorted(set(present) - {STATE})]:
        if name not in sums:
            raise CorruptCheckpoint(f"{Path(path) / name}: not recorded in meta.json")
    for name, want in sums.items():
        file = Path(path) / name
        try:
            got = sha256_file(file)
        except OSError as e:
            raise CorruptCheckpoint(f"{file}: unreadable ({e.strerror})") from None
        if got != want:
            raise CorruptCheckpoint(
                f"{file}: checksum mismatch (sha256 {got[:12]}…, meta.json says {str(want)[:12]}…)"
            )
    return meta


def load(path: Path, *, check: bool = True, full_weights: bool = True) -> dict[str, Any]:
    """The state saved by `save` or `save_sharded` (on the CPU; the caller moves tensors where
    they belong).

    `check`: verify the checksums first (`verify`). `full_weights`: of a sharded checkpoint,
    also read the whole model into `state["model"]` (as a one-file checkpoint has it); the
    trainer passes False and loads the shards itself (`load_sharded`). Raises
    CorruptCheckpoint (a RuntimeError) naming the file when a checksum does not match or the
    state does not load.
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
    if full_weights and is_sharded(path):
        state["model"] = load_full_weights(path)
    return state


def load_latest_good(
    run_dir: Path, *, full_weights: bool = True
) -> tuple[Path, dict[str, Any], list[str]] | None:
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
            state = load(path, full_weights=full_weights)
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
