"""The training loop: `python -m train` (one process) or `torchrun ... -m train` (DDP).

One GPU:                 torchrun --nproc-per-node 1 -m train --shards shards/ --objective clm --model small
One node, 8 GPUs:        torchrun --nproc-per-node 8 -m train --shards shards/ --objective clm --model small
Two nodes of 8 GPUs:     torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
                             --rdzv-endpoint HOST:29500 --rdzv-id RUN -m train --shards shards/ ...
CPU, 2 processes (gloo): torchrun --nproc-per-node 2 -m train --shards shards/ --model tiny --device cpu
Sharded (FSDP2):         torchrun --nproc-per-node 8 -m train --shards shards/ --model large --parallel fsdp \\
                             --activation-checkpointing selective --compile

How a step is put together, and why:
- The rows of optimizer step `s` are fixed by the data plan (seed, epoch, `global_batch`), not
  by the number of ranks; each rank runs `grad_accum` micro-batches of `micro_batch` rows.
- The loss is a *sum* over targets divided by the number of targets of the whole step on all
  ranks (one all-reduce of two counts before the backward passes). Averaging per micro-batch
  (nanoGPT) weights a micro-batch of 3 targets like one of 3,000; with the global count,
  1 rank x 8 micro-batches, 2 x 4 and 8 x 1 compute the same update.
- DDP (all-reduce) and FSDP (reduce-scatter) average gradients over ranks, so each rank
  scales its loss by `world_size`.
- A non-finite gradient norm skips the step on every rank (the norm is computed after the
  all-reduce, so all ranks agree) and the run aborts after `max_bad_steps` in a row.
- SIGTERM (preemption; torchrun forwards it) sets a flag; ranks agree on it with an all-reduce
  at the end of the step, save a checkpoint and exit 0. Rerunning the command resumes.

What the trainer promises under faults (each one tested in tests/test_train_loop.py):
- Data: every shard's and the tokenizer copy's SHA-256 is checked against the manifest before
  their first use in a run (the files shared out over the ranks, every verdict gathered on
  every rank, so all ranks stop together), and recorded in `RUN/verified.json` so a resume does
  not read the data again.
- Checkpoints record the data fingerprint (`Trainer.fingerprint`) and the SHA-256 of each file
  they write; resume refuses other data unless `--allow-data-change`, skips a corrupt latest
  checkpoint (one line) for the previous good one, and all ranks must resume the same step.
- Resume is bit-identical: dropout is seeded per (seed, rank, step), the loaders never draw
  from the global RNG, masks are keyed by (seed, epoch, row), and the metrics interval in
  progress is saved with the checkpoint, so `metrics.jsonl` of an interrupted and resumed run
  is the uninterrupted run's (but for the wall-clock fields, `WALL_CLOCK_FIELDS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console
from torch import nn
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

from dataprep import DataprepError, storage
from dataprep.shards import Manifest, sha256_file
from train import checkpoint, config, data, distributed, mixture, model, optim, schedule, watch
from train.config import TrainConfig
from train.distributed import Dist

# Dense bf16 peak per device (TFLOP/s) for MFU: NVIDIA datasheets, SXM parts, no sparsity.
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}

# Metric fields measured with the wall clock: they differ between any two runs, resumed or not.
WALL_CLOCK_FIELDS = ("tokens_per_s", "data_wait", "step_time", "mfu")

# Fields of the data fingerprint that resume compares, with the option that sets each.
# `world_size` is recorded but not compared: with `--global-batch` fixed, another number of
# ranks trains on the same rows in the same order.
FINGERPRINT_OPTIONS = {
    "manifest_sha256": "--shards",
    "tokenizer_sha256": "--shards (tokenizer)",
    "seed": "--seed",
    "shuffle": "--shuffle",
    "seq_len": "--shards (seq_len)",
    "objective": "--objective",
    "global_batch": "--global-batch",
    "doc_mask": "--doc-mask",
    "masking": "--mask-*",
    "mixture": "--shards (mixture)",
}


def _step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of optimizer step `step` on `rank` (dropout): a pure function of the
    three, so a resumed run draws the same dropout masks without restoring RNG state."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Stop(Exception):
    """Raised to end the run early with a message and an exit code (bad config, bad data)."""


def peak_flops(cfg: TrainConfig, dev: torch.device) -> float | None:
    if cfg.precision.peak_tflops is not None:
        return cfg.precision.peak_tflops * 1e12
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


class Metrics:
    """Rank 0's metric sinks: rich console, `metrics.jsonl`, optional TensorBoard and Weights &
    Biases (`wandb`, a `train.watch.Wandb` set by the caller)."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resume_step: int) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.path = run_dir / "metrics.jsonl"
        self.tb: Any = None
        self.wandb: watch.Wandb | None = None
        if not enabled:
            return
        if resume_step >= 0 and self.path.exists():
            # Lines past the checkpoint come from the part of the run that is being redone; a
            # partial line at the checkpoint is superseded (its interval continues, restored).
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line and _kept(json.loads(line), resume_step)
            ]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        self.file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise Stop(
                    "--tensorboard needs the `tensorboard` package (pip install tensorboard)"
                ) from e
            # torch.utils.tensorboard is not annotated.
            self.tb = SummaryWriter(str(run_dir / "tb"))  # type: ignore[no-untyped-call]

    def log(self, record: dict[str, Any], line: str | None = None) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, record["step"])
        if self.wandb is not None:
            self.wandb.log(record)
        if line:
            self.console.print(line)

    def print(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()
            if self.wandb is not None:
                self.wandb.close()


def _kept(record: dict[str, Any], resume_step: int) -> bool:
    step = int(record.get("step", 0))
    return step < resume_step or (step == resume_step and not record.get("partial"))


@dataclass
class Interval:
    """The metrics of the steps since the last logged line (`sums` are this rank's loss sums,
    `counts` the global target counts). Saved with a checkpoint and restored on resume, so the
    next line covers the same steps as in an uninterrupted run."""

    sums: torch.Tensor  # (2,) float64 on the device: [lm, nsp] loss sums of this rank
    counts: torch.Tensor  # (len(COUNTS),) float64 on the CPU: COUNTS of all ranks
    steps: int = 0
    wait: float = 0.0  # seconds waiting for batches
    elapsed: float = 0.0  # seconds of training before this process (a resumed interval)
    grad_norm: float = 0.0  # of the last step
    mix: torch.Tensor | None = None  # (sets,) float64: this rank's rows of each set (mixtures)

    def to_state(self) -> dict[str, Any]:
        state = {
            "sums": self.sums.cpu().tolist(),
            "counts": self.counts.tolist(),
            "steps": self.steps,
            "wait": self.wait,
            "grad_norm": self.grad_norm,
        }
        if self.mix is not None:
            state["mix"] = self.mix.tolist()
        return state

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()
        if self.mix is not None:
            self.mix.zero_()
        self.steps, self.wait, self.elapsed = 0, 0.0, 0.0


# Batch keys that say where a row comes from: never model inputs.
_PROVENANCE = ("sample_index", mixture.SOURCE)


def _to_device(batch: dict[str, torch.Tensor], dev: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(dev, non_blocking=True) for k, v in batch.items() if k not in _PROVENANCE}


# What `_counts` counts per step, in order.
COUNTS = ("lm_targets", "nsp_targets", "real_tokens", "real_tokens_squared")


def real_lengths(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) tokens of each row that are not padding (0 for filler rows): MLM, its
    attention_mask; CLM, its targets plus the first token (a packed row is full but for the
    end of the corpus)."""
    if "attention_mask" in batch:
        n = batch["attention_mask"].sum(dim=1)
    else:
        n = (batch["labels"] != -100).sum(dim=1)
        n = n + (n > 0)
    if "sample_index" in batch:
        n = n * (batch["sample_index"] >= 0)
    return n


def _counts(micro: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Local `COUNTS` of one step (float64: exact for any realistic count). The sum of squared
    row lengths gives the attention FLOPs of the real tokens (`Trainer._flops_per_token`)."""
    lm = sum(int((b["labels"] != -100).sum()) for b in micro)
    nsp = sum(int((b["nsp_labels"] != -100).sum()) for b in micro if "nsp_labels" in b)
    lengths = [real_lengths(b) for b in micro]
    real = sum(int(n.sum()) for n in lengths)
    squared = sum(int((n * n).sum()) for n in lengths)
    return torch.tensor([lm, nsp, real, squared], dtype=torch.float64)


class Trainer:
    def __init__(self, cfg: TrainConfig, dist: Dist) -> None:
        self.cfg = cfg
        self.dist = dist
        self.dev = dist.device
        self.run_dir = Path(cfg.run.out)
        watch.check_available(cfg)  # on every rank, before any collective

        # One shard set, or a mixture of several (train.mixture); the first is the reference
        # for what all share (tokenizer, objective, seq_len).
        self.specs = mixture.parse_specs(cfg.data.shards)
        cache = cfg.data.shard_cache
        if cache is not None and not any(storage.is_remote(s.path) for s in self.specs):
            raise Stop(
                "--shard-cache: no --shards is an s3:// URL (local shards are read in place)"
            )

        def open_set(path: str, split: str) -> data.ShardSet:
            remote = storage.is_remote(path)
            return data.ShardSet(path, split, cache=cache if remote else None)

        self.sets = [open_set(spec.path, "train") for spec in self.specs]
        mixture.check_sets(self.sets)
        self.shards = self.sets[0]
        self.vals = [
            (i, open_set(spec.path, "val"))
            for i, spec in enumerate(self.specs)
            if self.sets[i].manifest.split_rows("val") > 0
        ]
        objective = self.shards.objective
        if cfg.data.objective is not None and cfg.data.objective != objective:
            raise Stop(
                f"{self.specs[0].path}: the shards are for --objective {objective}, not {cfg.data.objective}"
            )
        self.objective = objective
        self.verification = self._verify_data()
        self.grad_accum, self.global_batch = cfg.batch.split(dist.world_size)
        self.mix: mixture.MixturePlan | None = None
        if len(self.sets) > 1:
            self.mix = mixture.MixturePlan(
                [s.num_rows for s in self.sets],
                [spec.weight for spec in self.specs],
                world_size=dist.world_size,
                grad_accum=self.grad_accum,
                micro_batch=cfg.batch.micro_batch,
                seed=cfg.run.seed,
                shuffle=cfg.data.shuffle,
                names=[spec.path for spec in self.specs],
            )
            self.steps_per_epoch = self.mix.steps_per_epoch
            with_val = {i for i, _ in self.vals}
            self.mix_notes = [
                f"[yellow]mixture set {i} ({spec.path}) has no val rows: not in eval_loss[/]"
                for i, spec in enumerate(self.specs)
                if i not in with_val
            ]
        else:
            self.steps_per_epoch = data.steps_per_epoch(
                self.shards.num_rows, dist.world_size, self.grad_accum, cfg.batch.micro_batch
            )
        self.total_steps = cfg.schedule.max_steps or cfg.schedule.epochs * self.steps_per_epoch
        schedule.check(cfg, self.total_steps)
        self.masking = self._masking()

        nsp = cfg.network.nsp if cfg.network.nsp is not None else self.shards.layout == "nsp"
        bert: dict[str, Any] = (
            {"nsp_head": nsp, "pad_id": self.shards.pad_id} if objective == "mlm" else {}
        )
        self.model_cfg = model.model_config(
            cfg.network.model,
            "gpt" if objective == "clm" else "bert",
            vocab_size=self.shards.vocab_size,
            max_seq_len=self.shards.seq_len,
            dropout=cfg.network.dropout,
            **bert,
        )
        # Same seed on every rank: identical initial weights (DDP would broadcast rank 0's anyway,
        # but then a 1-rank and a 2-rank run would not start from the same model).
        torch.manual_seed(cfg.run.seed)
        self.model = model.build_model(self.model_cfg).to(self.dev)
        # Dropout differs per rank (different rows), reproducibly: the loop reseeds every step
        # with `_step_seed(seed, rank, step)`.
        self.fsdp = cfg.parallelism.parallel == "fsdp"
        self.unpad = self._unpad()
        if isinstance(self.model, model.BERT):
            self.model.unpad = self.unpad

        self.step = 0
        self.resumed_from: Path | None = None
        self.resume_notes: list[str] = []  # one line each, printed with the banner
        self.fingerprint = self._fingerprint()
        self.data_changes: list[dict[str, Any]] = []  # allowed changes, as meta.json records
        self.interval = Interval(
            torch.zeros(2, dtype=torch.float64, device=self.dev),
            torch.zeros(len(COUNTS), dtype=torch.float64),
            mix=torch.zeros(len(self.sets), dtype=torch.float64) if self.mix else None,
        )
        if cfg.checkpoint.init_from is not None:
            from train import init_from

            self.resume_notes += init_from.init_weights(
                self.model,
                self.model_cfg,
                Path(cfg.checkpoint.init_from),
                tokenizer_sha256=self.shards.manifest.tokenizer.sha256,
                tokenizer_json=self.shards.tokenizer_path,
            )
        self.autocast = self._autocast()
        # The order of torchtitan: activation checkpointing, then compile, then sharding (FSDP
        # wraps the compiled blocks; its hooks stay outside the compiled graphs).
        self.model.set_activation_checkpointing(cfg.parallelism.activation_checkpointing)
        if cfg.precision.compile:
            self.model.compile_blocks()
        if self.fsdp:
            self._shard()
        self.optimizer = optim.build_optimizer(self.model, cfg, self.dev)
        self.pending: checkpoint.PendingSave | None = None  # an --async-checkpoint in flight
        if cfg.checkpoint.resume:
            self._resume()  # a checkpoint of this run replaces the --init-from weights

        net: nn.Module = self.model
        if dist.enabled and not self.fsdp:
            net = DDP(net, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)
        self.net = net
        self.peak = peak_flops(cfg, self.dev)
        self.stop_requested = False

    # --- set-up helpers ---

    def _unpad(self) -> bool:
        """`--unpad`: on by default for MLM (exact within float rounding), refused for CLM."""
        unpad = self.cfg.network.unpad
        if self.objective == "clm":
            if unpad:
                raise Stop(
                    "--unpad is for mlm shards (padded single sequences); causal-LM rows are "
                    "packed (see --doc-mask for attention within documents)"
                )
            return False
        return True if unpad is None else unpad

    def _shard(self) -> None:
        """FSDP2: each transformer block, then the root (embeddings, final norm, heads; the tied
        embedding/output weight stays in one unit), sharded over all ranks. Under bf16 the
        parameters are gathered in bf16 and gradients reduced in fp32 (the sharded master
        weights and AdamW state stay fp32); on CPU and under fp32 all is fp32."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        bf16 = self.dtype_name == "bf16"
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if bf16 else torch.float32, reduce_dtype=torch.float32
        )
        blocks = self.model.blocks_list()
        for i, block in enumerate(blocks):
            # The last block's parameters are needed again at once by the backward: keeping
            # them gathered after the forward saves one all-gather (torchtitan does the same).
            fully_shard(block, mp_policy=policy, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(self.model, mp_policy=policy)

    def _masking(self) -> data.MaskingConfig | None:
        if self.objective != "mlm" or self.shards.static_masking:
            return None
        m = self.cfg.masking
        return data.MaskingConfig(
            probability=m.mask_probability,
            strategy=m.mask_strategy,
            mask_replace=m.mask_replace,
            random_replace=m.random_replace,
            span_p=m.span_p,
            max_span=m.max_span,
            seed=self.cfg.run.seed,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.cfg.precision.dtype
        if dtype == "auto":
            bf16_ok = self.dev.type == "cuda" and torch.cuda.is_bf16_supported()
            dtype = "bf16" if bf16_ok else "fp32"
        self.dtype_name = dtype
        if dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.dev.type, dtype=torch.bfloat16)

    def _verify_data(self) -> data.Verification:
        """`_verify_manifest` for each shard set, added up (seconds None when none was read)."""
        # Remote sets are verified shard by shard as they are downloaded (dataprep.shard_cache).
        done = [self._verify_manifest(s.manifest) for s in self.sets if s.remote is None]
        read = [v.seconds for v in done if v.seconds is not None]
        return data.Verification(
            sum(v.files for v in done),
            sum(v.bytes for v in done),
            sum(read) if read else None,
            [],
        )

    def _verify_manifest(self, manifest: Manifest) -> data.Verification:
        """Checks the shards' SHA-256s against the manifest, once per run (`data.VerifiedRecord`
        in the run directory). The files are shared out over the ranks (rank r reads files r,
        r + world_size, ...), and every rank gets every verdict: a mismatch stops all ranks
        together, with one line naming the file.

        NOTE: on one rank alone a terabyte takes about half an hour at 600 MB/s, longer than the
        process group's timeout (10 minutes for NCCL) that the other ranks would wait in."""
        record = data.VerifiedRecord(manifest, self.run_dir / data.VERIFIED)
        covered = bool(distributed.broadcast_object(record.covered))  # rank 0's record decides
        if covered:
            return data.Verification(record.files, record.bytes, None, [])
        t0 = time.perf_counter()
        try:
            mine = manifest.verify(part=(self.dist.rank, self.dist.world_size))
        except OSError as e:  # an unreadable file: also a verdict
            mine = [f"{e.filename}: {e.strerror}"]
        seconds = time.perf_counter() - t0
        problems: list[str] = []
        slowest = 0.0
        for part in distributed.all_gather_object((mine, seconds)):
            lines, secs = cast(tuple[list[str], float], part)
            problems += lines
            slowest = max(slowest, secs)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise Stop(
                f"{problems[0]}{more}: the shards no longer match their manifest; "
                "re-run `dataprep tokenize` into a fresh directory"
            )
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            record.write(slowest)
        return data.Verification(record.files, record.bytes, slowest, [])

    def _fingerprint(self) -> dict[str, Any]:
        """What fixes the samples of every step: the data (manifest and tokenizer hashes), the
        order (seed, shuffle, global batch) and what is made of a row (objective, seq_len,
        masking, doc_mask). Saved in each checkpoint's meta.json; resume compares it."""
        m = self.shards.manifest
        return {
            "shards": self.shards.source,
            "manifest_sha256": sha256_file(m.path),
            "tokenizer_sha256": m.tokenizer.sha256,
            "seed": self.cfg.run.seed,
            "shuffle": self.cfg.data.shuffle,
            "seq_len": m.seq_len,
            "objective": self.objective,
            "global_batch": self.global_batch,
            "doc_mask": self.cfg.data.doc_mask,
            "masking": dataclasses.asdict(self.cfg.masking) if self.masking is not None else None,
            "world_size": self.dist.world_size,
            # None for one set (the fingerprint of runs before mixtures); else every set's
            # manifest SHA-256 and normalised weight, in --shards order.
            "mixture": [
                {"manifest_sha256": sha256_file(s.manifest.path), "weight": spec.weight}
                for s, spec in zip(self.sets, self.specs, strict=True)
            ]
            if self.mix is not None
            else None,
        }

    def _data_differences(self, saved: dict[str, Any] | None) -> list[str]:
        """One line per fingerprint field that differs from the checkpoint's `saved`."""
        if not isinstance(saved, dict):
            return ["the checkpoint records no data fingerprint (saved by an older trainer)"]
        now = self.fingerprint
        out: list[str] = []
        for key, option in FINGERPRINT_OPTIONS.items():
            a, b = saved.get(key), now[key]
            if a == b:
                continue
            if key == "manifest_sha256":
                out.append(
                    f"{option}: the checkpoint was trained on {str(a)[:16]} (manifest.json "
                    f"sha256 of {saved.get('shards')}), these shards are {b[:16]}"
                )
            elif key == "masking" and isinstance(a, dict) and isinstance(b, dict):
                out.extend(
                    f"--{k.replace('_', '-')}: the checkpoint was trained with {a.get(k)}, now {v}"
                    for k, v in b.items()
                    if a.get(k) != v
                )
            else:
                hint = " (set it to resume on another number of ranks)" * (key == "global_batch")
                out.append(f"{option}: the checkpoint was trained with {a}, now {b}{hint}")
        return out

    def _resume(self) -> None:
        found: tuple[Path, dict[str, Any], list[str]] | None = None
        error: str | None = None
        try:
            found = checkpoint.load_latest_good(self.run_dir, full_weights=False)
        except checkpoint.CorruptCheckpoint as e:
            error = str(e)
        # Every rank reads the checkpoints itself (--out is shared); they must agree on the step.
        step = -2 if error is not None else -1 if found is None else int(found[1]["step"])
        low, high = distributed.agree_min_max(step)
        if error is not None:
            raise Stop(error)
        if low != high:
            raise Stop(
                f"ranks found different checkpoints in {checkpoint.checkpoint_dir(self.run_dir)} "
                f"(steps {low} to {high}; -1 = none, -2 = none usable): --out must be one "
                "directory that every rank sees"
            )
        if found is None:
            return
        path, state, notes = found
        self.resume_notes += [f"[yellow]{line}[/]" for line in notes]
        changes = self._data_differences(state.get("data"))
        if changes and not self.cfg.checkpoint.allow_data_change:
            raise Stop(
                f"{path}: {'; '.join(changes)} (pass --allow-data-change to resume on these "
                "samples anyway, or use another --out)"
            )
        self.data_changes = list(state.get("data_changes", []))
        if changes:
            self.data_changes.append({"step": state["step"], "changes": changes})
            self.resume_notes += [
                f"[yellow]data changed (--allow-data-change): {c}[/]" for c in changes
            ]
        if state["model_config"] != self.model_cfg.to_dict():
            raise Stop(f"{path}: saved for another model configuration; use another --out")
        if checkpoint.is_sharded(path):
            # Shards of any number of ranks, into this run's layout (sharded or whole).
            from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

            model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
            checkpoint.load_sharded(path, {"model": model_sd, "optimizer": optim_sd})
            set_state_dict(
                self.model, self.optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd
            )
        elif self.fsdp:
            # A one-file (ddp) checkpoint: every rank has read the whole state and keeps its own
            # shards of it (set_state_dict with full_state_dict).
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            try:
                optim_sd = checkpoint.optimizer_state_by_name(
                    state["optimizer"], self.model, self.optimizer
                )
            except ValueError as e:
                raise Stop(f"{path}: cannot resume with --parallel fsdp: {e}") from None
            set_state_dict(
                self.model,
                self.optimizer,
                model_state_dict=state["model"],
                optim_state_dict=optim_sd,
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        saved_parallel, parallel = state.get("parallel", "ddp"), self.cfg.parallelism.parallel
        if saved_parallel != parallel:
            self.resume_notes.append(
                f"saved with --parallel {saved_parallel}, resumed with --parallel {parallel}"
            )
        self.step = state["step"]
        rng = state["rng"]
        saved_world = len(rng)
        if saved_world == self.dist.world_size:
            checkpoint.set_rng_state(rng[self.dist.rank])
        else:
            self.resume_notes.append(
                f"resumed on {self.dist.world_size} ranks, saved on {saved_world} "
                f"(same global batch {self.global_batch}: same rows, same order)"
            )
        self._restore_interval(state.get("interval"), saved_world)
        self.resumed_from = path

    def _restore_interval(self, saved: list[dict[str, Any]] | None, saved_world: int) -> None:
        """The metrics interval in progress at the checkpoint (see `Interval`). On the same
        number of ranks each rank takes its own sums back (the same additions as without the
        interruption); on another, rank 0 takes the total."""
        if not saved:
            return
        if saved_world == self.dist.world_size:
            mine = saved[self.dist.rank]
            sums = mine["sums"]
        else:
            mine = saved[0]
            sums = [sum(s["sums"][i] for s in saved) if self.dist.is_main else 0.0 for i in (0, 1)]
        iv = self.interval
        iv.sums.copy_(torch.tensor(sums, dtype=torch.float64))
        counts = list(mine["counts"])  # a checkpoint before COUNTS grew holds [lm, nsp]
        iv.counts.copy_(torch.tensor(counts + [0.0] * (len(COUNTS) - len(counts))))
        iv.steps, iv.wait = int(mine["steps"]), float(mine["wait"])
        iv.elapsed, iv.grad_norm = float(mine.get("elapsed", 0.0)), float(mine["grad_norm"])
        if iv.mix is not None:
            same = saved_world == self.dist.world_size
            rows = [
                sum(s["mix"][i] for s in saved) if self.dist.is_main else 0.0
                for i in range(len(self.sets))
            ]
            iv.mix.copy_(torch.tensor(mine["mix"] if same else rows, dtype=torch.float64))

    # --- the loop ---

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step in epoch) of global step `step`: the data position is the step."""
        return divmod(step, self.steps_per_epoch)

    def micro_batches(self, start: int) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The micro-batches of every step from `start` on, one list per step, epoch after epoch."""
        if self.mix is not None:
            loader = mixture.make_loader(
                self.sets,
                self.mix,
                rank=self.dist.rank,
                start_step=start,
                num_workers=self.cfg.data.num_workers,
                masking=self.masking,
                doc_mask=self.cfg.data.doc_mask,
                pin_memory=self.dev.type == "cuda",
            )
            groups = mixture.iter_steps(loader, self.grad_accum)
            yield from (
                groups
                if self.cfg.data.num_workers
                else data.prefetch(groups, self.cfg.data.prefetch)
            )
            return
        epoch, first = self.position(start)
        while True:
            loader = data.make_loader(
                self.shards,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                micro_batch=self.cfg.batch.micro_batch,
                grad_accum=self.grad_accum,
                seed=self.cfg.run.seed,
                epoch=epoch,
                start_step=first,
                num_workers=self.cfg.data.num_workers,
                masking=self.masking,
                doc_mask=self.cfg.data.doc_mask,
                shuffle=self.cfg.data.shuffle,
                pin_memory=self.dev.type == "cuda",
            )
            steps = (micro for _, micro in data.iter_steps(loader))
            yield from (
                steps if self.cfg.data.num_workers else data.prefetch(steps, self.cfg.data.prefetch)
            )
            epoch, first = epoch + 1, 0

    def train_step(
        self, micro: list[dict[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step. Returns (local loss sums [lm, nsp], global counts, grad norm)."""
        counts = distributed.all_reduce(_counts(micro))
        lm_total = max(float(counts[0]), 1.0)
        nsp_total = max(float(counts[1]), 1.0)
        sums = torch.zeros(2, dtype=torch.float64, device=self.dev)
        scale = float(self.dist.world_size)
        for i, batch in enumerate(micro):
            with self._grad_sync(i == len(micro) - 1):
                with self.autocast:
                    out = self.net(**_to_device(batch, self.dev))
                loss = out["lm"].float() * (scale / lm_total)
                if "nsp" in out:
                    loss = loss + out["nsp"].float() * (scale / nsp_total)
                loss.backward()
            sums[0] += out["lm"].detach().double()
            if "nsp" in out:
                sums[1] += out["nsp"].detach().double()
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if isinstance(norm, DTensor):  # FSDP: the norm of the sharded gradients, all-reduced
            norm = norm.full_tensor()
        return sums, counts, float(norm)

    def _grad_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Gradients are reduced over the ranks in the backward of a step's last micro-batch
        only (the earlier ones accumulate locally)."""
        if self.fsdp:
            self.model.set_requires_gradient_sync(last)  # type: ignore[operator]
            return contextlib.nullcontext()
        if last or not self.dist.enabled:
            return contextlib.nullcontext()
        return self.net.no_sync()  # type: ignore[operator,no-any-return]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Loss on the val split: of the one shard set, or of all sets of a mixture together
        (target-weighted) with each set's own as `eval_loss/<set index>`."""
        if not self.vals:
            return None
        self.model.eval()
        # Per val set: [lm loss sum, lm targets, nsp loss sum, nsp targets].
        totals = torch.zeros(len(self.vals), 4, dtype=torch.float64)
        for k, (_, val) in enumerate(self.vals):
            loader = data.make_eval_loader(
                val,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                micro_batch=self.cfg.batch.micro_batch,
                max_rows=self.cfg.logging.eval_rows,
                masking=self.masking,
                doc_mask=self.cfg.data.doc_mask,
            )
            for batch in loader:
                c = _counts([batch])
                with self.autocast:
                    out = self.model(**_to_device(batch, self.dev))
                totals[k] += torch.tensor(
                    [
                        float(out["lm"]),
                        float(c[0]),
                        float(out.get("nsp", torch.zeros(()))),
                        float(c[1]),
                    ],
                    dtype=torch.float64,
                )
        self.model.train()
        distributed.all_reduce(totals)
        whole = totals.sum(0)
        loss = float(whole[0] / max(float(whole[1]), 1.0))
        result = {
            "eval_loss": loss,
            "eval_ppl": math.exp(min(loss, 50.0)),
            "eval_tokens": int(whole[1]),
        }
        if whole[3] > 0:
            result["eval_nsp_loss"] = float(whole[2] / whole[3])
        if self.mix is not None:
            for (i, _), row in zip(self.vals, totals, strict=True):
                result[f"eval_loss/{i}"] = float(row[0] / max(float(row[1]), 1.0))
        return result

    def save(self, reason: str, metrics: Metrics) -> None:
        rng = distributed.all_gather_object(checkpoint.rng_state())
        interval = distributed.all_gather_object(
            {**self.interval.to_state(), "elapsed": self._interval_elapsed()}
        )
        if self.fsdp:
            self._save_sharded(reason, metrics, rng, interval)
            return
        if not self.dist.is_main:
            distributed.barrier()
            return
        meta = self._meta(reason)
        state = {
            **meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "interval": interval,
        }
        path = checkpoint.save(self.run_dir, self.step, state, meta, self.cfg.checkpoint.keep_last)
        metrics.print(f"[green]checkpoint[/] {path} ({reason})")
        distributed.barrier()

    def _save_sharded(
        self, reason: str, metrics: Metrics, rng: list[object], interval: list[object]
    ) -> None:
        """`--parallel fsdp`: every rank writes its shards (checkpoint.save_sharded); with
        `--async-checkpoint`, periodic ones in the background (the previous one is completed
        first; stops and the end are written at once)."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        self.finish_pending(metrics)
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        meta = self._meta(reason)
        state = {**meta, "rng": rng, "interval": interval}
        background = self.cfg.checkpoint.async_checkpoint and reason == "periodic"
        out = checkpoint.save_sharded(
            self.run_dir,
            self.step,
            {"model": model_sd, "optimizer": optim_sd},
            state,
            meta,
            self.cfg.checkpoint.keep_last,
            background=background,
        )
        if isinstance(out, checkpoint.PendingSave):
            self.pending = out
            metrics.print(f"[green]checkpoint[/] step {self.step} being written ({reason})")
        elif out is not None:
            metrics.print(f"[green]checkpoint[/] {out} ({reason})")

    def finish_pending(self, metrics: Metrics) -> None:
        """Completes a background checkpoint, if one is in flight (every rank)."""
        if self.pending is not None:
            path = self.pending.wait()
            self.pending = None
            if path is not None:
                metrics.print(f"[green]checkpoint[/] {path} (written in the background)")

    def _meta(self, reason: str) -> dict[str, Any]:
        epoch, in_epoch = self.position(self.step)
        return {
            "step": self.step,
            "epoch": epoch,
            "step_in_epoch": in_epoch,
            "global_batch": self.global_batch,
            "world_size": self.dist.world_size,
            "objective": self.objective,
            "data": self.fingerprint,
            "data_changes": self.data_changes,
            "config": self.cfg.to_dict(),
            "model_config": self.model_cfg.to_dict(),
            "reason": reason,
            "time": time.time(),
            "parallel": self.cfg.parallelism.parallel,
        }

    def run(self) -> int:
        cfg, dist = self.cfg, self.dist
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        distributed.barrier()
        metrics = Metrics(
            self.run_dir,
            dist.is_main,
            cfg.logging.tensorboard,
            # Nothing is redone when the run is already complete: keep its lines as they are.
            self.step if self.resumed_from and self.step < self.total_steps else -1,
        )
        if cfg.logging.wandb and dist.is_main:
            metrics.wandb = watch.Wandb(cfg, self.run_dir)
        self.profiler = watch.StepProfiler(
            watch.parse_profile_steps(cfg.logging.profile_steps), self.run_dir, dist.rank, self.dev
        )
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._loop(metrics)
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.profiler.close()
            metrics.close()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def _banner(self, metrics: Metrics) -> None:
        m, s = self.model_cfg, self.shards
        tokens_per_step = self.global_batch * s.seq_len
        metrics.print(
            f"[bold]{m.arch}[/] {self.cfg.network.model}: {self.model.num_params() / 1e6:.2f}M params, "
            f"{m.n_layer} layers x {m.d_model}, vocab {m.vocab_size} | {self.objective} on "
            f"{sum(x.num_rows for x in self.sets):,} rows x {s.seq_len} | {self.dist} | batch {self.global_batch} rows "
            f"= {self.dist.world_size} ranks x {self.grad_accum} accum x {self.cfg.batch.micro_batch} "
            f"({tokens_per_step:,} tokens) | {self.steps_per_epoch} steps/epoch, {self.total_steps} steps | "
            f"{self.dtype_name}{' compiled' if self.cfg.precision.compile else ''} | "
            f"{self._layout()}"
        )
        if self.mix is not None:
            metrics.print(
                "mixture (metrics mix/<set>): "
                + ", ".join(
                    f"{i} = {spec.path} (weight {spec.weight:.4g}, {shards.num_rows:,} rows)"
                    for i, (spec, shards) in enumerate(zip(self.specs, self.sets, strict=True))
                )
            )
            for note in self.mix_notes:
                metrics.print(note)
        v = self.verification
        if v.seconds is None:
            metrics.print(f"data: {v.files} files unchanged since verified ({data.VERIFIED})")
        else:
            metrics.print(
                f"data: {v.files} files ({v.bytes / 1e6:,.1f} MB) verified against the manifest "
                f"in {v.seconds:.2f} s ({v.mb_per_s:,.0f} MB/s)"
            )
        for note in self.resume_notes:
            metrics.print(note)
        if self.resumed_from is not None:
            epoch, in_epoch = self.position(self.step)
            metrics.print(
                f"resumed from {self.resumed_from} (epoch {epoch}, step {in_epoch} of the epoch)"
            )

    def _layout(self) -> str:
        """How the model runs, for the banner: parallelism, recompute, unpadding."""
        par = self.cfg.parallelism
        parts: list[str] = [par.parallel if self.dist.enabled or self.fsdp else "1 process"]
        if par.activation_checkpointing != "none":
            parts.append(f"activation checkpointing {par.activation_checkpointing}")
        if self.unpad:
            parts.append("unpadded")
        return ", ".join(parts)

    def _interval_elapsed(self) -> float:
        """Training seconds of the interval in progress (pauses excluded, resumed part included)."""
        return self.interval.elapsed + time.perf_counter() - self._t_interval

    def _loop(self, metrics: Metrics) -> int:
        cfg = self.cfg
        self._banner(metrics)
        if self.step >= self.total_steps:
            metrics.print(f"already at step {self.step} of {self.total_steps}: nothing to do")
            return 0
        self.model.train()
        tokens_per_step = self.global_batch * self.shards.seq_len
        iv, bad = self.interval, 0
        self._t_interval = time.perf_counter()
        batches = self.micro_batches(self.step)
        while self.step < self.total_steps:
            self.profiler.before(self.step)
            t0 = time.perf_counter()
            micro = next(batches)
            iv.wait += time.perf_counter() - t0
            optim.set_lr(self.optimizer, schedule.lr_at(self.step, cfg, self.total_steps))
            torch.manual_seed(_step_seed(cfg.run.seed, self.dist.rank, self.step))
            sums, counts, grad_norm = self.train_step(micro)
            if math.isfinite(grad_norm):
                self.optimizer.step()
                bad = 0
            else:
                bad += 1
                metrics.print(
                    f"[yellow]step {self.step}: non-finite gradient norm, step skipped[/]"
                )
                if bad >= cfg.optim.max_bad_steps:
                    raise Stop(f"{bad} non-finite steps in a row at step {self.step}: stopping")
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.profiler.after(self.step)
            iv.sums += sums
            iv.counts += counts
            iv.steps += 1
            iv.grad_norm = grad_norm
            if iv.mix is not None:
                for b in micro:
                    iv.mix += torch.bincount(b[mixture.SOURCE], minlength=len(self.sets))

            if self.step % cfg.logging.log_every == 0 or self.step == self.total_steps:
                self._log(metrics, tokens_per_step)
                iv.reset()
                self._t_interval = time.perf_counter()

            done = self.step >= self.total_steps
            t_pause = time.perf_counter()  # evaluation and checkpoints are not training time
            if (cfg.logging.eval_every and self.step % cfg.logging.eval_every == 0) or done:
                result = self.evaluate()
                if result is not None:
                    metrics.log(
                        {"step": self.step, **result},
                        f"step {self.step:>6} | [cyan]eval loss {result['eval_loss']:.4f} ppl {result['eval_ppl']:.2f}[/]",
                    )
            stop = torch.tensor([float(self.stop_requested)])
            stop_now = float(distributed.all_reduce(stop, torch.distributed.ReduceOp.MAX)[0]) > 0
            halt = (
                cfg.checkpoint.halt_at_step is not None and self.step >= cfg.checkpoint.halt_at_step
            )
            self._t_interval += time.perf_counter() - t_pause
            if (
                done
                or stop_now
                or halt
                or (cfg.checkpoint.ckpt_every and self.step % cfg.checkpoint.ckpt_every == 0)
            ):
                t_pause = time.perf_counter()
                reason = (
                    "end" if done else "SIGTERM" if stop_now else "halt" if halt else "periodic"
                )
                self.save(reason, metrics)  # with the interval in progress (see Interval)
                self._t_interval += time.perf_counter() - t_pause
            if stop_now or halt:
                if iv.steps:
                    # The steps since the last line, shown now; a resume replaces this line
                    # with the full interval's (the checkpoint carries it).
                    self._log(metrics, tokens_per_step, partial=True)
                metrics.print(f"stopped at step {self.step}; rerun the same command to resume")
                return 0
        if cfg.checkpoint.export_hf and self.dist.is_main:
            from train import export

            out = export.export_run(self.run_dir)
            metrics.print(f"exported to {out}")
        return 0

    def _log(self, metrics: Metrics, tokens_per_step: int, partial: bool = False) -> None:
        """A metrics line for the interval in progress (`partial`: at a stop, off the
        `--log-every` grid; marked so that a resume can replace it)."""
        iv = self.interval
        s = distributed.all_reduce(iv.sums.clone()).cpu()
        counts, steps = iv.counts, iv.steps
        elapsed = max(self._interval_elapsed(), 1e-9)
        loss = float(s[0] / max(float(counts[0]), 1.0))
        tokens_per_s = steps * tokens_per_step / elapsed
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": self.position(self.step - 1)[0],
            "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": iv.grad_norm,
            "tokens_per_s": tokens_per_s,
            "data_wait": iv.wait / elapsed,
            "step_time": elapsed / steps,
        }
        if counts[1] > 0:
            record["nsp_loss"] = float(s[1] / counts[1])
        if iv.mix is not None:
            # The realised mixture of the interval: each set's share of the rows fed.
            rows = distributed.all_reduce(iv.mix.clone())
            for i, n in enumerate(rows.tolist()):
                record[f"mix/{i}"] = n / max(float(rows.sum()), 1.0)
        if partial:
            record["partial"] = True
        # Padding (and filler rows) are no work done: MFU counts the real tokens only.
        real = float(counts[2])
        record["pad_share"] = 1.0 - real / (steps * tokens_per_step)
        mfu = ""
        if self.peak is not None:
            flops = self._flops_per_token(float(counts[0]), real, float(counts[3]))
            real_per_s = tokens_per_s * (1.0 - record["pad_share"])
            record["mfu"] = flops * real_per_s / (self.peak * self.dist.world_size)
            mfu = f" | mfu {record['mfu']:.1%}"
        nsp = f" nsp {record['nsp_loss']:.4f}" if "nsp_loss" in record else ""
        metrics.log(
            record,
            f"step {self.step:>6}/{self.total_steps} | loss {loss:.4f}{nsp} | lr {record['lr']:.2e} | "
            f"gnorm {iv.grad_norm:.3f} | {tokens_per_s:,.0f} tok/s{mfu} | data {record['data_wait']:.0%}"
            + (" (partial interval)" if partial else ""),
        )

    def _flops_per_token(self, targets: float, real: float, real_squared: float) -> float:
        """Training FLOPs per real token (model.flops_per_token), from the interval's counts
        (`COUNTS`). BERT's MLM head runs on the predicted positions only: their share of the
        real tokens (labels != -100, counted), not the mask probability (special tokens are
        never masked, and `fixed`/`span` masking hit other shares). Its attention is
        bidirectional within the row: a token of a row of L real tokens attends to L keys, so
        the length in the attention term is sum(L^2) / sum(L), not seq_len. GPT keeps seq_len
        (PaLM's count, see GPT.flops_per_token; packed rows are full)."""
        if real <= 0:
            return 0.0
        if isinstance(self.model, model.BERT):
            return self.model.flops_per_token(real_squared / real, mlm_fraction=targets / real)
        return self.model.flops_per_token(self.shards.seq_len)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m train`; owns set-up and teardown of the process group."""
    try:
        cfg = config.parse(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = distributed.init(cfg.precision.device, group_of_one=cfg.parallelism.parallel == "fsdp")
    try:
        return Trainer(cfg, d).run()
    except (Stop, FileNotFoundError, ValueError, DataprepError) as e:
        print(f"error (rank {d.rank}): {e}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
