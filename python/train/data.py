"""Batches for training: a global shuffle, a per-rank step plan, micro-batches and loaders.

The pieces, from disk to a micro-batch (the batch contract is in `train/__init__.py`):

    ShardSet      (`dataprep.ShardSet`, the shard library) one split of a `dataprep tokenize`
                  directory: rows of all its shards, in manifest order, behind one global row
                  id; shards memory-mapped on first use; `gather` reads any rows
    GlobalOrder   a seeded permutation of the row ids per epoch, computed for any range of
                  positions in O(range) time and O(1) memory (a Feistel network), so a billion
                  rows cost nothing to shuffle and any step can be found without replaying
    StepPlan      which rows each rank feeds into each micro-batch of each optimizer step
    make_loader   a DataLoader that yields this rank's micro-batches of one epoch, in order
    verify_once   the shards' SHA-256s checked against the manifest before their first use in a
                  run, and recorded in the run directory (`verified.json`) so a resume skips it

Step plan. An optimizer step takes the next `G = world_size x grad_accum x micro_batch`
positions of the epoch's order, so the *set* of rows of step `s` depends only on
`(seed, epoch, s, G)`, never on how `G` is split into ranks and micro-batches: 1 rank x 8
micro-batches, 2 x 4 and 8 x 1 train on the same rows (and, with the loss normalized by the
global target count, take the same update). Every rank runs `ceil(N / G)` steps of `grad_accum`
micro-batches of exactly `micro_batch` rows: the last, partial step is filled up with filler rows
(`sample_index` -1, every label -100), so shapes never change and no rank waits for a collective
that another rank never calls. Each row is used exactly once per epoch.

Slot `j` of a step goes to rank `j % world_size`, so the real rows of a partial step are spread
evenly over the ranks and the fillers end up in the last micro-batches of each.

Workers. The sampler runs in the training process and hands each DataLoader worker the row ids of
one micro-batch; the dataset turns them into tensors. Workers never decide which rows they read,
so no worker count can duplicate or skip a row, and `batch_size=None` keeps the order. Dynamic
MLM masking is keyed by `(masking.seed, epoch, row id)` (`dataprep.mask_batch`), so the mask of a
row is the same on any rank, in any batch, after any resume.

>>> plan = StepPlan(10, world_size=2, grad_accum=1, micro_batch=3, shuffle=False)
>>> plan.steps_per_epoch
2
>>> plan.micro_batches(epoch=0, step=1, rank=0).tolist(), plan.micro_batches(0, 1, 1).tolist()
([[6, 8, -1]], [[7, 9, -1]])
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import dataprep
from dataprep.shards import Manifest, ShardSet

T = TypeVar("T")

IGNORE_INDEX = -100  # label of positions that take no loss (torch cross_entropy's default)
FILLER = -1  # sample_index of a filler row

_M64 = (1 << 64) - 1


def steps_per_epoch(num_rows: int, world_size: int, grad_accum: int, micro_batch: int) -> int:
    """Optimizer steps in one epoch of `num_rows` rows: `ceil(num_rows / global_batch)`.

    The same on every rank (a partial last step is filled up with filler rows).

    >>> steps_per_epoch(1000, world_size=2, grad_accum=4, micro_batch=8)  # 64 rows a step
    16
    """
    global_batch = world_size * grad_accum * micro_batch
    if global_batch < 1:
        raise ValueError("world_size, grad_accum and micro_batch must be at least 1")
    return -(-num_rows // global_batch)


# --- verified data ------------------------------------------------------------------------

VERIFIED = "verified.json"  # in the run directory


@dataclass(frozen=True)
class Verification:
    """What `verify_once` did: the files it covers, their bytes, and the seconds it spent
    hashing (None when the run directory's record already covered every file unchanged)."""

    files: int
    bytes: int
    seconds: float | None
    problems: list[str]

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds or 0.0, 1e-9)


def _stat_key(path: Path, sha256: str) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": sha256, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class VerifiedRecord:
    """A run's record of verified data (`RUN/verified.json`): per shard directory, the SHA-256
    of its manifest and, per file (the tokenizer copy and every shard), the manifest's SHA-256,
    the size and the mtime it had when its bytes were checked against the manifest.

    `covered` says whether the record vouches for the directory as it is now: the same manifest,
    and each file still of the size and mtime it had then. Then a resume does not read the data
    again; a file replaced since (another size or mtime) is read again.

    NOTE: a byte flipped in place with the mtime restored passes the record (`dataprep inspect
    DIR` reads everything again, and so does a run after `verified.json` is deleted). Hashing
    on every start instead would cost a full read of the data per resume.
    """

    def __init__(self, manifest: Manifest, path: Path) -> None:
        m = manifest
        self.path = path
        self.key = os.fspath(m.directory.resolve())
        self.files = 1 + sum(len(sp.shards) for sp in m.splits.values())
        self.bytes = sum(s.bytes for sp in m.splits.values() for s in sp.shards)
        paths = [(m.tokenizer_path, m.tokenizer.sha256)] + [
            (m.directory / s.file, s.sha256) for sp in m.splits.values() for s in sp.shards
        ]
        self.entry: dict[str, Any] | None
        try:
            self.entry = {
                "manifest_sha256": hashlib.sha256(m.path.read_bytes()).hexdigest(),
                "files": {p.name: _stat_key(p, sha) for p, sha in paths},
            }
        except OSError:
            self.entry = None  # a file is missing: `Manifest.verify` names it
        try:
            known = json.loads(path.read_text()).get("directories", {})
        except (OSError, ValueError, AttributeError):
            known = {}  # no record (or an unreadable one): verify, then write a fresh one
        self.known: dict[str, Any] = known if isinstance(known, dict) else {}

    @property
    def covered(self) -> bool:
        seen = self.known.get(self.key)
        if self.entry is None or not isinstance(seen, dict):
            return False
        return {k: seen.get(k) for k in self.entry} == self.entry

    def write(self, seconds: float) -> None:
        """Records the directory as verified (atomically), with the seconds it took."""
        if self.entry is None:
            return
        self.known[self.key] = {**self.entry, "seconds": round(seconds, 3), "time": time.time()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"directories": self.known}, indent=2) + "\n")
        os.replace(tmp, self.path)


def verify_once(manifest: Manifest, record: Path) -> Verification:
    """Checks the tokenizer copy and every shard of `manifest` against their SHA-256s
    (`Manifest.verify`) unless `record` (`VerifiedRecord`) covers them, and records a success.
    The trainer does the same with the files shared out over its ranks."""
    rec = VerifiedRecord(manifest, record)
    if rec.covered:
        return Verification(rec.files, rec.bytes, None, [])
    t0 = time.perf_counter()
    problems = manifest.verify()
    seconds = time.perf_counter() - t0
    if not problems:
        rec.write(seconds)
    return Verification(rec.files, rec.bytes, seconds, problems)


# --- global order -------------------------------------------------------------------------


def _mix64(x: int) -> int:
    """splitmix64's finalizer on a Python int (key derivation)."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix64_np(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finalizer on a uint64 array (array arithmetic wraps silently)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class GlobalOrder:
    """A seeded pseudo-random permutation of `0 .. num_rows` per epoch, evaluated lazily.

    Position `p` of epoch `e` maps to row `P_e(p)`, where `P_e` is a 6-round Feistel network on
    `2 x ceil(bits / 2)` bits keyed by `(seed, epoch, round)`, with cycle walking (apply again
    until the value falls below `num_rows`; the domain is under 4 x num_rows, so under 4 rounds
    on average). Any range of positions costs O(range) time and no memory for the rest, so
    resuming at step k of a 10^9-row epoch is as cheap as starting it.

    NOTE: a materialized `np.random.permutation` would be simpler but costs 8 bytes per row in
    every rank and worker (8 GB at 10^9 rows) and O(N) work per epoch. A permutation within
    shard-sized windows (MosaicML-style shuffle blocks) reads faster from slow storage but mixes
    less; shards here are memory-mapped local files, so a full shuffle is affordable.

    >>> order = GlobalOrder(10, seed=1)
    >>> sorted(order.rows(epoch=0).tolist()) == list(range(10))
    True
    >>> order.rows(0, 3, 5).tolist() == order.rows(0)[3:5].tolist()
    True
    >>> GlobalOrder(10, shuffle=False).rows(0, 2, 5).tolist()
    [2, 3, 4]
    """

    ROUNDS = 6

    def __init__(self, num_rows: int, seed: int = 0, shuffle: bool = True) -> None:
        if num_rows < 0:
            raise ValueError(f"num_rows must not be negative, got {num_rows}")
        self.num_rows = num_rows
        self.seed = seed
        self.shuffle = shuffle
        bits = max(2, (num_rows - 1).bit_length())
        self._half = (bits + 1) // 2
        self._mask = np.uint64((1 << self._half) - 1)

    def _keys(self, epoch: int) -> list[np.uint64]:
        base = _mix64(_mix64(self.seed ^ 0x5EED0FDA7A5E7) + epoch)
        return [np.uint64(_mix64(base + r + 1)) for r in range(self.ROUNDS)]

    def _permute(self, x: np.ndarray, keys: list[np.uint64]) -> np.ndarray:
        h = np.uint64(self._half)
        left, right = x >> h, x & self._mask
        for k in keys:
            left, right = right, left ^ (_mix64_np(right ^ k) & self._mask)
        return (left << h) | right

    def rows(self, epoch: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Row ids at positions `start .. stop` (default: to the end) of `epoch`, int64."""
        stop = self.num_rows if stop is None else stop
        if not 0 <= start <= stop <= self.num_rows:
            raise IndexError(f"positions {start}..{stop} out of range for {self.num_rows} rows")
        if not self.shuffle or self.num_rows <= 1:
            return np.arange(start, stop, dtype=np.int64)
        keys = self._keys(epoch)
        n = np.uint64(self.num_rows)
        out = self._permute(np.arange(start, stop, dtype=np.uint64), keys)
        todo = np.flatnonzero(out >= n)
        while todo.size:
            out[todo] = self._permute(out[todo], keys)
            todo = todo[out[todo] >= n]
        return out.astype(np.int64)


# --- step plan ----------------------------------------------------------------------------


class StepPlan:
    """Which rows go into each micro-batch of each rank at each optimizer step.

    Step `s` of epoch `e` takes positions `s*G .. min((s+1)*G, N)` of the epoch's
    `GlobalOrder` (`G` = `global_batch`); slot `j` of the step goes to rank `j % world_size`,
    micro-batch `(j // world_size) // micro_batch`. Slots past `N` are fillers (-1).

    Args:
        num_rows: Rows of the split (`N`), or of `rows` when given.
        world_size, grad_accum, micro_batch: The split of a global batch.
        seed, shuffle: The order (`shuffle=False`: positions in row order).
        rows: Draw from these row ids instead of `0 .. num_rows` (an eval subset).
    """

    _CHUNK_POSITIONS = 1 << 16

    def __init__(
        self,
        num_rows: int,
        *,
        world_size: int = 1,
        grad_accum: int = 1,
        micro_batch: int,
        seed: int = 0,
        shuffle: bool = True,
        rows: np.ndarray | None = None,
    ) -> None:
        for name, v in [("world_size", world_size), ("grad_accum", grad_accum)]:
            if v < 1:
                raise ValueError(f"{name} must be at least 1, got {v}")
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
        if rows is not None and len(rows) != num_rows:
            raise ValueError(f"{len(rows)} rows given for num_rows={num_rows}")
        self.num_rows = num_rows
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.micro_batch = micro_batch
        self.order = GlobalOrder(num_rows, seed, shuffle)
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._cache: tuple[int, int, np.ndarray] | None = None

    @property
    def global_batch(self) -> int:
        return self.world_size * self.grad_accum * self.micro_batch

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_rows, self.world_size, self.grad_accum, self.micro_batch)

    def step_rows(self, epoch: int, step: int) -> np.ndarray:
        """The real rows of a step (at most `global_batch`), in slot order."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} out of range (0..{self.steps_per_epoch - 1})")
        g = self.global_batch
        # NOTE: numpy's per-call overhead dominates a Feistel pass over one small step, so
        # the order is computed for a chunk of steps at a time (~64K positions) and cached.
        per = max(1, self._CHUNK_POSITIONS // g)
        chunk = step // per
        if self._cache is None or self._cache[:2] != (epoch, chunk):
            a = chunk * per * g
            self._cache = (epoch, chunk, self.order.rows(epoch, a, min(a + per * g, self.num_rows)))
        off = (step - chunk * per) * g
        pos = self._cache[2][off : off + g]
        return pos.copy() if self._rows is None else self._rows[pos]

    def micro_batches(self, epoch: int, step: int, rank: int) -> np.ndarray:
        """`(grad_accum, micro_batch)` row ids of `rank` at `step`, -1 for filler rows."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} out of range for world_size {self.world_size}")
        slots = np.full(self.global_batch, FILLER, dtype=np.int64)
        real = self.step_rows(epoch, step)
        slots[: real.size] = real
        return slots[rank :: self.world_size].reshape(self.grad_accum, self.micro_batch)


class StepSampler(Sampler[np.ndarray]):
    """Yields one rank's micro-batches (arrays of row ids) for steps `start_step .. stop_step`."""

    def __init__(
        self,
        plan: StepPlan,
        *,
        rank: int,
        epoch: int,
        start_step: int = 0,
        stop_step: int | None = None,
    ) -> None:
        stop = plan.steps_per_epoch if stop_step is None else stop_step
        if not 0 <= start_step <= stop <= plan.steps_per_epoch:
            raise ValueError(
                f"steps {start_step}..{stop} out of range for {plan.steps_per_epoch} steps per epoch"
            )
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank {rank} out of range for world_size {plan.world_size}")
        self.plan, self.rank, self.epoch = plan, rank, epoch
        self.start_step, self.stop_step = start_step, stop

    def __len__(self) -> int:
        return (self.stop_step - self.start_step) * self.plan.grad_accum

    def __iter__(self) -> Iterator[np.ndarray]:
        for step in range(self.start_step, self.stop_step):
            yield from self.plan.micro_batches(self.epoch, step, self.rank)


# --- micro-batches ------------------------------------------------------------------------


@dataclass
class MaskingConfig:
    """Dynamic MLM masking (see `dataprep.mask_batch`); ignored for statically masked shards."""

    probability: float = 0.15  # share of (non-special) tokens to mask
    strategy: Literal["bernoulli", "fixed", "whole_word", "span"] = "bernoulli"
    mask_replace: float = 0.8  # share of masked tokens replaced by [MASK]
    random_replace: float = 0.1  # share replaced by a random non-special id; the rest keep theirs
    span_p: float = 0.2  # span: geometric p of span lengths in words (SpanBERT, mean 3.8)
    max_span: int = 10  # span: longest span in words
    max_predictions: int | None = None  # fixed: at most this many masked tokens per row
    seed: int = 0  # with the epoch and the row id, the only source of randomness


class MicroBatches(Dataset[dict[str, torch.Tensor]]):
    """Map-style dataset whose key is the array of row ids of one micro-batch (-1 = filler).

    `dataset[rows]` returns the micro-batch dict of the contract in `train/__init__.py`.
    Each column is gathered with one numpy fancy index per touched record batch and converted
    to int64 once; CLM labels, document ids and positions are computed without row loops.
    """

    def __init__(
        self,
        shards: ShardSet,
        *,
        epoch: int = 0,
        masking: MaskingConfig | None = None,
        doc_mask: bool = False,
    ) -> None:
        self.shards = shards
        self.epoch = epoch
        self.doc_mask = doc_mask
        if shards.pad_id is None:
            raise ValueError(f"{shards.directory}: the manifest records no pad id")
        self.pad_id = shards.pad_id
        if shards.objective == "clm":
            self.masking = None
            self.columns = ["input_ids", "n_tokens"] + (["doc_starts"] if doc_mask else [])
            return
        if doc_mask:
            raise ValueError(
                "doc_mask is for causal-LM shards (packed documents); MLM rows are single sequences"
            )
        self.columns = ["input_ids", "n_tokens", "token_type_ids", "nsp_label"]
        if shards.static_masking:
            self.masking = None  # the shards hold masked input and labels
            self.columns.append("labels")
            return
        self.masking = masking or MaskingConfig()
        if shards.mask_id is None:
            raise ValueError(
                f"{shards.directory}: the tokenizer has no [MASK] token; dynamic masking needs one"
            )
        self.columns.append("special_tokens_mask")
        if self.masking.strategy in ("whole_word", "span"):
            self.columns.append("word_start")
        self.special_ids = shards.special_ids  # read here, once, not in every worker

    def __getitem__(self, rows: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        return self.get(rows, self.epoch)

    def get(
        self, rows: Sequence[int] | npt.NDArray[np.int64], epoch: int
    ) -> dict[str, torch.Tensor]:
        """The micro-batch of `rows` with the dynamic masks of `epoch` (a mixture reads each
        set at its own epoch, `train.mixture`)."""
        index = np.array(rows, dtype=np.int64).reshape(-1)  # a copy: it becomes sample_index
        real = index >= 0
        full = bool(real.all())
        real_ids = index if full else index[real]
        cols = self.shards.gather(real_ids, self.columns)
        t = self.shards.seq_len

        def place(name: str, fill: int, dtype: type = np.int64, src: Any = None) -> np.ndarray:
            a = cols[name] if src is None else src
            if full:
                return np.ascontiguousarray(a, dtype=dtype)
            out = np.full((index.size, *a.shape[1:]), fill, dtype=dtype)
            out[real] = a
            return out

        n_tokens = place("n_tokens", 0)
        batch: dict[str, np.ndarray] = {}
        if self.shards.objective == "clm":
            ids = place("input_ids", self.pad_id)
            labels = np.empty_like(ids)
            # labels[t] = ids[t + 1] while t + 1 is a real token of the row; filler rows have
            # n_tokens 0, so all their labels are ignored.
            labels[:, :-1] = np.where(
                np.arange(t - 1) < n_tokens[:, None] - 1, ids[:, 1:], IGNORE_INDEX
            )
            labels[:, -1] = IGNORE_INDEX
            batch = {"input_ids": ids, "labels": labels, "sample_index": index}
            if self.doc_mask:
                starts = place("doc_starts", 0, np.uint8)
                pos = np.arange(t, dtype=np.int64)
                # Tokens before the row's first document start continue a document from the
                # previous row: their positions count from the row start.
                last_start = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
                batch["position_ids"] = pos - last_start
                batch["doc_ids"] = np.cumsum(starts, axis=1, dtype=np.int64)
            return {k: torch.from_numpy(v) for k, v in batch.items()}

        if self.masking is None:
            ids = place("input_ids", self.pad_id)
            labels = place("labels", IGNORE_INDEX)
        else:
            m = self.masking
            masked, mlabels = cols["input_ids"], np.empty((0, t), dtype=np.int64)
            if real_ids.size:
                masked, mlabels = dataprep.mask_batch(
                    cols["input_ids"],
                    real_ids,
                    mask_token_id=self.shards.mask_id,  # type: ignore[arg-type]
                    vocab_size=self.shards.vocab_size,
                    epoch=epoch,
                    seed=m.seed,
                    special_tokens_mask=cols["special_tokens_mask"],
                    word_start=cols.get("word_start"),
                    special_ids=self.special_ids,
                    probability=m.probability,
                    mask_replace_prob=m.mask_replace,
                    random_replace_prob=m.random_replace,
                    strategy=m.strategy,
                    span_geometric_p=m.span_p,
                    max_span=m.max_span,
                    max_predictions=m.max_predictions,
                    threads=1,  # NOTE: DataLoader workers are the parallelism
                )
            ids = place("input_ids", self.pad_id, src=masked)
            labels = place("labels", IGNORE_INDEX, src=mlabels)
        # NOTE: filler rows attend to all their (pad) tokens: a row with no key at all would
        # give NaN attention weights, and NaN times a zero loss weight is still NaN.
        attention = (np.arange(t) < n_tokens[:, None]) | ~real[:, None]
        nsp = place("nsp_label", IGNORE_INDEX)
        nsp[nsp < 0] = IGNORE_INDEX
        batch = {
            "input_ids": ids,
            "labels": labels,
            "sample_index": index,
            "attention_mask": attention.astype(np.int64),
            "token_type_ids": place("token_type_ids", 0),
            "nsp_labels": nsp,
        }
        return {k: torch.from_numpy(v) for k, v in batch.items()}


# --- loaders ------------------------------------------------------------------------------


def make_dataloader(
    dataset: Dataset[dict[str, torch.Tensor]],
    sampler: Sampler[npt.NDArray[np.int64]],
    num_workers: int,
    pin_memory: bool,
    prefetch_factor: int,
) -> DataLoader[dict[str, torch.Tensor]]:
    return DataLoader(
        dataset,
        batch_size=None,  # the sampler yields whole micro-batches; also keeps worker order
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=_ignore_sigterm if num_workers > 0 else None,
        # NOTE: without a generator, every iterator draws its workers' base seed from the
        # global torch RNG, the one dropout uses: a resumed run (one extra draw, made on the
        # prefetch thread at a racy moment) then drops other units than the uninterrupted run.
        # The workers' seeds are unused (masks are keyed by (seed, epoch, row)).
        generator=torch.Generator(),
    )


def _ignore_sigterm(worker_id: int) -> None:
    """torchrun sends SIGTERM to each rank's whole process group: workers must outlive it so that
    the rank can finish its step and checkpoint (they exit with the rank anyway)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


_DONE = object()


def prefetch(iterable: Iterable[T], depth: int) -> Iterator[T]:
    """Iterates `iterable` on a background thread, `depth` items ahead.

    The default way batches are made (`num_workers=0`): gathering rows is numpy work and masking
    runs in Rust without the GIL, so a thread overlaps it with the training step without
    DataLoader worker processes, whose per-tensor shared-memory hand-off capped a 2-worker
    loader at 5M tokens/s where one thread makes 80M (BENCHMARKS.md, Trainer).
    An exception in the thread is raised here.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))

    def run() -> None:
        try:
            for item in iterable:
                q.put(item)
        except BaseException as e:  # handed to the consumer
            q.put(_Failed(e))
        q.put(_DONE)

    threading.Thread(target=run, daemon=True, name="dataprep-prefetch").start()
    while (item := q.get()) is not _DONE:
        if isinstance(item, _Failed):
            raise item.error
        yield item


@dataclass
class _Failed:
    error: BaseException


def make_loader(
    shards: ShardSet,
    *,
    rank: int,
    world_size: int,
    micro_batch: int,
    grad_accum: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    num_workers: int = 0,
    masking: MaskingConfig | None = None,
    doc_mask: bool = False,
    shuffle: bool = True,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader[dict[str, torch.Tensor]]:
    """This rank's micro-batches of `epoch`, steps `start_step .. steps_per_epoch`, in order.

    Yields `grad_accum` micro-batches per optimizer step, each a dict of CPU tensors with
    exactly `micro_batch` rows (the contract in `train/__init__.py`). `len(loader)` is the
    number of micro-batches, the same on every rank. Resuming at step k yields exactly the tail
    of the uninterrupted stream. Make one loader per epoch.

    Args:
        shards: The training split.
        rank, world_size: This process among the data-parallel ranks.
        micro_batch, grad_accum: Rows per forward pass; micro-batches per optimizer step.
        seed: Seed of the shuffle (the masking seed is `masking.seed`).
        epoch: Picks the permutation and the dynamic masks.
        start_step: First optimizer step to yield (resume).
        num_workers: DataLoader worker processes (0: load in this process).
        masking: Dynamic MLM masking (default `MaskingConfig()`); unused for CLM or statically
            masked shards.
        doc_mask: CLM: add `position_ids` and `doc_ids` from the `doc_starts` column.
        shuffle: False reads the rows in order (debugging, overfitting tests).
        pin_memory, prefetch_factor: Passed to the DataLoader (prefetch only with workers).

    >>> import dataprep, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("hello world. " * 2000)
    >>> tok = d / "tok.json"
    >>> _ = dataprep.train_bpe(d / "a.txt", 300, out=tok, special_tokens=["<|endoftext|>"])
    >>> _ = dataprep.tokenize(d / "a.txt", tok, d / "shards", seq_len=64)
    >>> loader = make_loader(ShardSet(d / "shards"), rank=0, world_size=1, micro_batch=8,
    ...                      grad_accum=4, seed=0, epoch=0)
    >>> next(iter(loader))["input_ids"].shape
    torch.Size([8, 64])
    """
    plan = StepPlan(
        shards.num_rows,
        world_size=world_size,
        grad_accum=grad_accum,
        micro_batch=micro_batch,
        seed=seed,
        shuffle=shuffle,
    )
    sampler = StepSampler(plan, rank=rank, epoch=epoch, start_step=start_step)
    if shards.remote is not None:
        # Download order: the shards of the epoch's next rows (of all ranks: ranks of a node
        # share the cache) as they will be read, then the rest.
        start = min(start_step * plan.global_batch, shards.num_rows)
        shards.fetch_ahead(plan.order.rows(epoch, start, min(start + _AHEAD, shards.num_rows)))
    dataset = MicroBatches(shards, epoch=epoch, masking=masking, doc_mask=doc_mask)
    return make_dataloader(dataset, sampler, num_workers, pin_memory, prefetch_factor)


_AHEAD = 1 << 20  # rows whose shards a remote set downloads first, in the order they are read


def eval_rows(num_rows: int, max_rows: int | None, seed: int = 0) -> np.ndarray | None:
    """The val rows of every evaluation: all (None), or a fixed seeded subset of `max_rows`,
    sorted (a spread sample; the first rows alone would be the first few documents)."""
    if max_rows is None or max_rows >= num_rows:
        return None
    return np.sort(GlobalOrder(num_rows, seed).rows(0, 0, max_rows))


def make_eval_loader(
    shards: ShardSet,
    *,
    rank: int,
    world_size: int,
    micro_batch: int,
    max_rows: int | None = None,
    masking: MaskingConfig | None = None,
    doc_mask: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
    seed: int = 0,
) -> DataLoader[dict[str, torch.Tensor]]:
    """This rank's share of the val rows: every row once across ranks, no shuffle.

    Every rank gets `ceil(rows / (world_size x micro_batch))` micro-batches (fillers at the
    end), so collectives after each batch line up. Masks use epoch 0 whatever the training
    epoch, so successive evaluations see the same inputs and their losses compare.

    Args:
        max_rows: Evaluate on a fixed subset of this many rows (seeded by `seed`), the same
            at every evaluation; None for all.
        Others: as `make_loader`.
    """
    subset = eval_rows(shards.num_rows, max_rows, seed)
    n = shards.num_rows if subset is None else subset.size
    plan = StepPlan(n, world_size=world_size, micro_batch=micro_batch, shuffle=False, rows=subset)
    sampler = StepSampler(plan, rank=rank, epoch=0)
    shards.fetch_ahead(subset)
    dataset = MicroBatches(shards, epoch=0, masking=masking, doc_mask=doc_mask)
    return make_dataloader(dataset, sampler, num_workers, pin_memory, prefetch_factor)


def iter_steps(
    loader: DataLoader[dict[str, torch.Tensor]],
) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
    """`(step, micro_batches)` per optimizer step of a `make_loader` loader.

    Having all micro-batches of a step at hand lets the loop count (and all-reduce) the targets
    of the step before the first backward pass.
    """
    sampler = loader.sampler
    if not isinstance(sampler, StepSampler):
        raise TypeError("iter_steps needs a loader from make_loader / make_eval_loader")
    accum = sampler.plan.grad_accum
    step, group = sampler.start_step, []
    for mb in loader:
        group.append(mb)
        if len(group) == accum:
            yield step, group
            step, group = step + 1, []


__all__ = [
    "FILLER",
    "IGNORE_INDEX",
    "VERIFIED",
    "GlobalOrder",
    "MaskingConfig",
    "MicroBatches",
    "ShardSet",  # re-exported: `dataprep.shards.ShardSet`, what the loaders read
    "StepPlan",
    "StepSampler",
    "Verification",
    "VerifiedRecord",
    "eval_rows",
    "iter_steps",
    "make_dataloader",
    "make_eval_loader",
    "make_loader",
    "prefetch",
    "steps_per_epoch",
    "verify_once",
]
