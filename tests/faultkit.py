"""Fault injection shared by `tests/test_fault_injection.py` (CI-sized) and
`bench/fault_injection.py` (many trials, writes the figures of RELIABILITY.md).

Three faults, each against an uninterrupted reference run:
- `kill_trials`: SIGKILL of the whole process group (the command, or torchrun and its ranks) at a
  random moment within the measured duration of an uninterrupted run, then the same command
  rerun to completion; every output file's bytes must equal the reference's.
- `flip_byte`: one bit of a random byte of a file; the reader must name the file.
- `run_with_fsize_limit`: RLIMIT_FSIZE for one command (SIGXFSZ ignored, so a write past it
  fails with EFBIG, as on a full disk).

Randomness comes from one `random.Random(seed)`; every failure message carries the seed
(`FAULT_SEED=<seed>` reproduces it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Ranks of the trainer under test: one thread each (2 shared cores), Python warnings off.
TRAINER_ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def seed_from_env() -> int:
    """`FAULT_SEED` if set, else a fresh seed (printed by the caller so a failure reproduces)."""
    return int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))


def dataprep_cmd(args: Sequence[str]) -> list[str]:
    """The CLI as a user runs it, in a fresh interpreter."""
    return [sys.executable, "-m", "dataprep.cli", *args]


def trainer_cmd(args: Sequence[str], nproc: int = 2) -> list[str]:
    """`torchrun --standalone --nproc-per-node N -m train ARGS` (plain python for 1 process)."""
    if nproc == 1:
        return [sys.executable, "-m", "train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "train", *args]  # fmt: skip


def tree_digest(d: Path) -> dict[str, str]:
    """SHA-256 of every file under `d` (hidden ones included: a leftover temporary, journal or
    lock is a difference too), keyed by relative path."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def dedup_digest(d: Path) -> dict[str, str]:
    """`tree_digest` of a dedup output, but for summary.json's wall-clock fields (`*_seconds`)
    and its output paths (which name `d`): the rest of the summary must match."""
    digest = tree_digest(d)
    summary = json.loads((d / "summary.json").read_text())
    kept = {k: v for k, v in summary.items() if not k.endswith("_seconds")}
    text = json.dumps(kept, sort_keys=True).replace(str(d), "OUT")
    digest["summary.json"] = hashlib.sha256(text.encode()).hexdigest()
    return digest


def run(cmd: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` to completion; raises with its stderr if it fails."""
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def timed_run(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Runs `cmd` to completion and returns its wall time in seconds."""
    t = time.perf_counter()
    run(cmd, env)
    return time.perf_counter() - t


def kill_9_at(cmd: Sequence[str], delay: float, env: dict[str, str] | None = None) -> bool:
    """Starts `cmd` in its own process group, SIGKILLs the group after `delay` seconds (a machine
    losing power, or `kill -9` of a job: no handler runs). True if it was still running then."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    time.sleep(delay)
    alive = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):  # the group is gone: the run had finished
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


@dataclasses.dataclass
class Tally:
    """What a series of trials did, for RELIABILITY.md."""

    trials: int = 0
    faults: int = 0  # kills that landed while the command ran (the others hit a finished run)
    files_compared: int = 0
    lost: int = 0  # outputs that differ from the reference after the rerun: must stay 0

    def add(self, other: Tally) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def kill_trials(
    name: str,
    cmd: Callable[[Path], list[str]],
    workdir: Path,
    trials: int,
    rng: random.Random,
    seed: int,
    *,
    digest: Callable[[Path], dict[str, str]] = tree_digest,
    env: dict[str, str] | None = None,
) -> Tally:
    """`trials` kill -9 + rerun trials of `cmd(out)` against one uninterrupted run.

    The output of each trial must be the reference's, byte for byte (`digest` of the output
    path); an AssertionError names the trial, its kill moment and the seed."""
    ref = workdir / "ref"
    duration = timed_run(cmd(ref), env)
    want = digest(ref)
    assert want, f"{name}: the reference run wrote nothing"
    tally = Tally()
    for k in range(trials):
        out = workdir / f"trial-{k}"
        delay = rng.uniform(0, duration)
        tally.faults += kill_9_at(cmd(out), delay, env)
        run(cmd(out), env)
        got = digest(out)
        tally.trials += 1
        tally.files_compared += len(want)
        differ = sorted(p for p in want.keys() | got.keys() if want.get(p) != got.get(p))
        tally.lost += len(differ)
        assert not differ, (
            f"{name}: killed at {delay:.3f}s of {duration:.3f}s (trial {k}, FAULT_SEED={seed}); "
            f"after the rerun these differ from the uninterrupted run: {differ}"
        )
    return tally


def flip_byte(path: Path, rng: random.Random) -> int:
    """Flips one random bit of one random byte of `path`; returns the offset."""
    raw = bytearray(path.read_bytes())
    offset = rng.randrange(len(raw))
    raw[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(raw))
    return offset


# Sets the limit, ignores SIGXFSZ (so a write past the limit fails with EFBIG instead of killing
# the process) and execs the command: both survive exec. NOTE: not `preexec_fn`, which is unsafe
# (and warned about) in a process with threads, as pytest's is once the extension has run.
_FSIZE_EXEC = (
    "import os, resource, signal, sys; n = int(sys.argv[1]);"
    " signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
    " resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


def run_with_fsize_limit(cmd: Sequence[str], limit: int) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` with no file allowed to grow past `limit` bytes (the disk fills up)."""
    return subprocess.run(
        [sys.executable, "-c", _FSIZE_EXEC, str(limit), *cmd],
        capture_output=True,
        text=True,
        timeout=600,
    )
