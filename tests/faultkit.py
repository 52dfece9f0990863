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

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

import dataprep

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


def is_temporary(p: Path) -> bool:
    """A file as written before its rename into place: `.<name>.tmp-<pid>` (rust/src/fsutil.rs)."""
    return p.name.startswith(".") and ".tmp-" in p.name


def dedup_digest(d: Path) -> dict[str, str]:
    """`tree_digest` of a dedup output, but for summary.json's wall-clock fields (`*_seconds`)
    and its output paths (which name `d`): the rest of the summary must match.

    NOTE: without the temporaries a killed run left: dedup does not remove them (a known bug,
    `test_dedup_removes_the_temporaries_of_a_killed_run`); `kill_trials` counts them."""
    digest = {p: h for p, h in tree_digest(d).items() if not is_temporary(Path(p))}
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
    locks_taken_over: int = 0  # reruns that found the killed run's lock and said so (`note:`)
    leftovers: int = 0  # temporaries of the killed run still there after the rerun

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
        # The lock of a killed holder still names it (an empty one was killed mid-write).
        stale = [p for p in out.rglob(".*.lock") if p.read_text().strip()] if out.exists() else []
        rerun = run(cmd(out), env)
        if stale:
            assert "took over the lock of" in rerun.stderr, (stale, rerun.stderr[-2000:])
            tally.locks_taken_over += 1
        got = digest(out)
        tally.leftovers += sum(is_temporary(p) for p in out.rglob("*"))
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


# --- the commands under test -----------------------------------------------------------------

# The specials of both objectives (EOS for causal LM; [PAD] [CLS] [SEP] [MASK] for MLM).
TRAINER_SPECIALS = ["<|endoftext|>", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]


def make_corpus(d: Path, texts: list[str]) -> Path:
    """`texts` three times over in three JSONL files under `d` (~1.7 MB from the demo corpus):
    runs long enough (about a second) that a random kill lands in the Rust work, not only in
    interpreter start-up."""
    for k in range(3):
        lines = (json.dumps({"text": f"{k}-{i} {t}"}) + "\n" for i, t in enumerate(texts * 3))
        (d / f"part{k}.jsonl").write_text("".join(lines))
    return d


def digest_for(name: str) -> Callable[[Path], dict[str, str]]:
    """How the outputs of command `name` are compared."""
    return dedup_digest if name == "dedup" else tree_digest


def command(name: str, corpus: Path, tokenizer: Path) -> list[str]:
    """The arguments of `dataprep NAME ...` under test, without --out."""
    specials = [a for s in TRAINER_SPECIALS for a in ("--special-token", s)]
    tok = ["tokenize", str(corpus), "--tokenizer", str(tokenizer), "--val-fraction", "0.05"]
    return {
        "train-bpe": ["train-bpe", str(corpus), "--vocab-size", "800", *specials,
                      "--holdout-every", "10"],
        "tokenize-clm": [*tok, "--seq-len", "128", "--shard-size", "64KB"],
        "tokenize-mlm": [*tok, "--objective", "mlm", "--layout", "nsp", "--seq-len", "64",
                         "--shard-size", "64KB", "--static-masking", "--dupe-factor", "2",
                         "--nsp-block-docs", "16"],
        "dedup": ["dedup", str(corpus), "--mode", "near"],
    }[name]  # fmt: skip


def out_arg(name: str, out: Path) -> list[str]:
    """train-bpe writes a file set (tokenizer.json, .tiktoken, .tiktoken.json); the others a
    directory. Either way every file under `out` is compared."""
    return ["--out", str(out / "tokenizer.json" if name == "train-bpe" else out)]


COMMANDS = ["train-bpe", "tokenize-clm", "tokenize-mlm", "dedup"]


def trainer_digest(run: Path) -> dict[str, str]:
    """What an interrupted and resumed run must share with the uninterrupted one: the final
    weights and optimizer state, bit for bit, and metrics.jsonl but for its wall-clock fields."""
    import torch

    from train import checkpoint
    from train.train import WALL_CLOCK_FIELDS

    latest = checkpoint.latest(run)
    assert latest is not None, f"{run}: no checkpoint"
    state = checkpoint.load(latest)
    buf = io.BytesIO()
    for key in ("model", "optimizer"):
        torch.save(state[key], buf)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS} for r in rows]
    return {
        "state": _sha256(buf.getvalue()),
        "metrics.jsonl": _sha256(json.dumps(rows).encode()),
        "step": str(state["step"]),
    }


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


TRAINER_ARGS = ["--model", "tiny", "--device", "cpu", "--lr", "3e-3", "--warmup-steps", "2",
                "--log-every", "1", "--eval-every", "0", "--micro-batch", "4", "--max-steps", "8",
                "--ckpt-every", "3", "--num-workers", "0"]  # fmt: skip


SAMPLE = [
    {"text": f"Document {i}: caf\u00e9 \ud55c\uad6d\uc5b4 line.\n\nSecond paragraph {i}."}
    for i in range(20)
]


def jsonl_bytes() -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in SAMPLE).encode()


def wiki_bytes() -> bytes:
    docs = (
        f'<doc id="{i}" url="u" title="T{i}">\nT{i}\n{d["text"]}\n</doc>\n'
        for i, d in enumerate(SAMPLE)
    )
    return "".join(docs).encode()


def parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [d["text"] for d in SAMPLE]}), buf)
    return buf.getvalue()


# name -> (valid bytes, the --format that reads them)
VALID = {
    "a.jsonl": (jsonl_bytes(), "jsonl"),
    "a.txt": ("\n\n".join(d["text"] for d in SAMPLE).encode(), "text"),
    "a.wiki": (wiki_bytes(), "wiki"),
    "a.parquet": (parquet_bytes(), "parquet"),
    "a.jsonl.gz": (gzip.compress(jsonl_bytes(), mtime=0), "jsonl"),
    "a.jsonl.bz2": (bz2.compress(jsonl_bytes()), "jsonl"),
    "a.jsonl.zst": (pa.compress(jsonl_bytes(), codec="zstd", asbytes=True), "jsonl"),
}
POLICIES = ["replace", "skip", "error"]


def read_or_refuse(name: str, raw: bytes, fmt: str, policy: str, unit: str = "paragraph") -> str:
    """Reads `raw` as file `name`: documents ("read"), or a DataprepError/ValueError naming the
    file ("refused"). A Rust panic (pyo3's PanicException, a BaseException) propagates, and an
    abort ends the process: either fails the caller."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw)
        options = {"format": fmt, "invalid_utf8": policy}
        if fmt == "text":
            options["text_unit"] = unit
        try:
            docs, _ = dataprep.read_documents([str(path)], **options)
        except (dataprep.DataprepError, ValueError) as e:
            assert str(path) in str(e), (name, policy, str(e))
            return "refused"
        assert all(isinstance(d["text"], str) for d in docs)
        return "read"
