"""Run configuration: one dataclass, filled from defaults < a TOML file (`--config`) < the command line.

Every field is a command-line option of `python -m train` (`micro_batch` -> `--micro-batch`,
booleans get `--x/--no-x`) and a key of the TOML file (top-level keys, the field names).

>>> cfg = parse(["--shards", "shards/", "--objective", "clm", "--model", "tiny", "--lr", "1e-3"])
>>> (cfg.model, cfg.lr, cfg.micro_batch)
('tiny', 0.001, 8)
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass
class TrainConfig:
    """What one training run does. Fields are documented where they are declared."""

    # --- data ---
    shards: str = (
        ""  # directory written by `dataprep tokenize` (manifest.json, train-*.arrow, val-*.arrow)
    )
    objective: Literal["clm", "mlm"] | None = (
        None  # must match the shards; None = take it from the manifest
    )
    out: str = "runs/default"  # run directory: checkpoints/, metrics.jsonl, config.json, hf/
    num_workers: int = (
        0  # DataLoader worker processes per rank; 0 = a background thread (faster, see README)
    )
    prefetch: int = 4  # steps made ahead by the background thread (num_workers = 0)
    seed: int = 0  # one seed for model init, shuffle order and dynamic masking
    shuffle: bool = True  # seeded global shuffle of (shard, row) per epoch
    doc_mask: bool = (
        False  # CLM: attend only within a document of a packed row, positions restart per document
    )

    # --- model ---
    model: str = (
        "tiny"  # size preset: tiny, mini, small (GPT-2-small / BERT-base), base, medium, large
    )
    dropout: float = 0.0
    nsp: bool | None = None  # BERT next-sentence head; None = on when the shards are NSP pairs

    # --- batch ---
    micro_batch: int = 8  # rows per forward/backward on one rank
    grad_accum: int | None = None  # micro-batches per optimizer step; None = from global_batch
    global_batch: int | None = (
        None  # rows per optimizer step over all ranks (default micro_batch x ranks)
    )

    # --- optimization ---
    lr: float = 6e-4  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr x this
    warmup_steps: int = 100  # linear warmup from 0
    max_steps: int | None = None  # optimizer steps in all; None = epochs x steps per epoch
    epochs: int = 1
    weight_decay: float = 0.1  # on matrices and embeddings, never on biases and norms
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    max_bad_steps: int = 10  # consecutive non-finite losses/gradients before the run aborts

    # --- masking (MLM shards without static masking) ---
    mask_probability: float = 0.15
    mask_strategy: Literal["bernoulli", "fixed", "whole_word", "span"] = "bernoulli"
    mask_replace: float = 0.8  # share of masked tokens replaced by [MASK]
    random_replace: float = 0.1  # share replaced by a random id (the rest keep theirs)
    span_p: float = 0.2  # span strategy: geometric p of span lengths (in words)
    max_span: int = 10

    # --- precision and speed ---
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "fp32", "bf16"] = (
        "auto"  # auto: bf16 autocast on a GPU that has it, fp32 on CPU
    )
    compile: bool = False  # torch.compile the model
    peak_tflops: float | None = (
        None  # per device, for MFU; None = known GPUs (H100/H200/A100), none on CPU
    )

    # --- evaluation, checkpoints, logging ---
    eval_every: int = 500  # steps between evaluations on the val split (0 = only at the end)
    eval_rows: int | None = 2048  # val rows per evaluation (None = all)
    ckpt_every: int = 1000  # steps between checkpoints (0 = only at the end and on SIGTERM)
    keep_last: int = 3  # checkpoints kept
    resume: bool = True  # continue from the latest checkpoint in `out` when there is one
    halt_at_step: int | None = None  # save and exit after this step, as a preemption would (tests)
    log_every: int = 10  # steps between metric lines
    tensorboard: bool = False  # also write TensorBoard events to out/tb (needs `tensorboard`)
    export_hf: bool = False  # at the end, export to Hugging Face format in out/hf

    def validate(self) -> None:
        """Raises ValueError on a value no run can use."""
        if not self.shards:
            raise ValueError("--shards is required (a directory written by `dataprep tokenize`)")
        positive = ["micro_batch", "epochs", "keep_last", "log_every", "max_bad_steps", "prefetch"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ["grad_accum", "global_batch", "max_steps", "eval_rows", "halt_at_step"]:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{_flag(name)} must be at least 1, got {value}")
        for name in ["warmup_steps", "eval_every", "ckpt_every", "num_workers", "grad_clip"]:
            if getattr(self, name) < 0:
                raise ValueError(f"--{_flag(name)} must not be negative")
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.mask_probability < 1:
            raise ValueError(f"--mask-probability must be in (0, 1), got {self.mask_probability}")
        if (
            self.mask_replace < 0
            or self.random_replace < 0
            or self.mask_replace + self.random_replace > 1
        ):
            raise ValueError(
                "--mask-replace and --random-replace must be shares summing to at most 1"
            )

    def batch_split(self, world_size: int) -> tuple[int, int]:
        """`(grad_accum, global_batch)` for `world_size` ranks.

        `global_batch` fixes the rows of each optimizer step (and so the data order and the
        updates) whatever the number of ranks; `grad_accum` follows from it.
        """
        per_pass = self.micro_batch * world_size
        if self.global_batch is None:
            accum = self.grad_accum or 1
            return accum, per_pass * accum
        if self.global_batch % per_pass:
            raise ValueError(
                f"--global-batch {self.global_batch} is not a multiple of "
                f"--micro-batch {self.micro_batch} x {world_size} ranks"
            )
        accum = self.global_batch // per_pass
        if self.grad_accum is not None and self.grad_accum != accum:
            raise ValueError(
                f"--grad-accum {self.grad_accum} contradicts --global-batch {self.global_batch} "
                f"(= {accum} x {self.micro_batch} x {world_size} ranks)"
            )
        return accum, self.global_batch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """`(type, optional)` of an annotation: `int | None` -> `(int, True)`."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _none_or(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def build_parser() -> argparse.ArgumentParser:
    """One option per TrainConfig field; an option not given is absent from the result, so that
    TOML values show through (and `--max-steps none` can still override a TOML value)."""
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Pretrain a GPT (clm) or BERT (mlm) model on dataprep shards. "
        "Launch with torchrun for several processes (see README).",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML file of field = value (command line wins)"
    )
    hints = typing.get_type_hints(TrainConfig)
    comments = _field_comments()
    for f in dataclasses.fields(TrainConfig):
        tp, optional = _base_type(hints[f.name])
        help_text = comments.get(f.name, "")
        default = f.default
        help_text = f"{help_text} (default: {default})" if help_text else f"(default: {default})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": f.name}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        else:
            kwargs["type"] = _none_or(tp) if optional else tp
        parser.add_argument(f"--{_flag(f.name)}", **kwargs)
    return parser


def _field_comments() -> dict[str, str]:
    """The `# comment` after each field in this file: one source for docs and --help."""
    import inspect

    out: dict[str, str] = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        code, _, comment = line.partition("  # ")
        name = code.strip().split(":")[0]
        if comment and name.isidentifier():
            out[name] = comment.strip()
    return out


def load_toml(path: Path) -> dict[str, Any]:
    """Reads a TOML run file; unknown keys are an error naming the file."""
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {unknown} (fields are the --options without dashes)"
        )
    return values


def parse(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < `--config` TOML < explicit command-line options; then validated."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(load_toml(args.config))
    values.update({k: v for k, v in vars(args).items() if k != "config"})
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


__all__ = ["TrainConfig", "build_parser", "load_toml", "parse"]
