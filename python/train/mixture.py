"""Data mixtures: several shard sets, each with a weight (`--shards A:0.7 --shards B:0.3`).

The pieces, from the command line to a micro-batch:

    parse_specs    `DIR[:WEIGHT]` strings -> `ShardSpec`s, validated (in train.config: parsing a
                   config needs no torch)
    check_sets     the sets share the tokenizer (SHA-256 in their manifests), the objective, the
                   layout, the masking and `seq_len`; one line naming both directories otherwise
    MixturePlan    which rows of which set each rank feeds into each micro-batch of each step
    make_loader    this rank's micro-batches from a step on, as `(set, epoch, row)` keys turned
                   into the batch contract of `train/__init__.py` plus a `source` column

Weights are relative: they are normalised to sum to 1 (`--shards A:7 --shards B:3` is the same
mixture as `A:0.7 B:0.3`); each must be positive and finite, and every set must get at least
one row per optimizer step on average (`weight x global_batch >= 1`).

Interleave. The first `H` rows of the mixed stream hold `A_i(H)` rows of set `i`: the largest-
remainder (Hamilton) apportionment of `H` by the weights, computed exactly with fractions (ties
to the lower set index). Step `s` takes `n_i = A_i((s+1) G) - A_i(s G)` rows of set `i` (`G` =
global batch), so at every step boundary each set is within one row of its exact share, and the
realised mixture converges to the weights (|A_i(H) - w_i H| < 1). `n_i >= 0` needs
`w_i G >= 1` (A_i grows by at least floor(w_i G) - 1 per step), hence the rule above. The
`k`-th row of set `i` over the run is position `k mod N_i` of epoch `k div N_i` of its own
`GlobalOrder` (seeded per set): a set smaller than its share is repeated, epoch after epoch, each
epoch in a fresh order; a larger one is not read to the end in a mixture "epoch".

Every step is full (no filler rows) and its slots are spread over the ranks as in
`data.StepPlan` (slot `j` to rank `j % world_size`), set by set: every rank gets exactly
`grad_accum x micro_batch` rows per step and each set's rows split over the ranks within one.
The rows of a step depend only on `(seed, weights, sets, step, G)`, so resume is exact and a
1-rank and a 2-rank run with the same `--global-batch` train on the same rows.

An "epoch" of a mixture is `ceil(sum of the sets' rows / G)` steps (for `--epochs` and the
`epoch` of the metrics): the rows of all sets together, whatever each set's share.

NOTE: a per-step fixed quota (round(w_i G) rows of each set at every step) would be simpler, but
its rounding error never averages out (w = 0.3, G = 8: 2 or 3 rows, 25% or 37.5%, forever).
Sampling each row's set at random (a multinomial per step) averages out only in expectation and
makes the per-step count vary by sqrt(G w).

>>> specs = parse_specs(("en:3", "ko:1"))
>>> [(s.path, s.weight) for s in specs]
[('en', 0.75), ('ko', 0.25)]
>>> plan = MixturePlan([10, 4], [0.75, 0.25], world_size=2, grad_accum=1, micro_batch=2)
>>> [plan.step_counts(s).tolist() for s in range(4)]
[[3, 1], [3, 1], [3, 1], [3, 1]]
>>> plan.micro_batches(step=0, rank=1)[..., 0].tolist()  # the set of each row of rank 1
[[0, 1]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dataprep.shards import ShardSet
from train import data
from train.config import ConfigError, ShardSpec, parse_specs

SOURCE = "source"  # batch key: the index of the set each row comes from (not a model input)


def check_sets(sets: Sequence[ShardSet]) -> None:
    """Refuses (ConfigError, one line naming both directories) sets that cannot be mixed: rows
    of every set must mean the same to the model (tokenizer, objective, layout, masking,
    seq_len)."""
    first = sets[0]

    def facts(s: ShardSet) -> dict[str, object]:
        return {
            "tokenizer": s.manifest.tokenizer.sha256,
            "objective": s.objective,
            "layout": s.layout,
            "static masking": s.static_masking,
            "seq_len": s.seq_len,
        }

    want = facts(first)
    for other in sets[1:]:
        for key, value in facts(other).items():
            if value != want[key]:
                a, b = want[key], value
                if key == "tokenizer":
                    a, b = f"sha256 {str(a)[:12]}…", f"sha256 {str(b)[:12]}…"
                raise ConfigError(
                    f"--shards: {other.directory} has another {key} ({b}) than "
                    f"{first.directory} ({a}); mixed sets must share it"
                )


def set_seed(seed: int, index: int) -> int:
    """The shuffle and masking seed of set `index`: `seed` itself for the first set (a
    one-set run is today's run), a derived one for the others (their rows would otherwise
    take the first set's masks and order by row number)."""
    return seed if index == 0 else data._mix64(data._mix64(seed) ^ (index * 0x9E3779B97F4A7C15))


class MixturePlan:
    """Which `(set, epoch, row)` each rank feeds into each micro-batch of each step.

    Args:
        rows: Rows of each set (its train split).
        weights: Normalised weights, one per set.
        world_size, grad_accum, micro_batch: The split of a global batch.
        seed, shuffle: The order of each set (`set_seed`).

    Raises:
        ConfigError: A set would get less than one row per step on average.
    """

    def __init__(
        self,
        rows: Sequence[int],
        weights: Sequence[float],
        *,
        world_size: int = 1,
        grad_accum: int = 1,
        micro_batch: int,
        seed: int = 0,
        shuffle: bool = True,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(rows) != len(weights) or not rows:
            raise ValueError("one weight per set, at least one set")
        self.rows = [int(n) for n in rows]
        self.world_size, self.grad_accum, self.micro_batch = world_size, grad_accum, micro_batch
        self.global_batch = world_size * grad_accum * micro_batch
        names = list(names) if names is not None else [str(i) for i in range(len(rows))]
        for name, n, w in zip(names, self.rows, weights, strict=True):
            if n < 1:
                raise ConfigError(f"--shards {name}: the train split has no rows")
            if w * self.global_batch < 1:
                raise ConfigError(
                    f"--shards {name}: weight {w:.4g} gets {w * self.global_batch:.2f} of the "
                    f"{self.global_batch} rows of a step; every set needs at least one row per "
                    "step (raise its weight or --global-batch)"
                )
        fractions = [Fraction(w) for w in weights]
        total = sum(fractions)
        self.fractions = [f / total for f in fractions]
        self.orders = [
            data.GlobalOrder(n, set_seed(seed, i), shuffle) for i, n in enumerate(self.rows)
        ]
        self._chunks: dict[tuple[int, int, int], npt.NDArray[np.int64]] = {}

    @property
    def steps_per_epoch(self) -> int:
        return -(-sum(self.rows) // self.global_batch)

    def cumulative(self, total: int) -> npt.NDArray[np.int64]:
        """Rows of each set among the first `total` rows of the stream (Hamilton, exact).

        >>> MixturePlan([5, 5], [0.5, 0.5], micro_batch=2).cumulative(7).tolist()
        [4, 3]
        """
        quotas = [f * total for f in self.fractions]
        counts = [math.floor(q) for q in quotas]
        left = total - sum(counts)
        # The largest remainders get one more row; ties go to the lower index.
        by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
        for i in by_remainder[:left]:
            counts[i] += 1
        return np.array(counts, dtype=np.int64)

    def step_counts(self, step: int) -> npt.NDArray[np.int64]:
        """Rows of each set in optimizer step `step` (sum: the global batch)."""
        g = self.global_batch
        counts = self.cumulative((step + 1) * g) - self.cumulative(step * g)
        if (counts < 0).any():  # excluded by the weight x global batch >= 1 rule
            raise AssertionError(f"negative count at step {step}: {counts}")
        return counts

    def _positions(self, i: int, start: int, stop: int) -> npt.NDArray[np.int64]:
        """`(epoch, row)` of stream positions `start .. stop` of set `i` (over its epochs)."""
        n = self.rows[i]
        k = np.arange(start, stop, dtype=np.int64)
        epochs, pos = np.divmod(k, n)
        rows = np.empty_like(k)
        for e in np.unique(epochs).tolist():
            sel = epochs == e
            rows[sel] = self._rows(i, int(e), pos[sel])
        return np.stack([epochs, rows], axis=1)

    _CHUNK = 1 << 16

    def _rows(self, i: int, epoch: int, pos: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Rows at positions `pos` (ascending, consecutive) of set `i`'s order in `epoch`.

        NOTE: as in `data.StepPlan`, the Feistel order is computed 64K positions at a time and
        cached (numpy's per-call overhead dominates a pass over one step's few positions)."""
        out = np.empty(pos.size, dtype=np.int64)
        chunk_of = pos // self._CHUNK
        for c in np.unique(chunk_of).tolist():
            key = (i, epoch, int(c))
            rows = self._chunks.get(key)
            if rows is None:
                if len(self._chunks) > 4 * len(self.rows):
                    self._chunks.clear()
                a = int(c) * self._CHUNK
                rows = self.orders[i].rows(epoch, a, min(a + self._CHUNK, self.rows[i]))
                self._chunks[key] = rows
            sel = chunk_of == c
            out[sel] = rows[pos[sel] - int(c) * self._CHUNK]
        return out

    def step_slots(self, step: int) -> npt.NDArray[np.int64]:
        """`(global_batch, 3)` int64 `[set, epoch, row]` of step `step`, set by set."""
        g = self.global_batch
        before = self.cumulative(step * g)
        counts = self.step_counts(step)
        parts = []
        for i, (a, n) in enumerate(zip(before.tolist(), counts.tolist(), strict=True)):
            if n:
                where = self._positions(i, a, a + n)
                parts.append(np.column_stack([np.full(n, i, dtype=np.int64), where]))
        return np.concatenate(parts)

    def micro_batches(self, step: int, rank: int) -> npt.NDArray[np.int64]:
        """`(grad_accum, micro_batch, 3)` keys of `rank` at `step`."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} out of range for world_size {self.world_size}")
        slots = self.step_slots(step)
        return slots[rank :: self.world_size].reshape(self.grad_accum, self.micro_batch, 3)


class MixtureSampler(Sampler[npt.NDArray[np.int64]]):
    """Yields one rank's micro-batch keys from step `start_step` on (without end)."""

    def __init__(self, plan: MixturePlan, *, rank: int, start_step: int = 0) -> None:
        self.plan, self.rank, self.start_step = plan, rank, start_step

    def __iter__(self) -> Iterator[npt.NDArray[np.int64]]:
        step = self.start_step
        while True:
            yield from self.plan.micro_batches(step, self.rank)
            step += 1


class MixtureBatches(Dataset[dict[str, torch.Tensor]]):
    """Map-style dataset whose key is an `(M, 3)` array of `[set, epoch, row]`: the rows of each
    set and epoch are made by that set's `data.MicroBatches` and put back in key order, with
    `source` (the set of each row) added."""

    def __init__(self, parts: Sequence[data.MicroBatches]) -> None:
        self.parts = list(parts)

    def __getitem__(self, key: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        key = np.asarray(key, dtype=np.int64).reshape(-1, 3)
        # NOTE: the rows are put in place with numpy: a torch index_put per tensor cost ~25 ms
        # per 16 x 1024 micro-batch on CPU (bench/bench_mixture.py), numpy's a fraction of 1 ms.
        out: dict[str, npt.NDArray[Any]] = {}
        for i in np.unique(key[:, 0]).tolist():
            for e in np.unique(key[key[:, 0] == i, 1]).tolist():
                sel = np.flatnonzero((key[:, 0] == i) & (key[:, 1] == e))
                batch = self.parts[i].get(key[sel, 2], epoch=e)
                for name, tensor in batch.items():
                    value = tensor.numpy()
                    if name not in out:
                        out[name] = np.empty((len(key), *value.shape[1:]), dtype=value.dtype)
                    out[name][sel] = value
        out[SOURCE] = key[:, 0].copy()
        return {name: torch.from_numpy(value) for name, value in out.items()}


def make_loader(
    sets: Sequence[ShardSet],
    plan: MixturePlan,
    *,
    rank: int,
    start_step: int = 0,
    num_workers: int = 0,
    masking: data.MaskingConfig | None = None,
    doc_mask: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader[dict[str, torch.Tensor]]:
    """This rank's micro-batches of the mixture from `start_step` on (an endless stream; group
    them `grad_accum` at a time with `iter_steps`). Masks are keyed by `(set seed, the set's
    epoch, row)`."""
    parts = [
        data.MicroBatches(
            s,
            masking=None if masking is None else replace(masking, seed=set_seed(masking.seed, i)),
            doc_mask=doc_mask,
        )
        for i, s in enumerate(sets)
    ]
    sampler = MixtureSampler(plan, rank=rank, start_step=start_step)
    for s in sets:
        s.fetch_ahead()  # remote sets: every shard in manifest order (used within a few steps)
    return data.make_dataloader(
        MixtureBatches(parts), sampler, num_workers, pin_memory, prefetch_factor
    )


def iter_steps(
    loader: DataLoader[dict[str, torch.Tensor]], grad_accum: int
) -> Iterator[list[dict[str, torch.Tensor]]]:
    """The micro-batches of a `make_loader` loader, one list of `grad_accum` per step."""
    group: list[dict[str, torch.Tensor]] = []
    for mb in loader:
        group.append(mb)
        if len(group) == grad_accum:
            yield group
            group = []


__all__ = [
    "SOURCE",
    "MixtureBatches",
    "MixturePlan",
    "MixtureSampler",
    "ShardSpec",
    "check_sets",
    "iter_steps",
    "make_loader",
    "parse_specs",
    "set_seed",
]
