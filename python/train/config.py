"""Run configuration as data: one dataclass per section, one field per option.

Each field is declared once, with `opt(default, help, bounds)`, and that declaration is the
command-line option of `python -m train` (`micro_batch` -> `--micro-batch`; booleans get
`--x/--no-x`; a `tuple[str, ...]` is repeated, `--shards A --shards B`), its `--help` line (grouped by section), its bounds, and a key of the TOML file
given with `--config`: top-level (`micro_batch = 16`, the field name) or in its section's table
(`[batch]` then `micro_batch = 16`). Values come from defaults < the TOML file < the command line.
Option names are unique across sections, so the command line stays flat.

The run directory's `config.json` is `TrainConfig.to_dict()` (one object per section);
`TrainConfig.from_dict` reads it back, and also reads the flat layout of runs saved before the
sections existed.

>>> cfg = parse(["--shards", "shards/", "--objective", "clm", "--model", "tiny", "--lr", "1e-3"])
>>> (cfg.network.model, cfg.optim.lr, cfg.batch.micro_batch)
('tiny', 0.001, 8)
>>> parse(["--shards", "shards/", "--micro-batch", "0"])
Traceback (most recent call last):
...
train.config.ConfigError: --micro-batch must be at least 1 (got 0)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# Upper bound of every integer option without a tighter one: larger values are typos, and they
# would otherwise fail deep inside torch or the Rust core (int32 sizes) with a traceback.
INT_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A value no run can use; the message is one line naming the option (or the file and key)."""


def opt(
    default: T,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    metavar: str | None = None,
    required: bool = False,
) -> T:
    """A config field: its default, its `--help` text and, for numbers, its bounds.

    Numeric options need a lower bound (`ge` or `gt`); integers without `le`/`lt` are capped at
    `INT_MAX`, and floats must be finite. `required`: the default means "not given" and the run
    is refused without a value (shown as "(required)" in `--help`).

    >>> @dataclass
    ... class Example:
    ...     steps: int = opt(10, "optimizer steps", ge=1)
    >>> dataclasses.fields(Example)[0].metadata["help"]
    'optimizer steps'
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    meta |= {"metavar": metavar, "required": required}
    return field(default=default, metadata=meta)


# --- the sections (their order is the order of `--help` and of config.json) ---------------


@dataclass
class RunConfig:
    """run: where the run lives and its seed"""

    out: str = opt(
        "runs/default",
        "run directory: checkpoints/, metrics.jsonl, config.json, hf/",
        metavar="DIR",
    )
    seed: int = opt(
        0, "one seed for model init, shuffle order and dynamic masking", ge=0, le=2**32 - 1
    )


@dataclass
class DataConfig:
    """data: the shards and how they are read"""

    shards: tuple[str, ...] = opt(
        (),
        "directory written by `dataprep tokenize` (manifest.json, train-*.arrow, val-*.arrow), "
        "or its s3://bucket/prefix URL (see README, Object storage); repeat as DIR:WEIGHT to "
        "train on a mixture of several (see README, Data mixtures)",
        metavar="DIR[:WEIGHT]",
        required=True,
    )
    objective: Literal["clm", "mlm"] | None = opt(
        None, "must match the shards; none = take it from the manifest"
    )
    shuffle: bool = opt(True, "seeded global shuffle of (shard, row) per epoch")
    doc_mask: bool = opt(
        False,
        "CLM: attend only within a document of a packed row, positions restart per document",
    )
    num_workers: int = opt(
        0,
        "DataLoader worker processes per rank; 0 = a background thread (faster, see README)",
        ge=0,
    )
    prefetch: int = opt(4, "steps made ahead by the background thread (with --num-workers 0)", ge=1)
    shard_cache: str | None = opt(
        None,
        "s3:// shards: local directory the shards are downloaded to and verified in, under "
        "BUCKET/PREFIX; none = $XDG_CACHE_HOME/dataprep/shards (else ~/.cache/dataprep/shards)",
        metavar="DIR",
    )


@dataclass
class NetworkConfig:
    """network: the model"""

    model: str = opt(
        "tiny",
        "size preset: tiny, mini, small (GPT-2-small / BERT-base), base, medium, large",
        metavar="PRESET",
    )
    dropout: float = opt(0.0, "dropout probability (embeddings, attention, MLP)", ge=0, lt=1)
    nsp: bool | None = opt(None, "BERT next-sentence head; none = on when the shards are NSP pairs")
    unpad: bool | None = opt(
        None,
        "MLM: run the encoder on the real tokens only (padding removed, varlen attention per "
        "row, as MosaicBERT); equal to the padded path within float rounding; none = on for "
        "mlm shards (refused for clm)",
    )


@dataclass
class BatchConfig:
    """batch: rows per step and how they are split"""

    micro_batch: int = opt(8, "rows per forward/backward on one rank", ge=1)
    grad_accum: int | None = opt(
        None, "micro-batches per optimizer step; none = from --global-batch (else 1)", ge=1
    )
    global_batch: int | None = opt(
        None,
        "rows per optimizer step over all ranks; none = --micro-batch x ranks x --grad-accum",
        ge=1,
    )

    def split(self, world_size: int) -> tuple[int, int]:
        """`(grad_accum, global_batch)` for `world_size` ranks.

        `global_batch` fixes the rows of each optimizer step (and so the data order and the
        updates) whatever the number of ranks; `grad_accum` follows from it.

        >>> BatchConfig(micro_batch=2, global_batch=16).split(2)
        (4, 16)
        """
        per_pass = self.micro_batch * world_size
        if self.global_batch is None:
            accum = self.grad_accum or 1
            return accum, per_pass * accum
        if self.global_batch % per_pass:
            raise ConfigError(
                f"--global-batch {self.global_batch} is not a multiple of "
                f"--micro-batch {self.micro_batch} x {world_size} ranks"
            )
        accum = self.global_batch // per_pass
        if self.grad_accum is not None and self.grad_accum != accum:
            raise ConfigError(
                f"--grad-accum {self.grad_accum} contradicts --global-batch {self.global_batch} "
                f"(= {accum} x {self.micro_batch} x {world_size} ranks)"
            )
        return accum, self.global_batch


@dataclass
class OptimConfig:
    """optim: AdamW and the guards of each update"""

    lr: float = opt(6e-4, "peak learning rate", gt=0)
    weight_decay: float = opt(
        0.1, "AdamW weight decay, on matrices and embeddings, never on biases and norms", ge=0
    )
    beta1: float = opt(0.9, "AdamW beta1", ge=0, lt=1)
    beta2: float = opt(0.95, "AdamW beta2", ge=0, lt=1)
    eps: float = opt(1e-8, "AdamW epsilon", ge=0)
    grad_clip: float = opt(1.0, "max global gradient norm; 0 = no clipping", ge=0)
    max_bad_steps: int = opt(
        10, "consecutive non-finite losses/gradients before the run aborts", ge=1
    )


@dataclass
class ScheduleConfig:
    """schedule: run length and learning-rate schedule"""

    warmup_steps: int = opt(100, "linear warmup from 0 over this many steps", ge=0)
    min_lr_ratio: float = opt(
        0.1, "cosine, linear and wsd decay to --lr x this at the last step", ge=0, le=1
    )
    lr_schedule: Literal["cosine", "linear", "constant", "wsd"] = opt(
        "cosine",
        "after the warmup: cosine or linear decay, constant, or wsd (warmup-stable-decay: "
        "constant, then a linear decay over the last --decay-fraction of the steps)",
    )
    decay_fraction: float = opt(0.2, "wsd: share of all steps spent in the final decay", gt=0, le=1)
    max_steps: int | None = opt(
        None, "optimizer steps in all; none = --epochs x steps per epoch", ge=1
    )
    epochs: int = opt(1, "passes over the train split (when --max-steps is none)", ge=1)


@dataclass
class MlmMaskingConfig:
    """masking: dynamic MLM masking (MLM shards without static masking)"""

    mask_probability: float = opt(0.15, "share of (non-special) tokens masked", gt=0, lt=1)
    mask_strategy: Literal["bernoulli", "fixed", "whole_word", "span"] = opt(
        "bernoulli", "which tokens are masked (see README, Masked-LM shards)"
    )
    mask_replace: float = opt(0.8, "share of masked tokens replaced by [MASK]", ge=0, le=1)
    random_replace: float = opt(
        0.1, "share replaced by a random id (the rest keep theirs)", ge=0, le=1
    )
    span_p: float = opt(0.2, "span strategy: geometric p of span lengths (in words)", gt=0, le=1)
    max_span: int = opt(10, "span strategy: longest span (in words)", ge=1)


@dataclass
class PrecisionConfig:
    """precision: device, precision and speed"""

    device: Literal["auto", "cpu", "cuda"] = opt(
        "auto", "auto = the rank's GPU when there is one, else the CPU"
    )
    dtype: Literal["auto", "fp32", "bf16"] = opt(
        "auto", "auto = bf16 autocast on a GPU that has it, fp32 on CPU"
    )
    compile: bool = opt(
        False,
        "torch.compile each transformer block (fullgraph; embeddings, heads and the data-"
        "dependent unpadding stay eager)",
    )
    peak_tflops: float | None = opt(
        None,
        "dense peak TFLOP/s per device, for MFU; none = the figure of known GPUs "
        "(H100/H200/A100), no MFU otherwise",
        gt=0,
    )


@dataclass
class ParallelConfig:
    """parallelism: data parallelism and activation memory"""

    parallel: Literal["ddp", "fsdp"] = opt(
        "ddp",
        "ddp = a full replica per rank (DistributedDataParallel); fsdp = parameters, gradients "
        "and optimizer state sharded over the ranks (FSDP2 fully_shard per block, bf16 "
        "parameters with fp32 gradient reduction under bf16, sharded checkpoints)",
    )
    activation_checkpointing: Literal["none", "full", "selective"] = opt(
        "none",
        "recompute block activations in the backward: full = every transformer block, "
        "selective = every other block (1, 3, 5, ...: about half the activation memory for "
        "about half the recompute)",
    )


@dataclass
class CheckpointConfig:
    """checkpoint: checkpoints, resume and export"""

    ckpt_every: int = opt(
        1000, "steps between checkpoints; 0 = only at the end and on SIGTERM", ge=0
    )
    keep_last: int = opt(3, "checkpoints kept", ge=1)
    resume: bool = opt(True, "continue from the latest checkpoint in --out when there is one")
    halt_at_step: int | None = opt(
        None, "save and exit after this step, as a preemption would (tests); none = never", ge=1
    )
    export_hf: bool = opt(False, "at the end, export to Hugging Face format in --out/hf")
    async_checkpoint: bool = opt(
        False,
        "with --parallel fsdp: periodic checkpoints are written in the background while "
        "training goes on (torch.distributed.checkpoint.async_save); completed and renamed "
        "into place before the next one",
    )
    init_from: str | None = opt(
        None,
        "continued pretraining: start from the weights of a checkpoint or run directory of "
        "ours, or a transformers directory (GPT2LMHeadModel, BertForMaskedLM/ForPreTraining); "
        "a checkpoint in --out still wins (resume)",
        metavar="PATH",
    )
    allow_data_change: bool = opt(
        False,
        "resume even when the shards, tokenizer, seed, shuffle, masking or global batch differ "
        "from the checkpoint's (the change is recorded in meta.json)",
    )


@dataclass
class LoggingConfig:
    """logging: evaluation and metrics"""

    eval_every: int = opt(
        500, "steps between evaluations on the val split; 0 = only at the end", ge=0
    )
    eval_rows: int | None = opt(2048, "val rows per evaluation; none = all", ge=1)
    log_every: int = opt(10, "steps between metric lines", ge=1)
    tensorboard: bool = opt(False, "also write TensorBoard events to --out/tb (needs tensorboard)")
    wandb: bool = opt(
        False, "also send the metrics to Weights & Biases (needs wandb; project $WANDB_PROJECT)"
    )
    profile_steps: str | None = opt(
        None,
        "record optimizer steps A..B-1 with torch.profiler to --out/profile/ (Chrome trace)",
        metavar="A:B",
    )


@dataclass
class TrainConfig:
    """What one training run does: one field per section, in `--help` order."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    masking: MlmMaskingConfig = field(default_factory=MlmMaskingConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    parallelism: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        """Raises ConfigError (one line, naming the option) on a value no run can use."""
        for option in OPTIONS.values():
            option.check(getattr(getattr(self, option.section), option.name))
        parse_specs(self.data.shards)
        parse_profile_steps(self.logging.profile_steps)
        if self.checkpoint.async_checkpoint and self.parallelism.parallel != "fsdp":
            raise ConfigError(
                "--async-checkpoint needs --parallel fsdp (the sharded checkpoint format)"
            )
        m = self.masking
        if m.mask_replace + m.random_replace > 1:
            raise ConfigError(
                "--mask-replace and --random-replace are shares of the masked tokens: they must "
                f"sum to at most 1 (got {m.mask_replace} + {m.random_replace})"
            )

    def to_dict(self) -> dict[str, Any]:
        """`{section: {field: value}}`, the layout of `config.json`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A validated config from `to_dict()`'s layout, a flat `{field: value}` (the layout of
        `config.json` before sections, and of flat TOML files) or a mix; missing fields take
        their defaults.

        >>> TrainConfig.from_dict({"shards": "s", "optim": {"lr": 1.0}}).optim.lr
        1.0
        >>> TrainConfig.from_dict({"shards": "s", "learning_rate": 1})
        Traceback (most recent call last):
        ...
        train.config.ConfigError: config: unknown keys ['learning_rate'] (keys are the --options without dashes, top-level or in their [section])
        """
        return _build(_flatten(values, source))


# --- values with a syntax of their own (parsed here: validation needs no torch) ---------


@dataclass(frozen=True)
class ShardSpec:
    """One `--shards DIR[:WEIGHT]`: the directory and its normalised weight (1.0 alone)."""

    path: str
    weight: float


def _split(spec: str) -> tuple[str, float | None]:
    """`DIR:WEIGHT` -> (DIR, WEIGHT); a DIR whose last `:` part is not a number is all path."""
    path, sep, tail = spec.rpartition(":")
    if not sep or not path:
        return spec, None
    try:
        weight = float(tail)
    except ValueError:
        return spec, None
    if not math.isfinite(weight) or weight <= 0:
        raise ConfigError(f"--shards {spec}: the weight must be a positive finite number")
    return path, weight


def parse_specs(specs: Sequence[str]) -> list[ShardSpec]:
    """The shard sets of `--shards` (repeated), weights normalised to sum to 1.

    One set needs no weight; several need one each. Raises ConfigError naming the option.

    >>> parse_specs(("shards/",))
    [ShardSpec(path='shards/', weight=1.0)]
    >>> parse_specs(("a:0.7", "b"))
    Traceback (most recent call last):
    ...
    train.config.ConfigError: --shards b: give every shard set a weight when mixing several (--shards DIR:WEIGHT)
    >>> parse_specs(("a:0", "b:1"))
    Traceback (most recent call last):
    ...
    train.config.ConfigError: --shards a:0: the weight must be a positive finite number
    """
    parsed = [(spec, *_split(spec)) for spec in specs]
    seen: set[str] = set()
    for spec, path, weight in parsed:
        if not path:
            raise ConfigError("--shards: an empty directory name")
        key = str(Path(path))
        if key in seen:
            raise ConfigError(f"--shards {spec}: {path} is given twice")
        seen.add(key)
        if weight is None and len(parsed) > 1:
            raise ConfigError(
                f"--shards {spec}: give every shard set a weight when mixing several "
                "(--shards DIR:WEIGHT)"
            )
    total = math.fsum(w or 1.0 for _, _, w in parsed)
    return [ShardSpec(path, (w or 1.0) / total) for _, path, w in parsed]


def parse_profile_steps(spec: str | None) -> tuple[int, int] | None:
    """`A:B` -> (A, B): the optimizer steps A .. B-1 (0-based, as the loop counts them).

    >>> parse_profile_steps("5:8")
    (5, 8)
    >>> parse_profile_steps("8:5")
    Traceback (most recent call last):
    ...
    train.config.ConfigError: --profile-steps must be A:B with integers 0 <= A < B (got '8:5')
    """
    if spec is None:
        return None
    a, sep, b = spec.partition(":")
    try:
        start, stop = int(a), int(b)
    except ValueError:
        start, stop = -1, -1
    if not sep or not 0 <= start < stop:
        raise ConfigError(f"--profile-steps must be A:B with integers 0 <= A < B (got {spec!r})")
    return start, stop


# --- the option index: the one place that walks the dataclasses ---------------------------


@dataclass(frozen=True)
class Option:
    """One field of one section, as the command line, TOML files and validation see it."""

    section: str
    name: str
    kind: type  # bool, int, float or str (a Literal's choices are strings)
    choices: tuple[str, ...] | None
    optional: bool  # None is a value (spelled `none` on the command line)
    multiple: bool  # a tuple of strings: the option is repeated (a list in TOML and JSON)
    default: Any
    help: str
    metavar: str | None
    required: bool
    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Raises ConfigError naming the option when `value` is out of its bounds."""
        if value is None:
            if self.required or not self.optional:
                raise ConfigError(f"{self.flag} is required")
            return
        if self.required and value == self.default:
            raise ConfigError(f"{self.flag} is required: {self.help}")
        if self.kind not in (int, float) or self.multiple:
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.flag} must be a finite number (got {value})")
        le = self.le if self.le is not None else (INT_MAX if self.kind is int else None)
        low_ok = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        high_ok = (le is None or value <= le) and (self.lt is None or value < self.lt)
        if low_ok and high_ok:
            return
        lo = self.ge if self.ge is not None else self.gt
        hi = self.le if self.le is not None else self.lt  # declared bounds only, not INT_MAX
        if lo is not None and hi is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            bounds = f"in {left}{_show(lo)}, {_show(hi)}{right}"
        elif not low_ok:
            bounds = f"at least {_show(lo)}" if self.ge is not None else f"greater than {_show(lo)}"
        else:
            bounds = f"at most {_show(le)}" if self.lt is None else f"less than {_show(self.lt)}"
        raise ConfigError(f"{self.flag} must be {bounds} (got {value})")

    def coerce(self, value: Any, where: str) -> Any:
        """`value` read from a file as this option's type; ConfigError naming `where` if not."""
        if value is None and self.optional:
            return None
        none = isinstance(value, str) and value.strip().lower() == "none"
        if none and self.optional and self.kind in (int, float, str):
            # TOML has no null: `eval_rows = "none"`, `init_from = "none"`, as on the command
            # line (`_converter`), which reads `none` in any case for these kinds.
            return None
        if self.multiple:
            # One value stands for a list of one (`shards = "dir"`, and config.json of runs
            # saved before the option could be repeated).
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list | tuple) and all(isinstance(v, str) for v in items):
                return tuple(items)
            raise ConfigError(
                f"{where}: {self.name} must be a string or a list of strings (got {value!r})"
            )
        if self.choices is not None:
            if value in self.choices:
                return value
            expected = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind is bool:
            if isinstance(value, bool):
                return value
            expected = "true or false"
        elif self.kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            expected = "an integer"
        elif self.kind is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            expected = "a number"
        else:
            if isinstance(value, str):
                return value
            expected = "a string"
        raise ConfigError(f"{where}: {self.name} must be {expected} (got {value!r})")


def _show(value: Any) -> str:
    """A value as `--help` and errors print it (the command line's spelling)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _kind(annotation: Any) -> tuple[type, tuple[str, ...] | None, bool, bool]:
    """`(kind, choices, optional, multiple)` of a field annotation: `int | None` ->
    `(int, None, True, False)`, `tuple[str, ...]` -> `(str, None, False, True)`."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        if args != (str, Ellipsis):
            raise TypeError(f"unsupported config annotation {annotation}")
        return str, None, False, True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported config annotation {annotation}")
        annotation, optional = rest[0], True
    if typing.get_origin(annotation) is Literal:
        return str, tuple(typing.get_args(annotation)), optional, False
    if annotation not in (bool, int, float, str):
        raise TypeError(f"unsupported config annotation {annotation}")
    return annotation, None, optional, False


def _index() -> dict[str, Option]:
    """Every option by field name. Checks the declarations: each field has help, each number a
    lower bound, and no name is used twice (the command line and TOML files are flat)."""
    out: dict[str, Option] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, choices, optional, multiple = _kind(hints[f.name])
            meta = f.metadata
            if not meta.get("help"):
                raise TypeError(f"{cls.__name__}.{f.name}: a config field needs opt(..., help)")
            if kind in (int, float) and meta["ge"] is None and meta["gt"] is None:
                raise TypeError(f"{cls.__name__}.{f.name}: a numeric option needs a lower bound")
            if f.name in out or f.name in SECTIONS:
                raise TypeError(f"{cls.__name__}.{f.name}: option names must be unique")
            out[f.name] = Option(
                section=section,
                name=f.name,
                kind=kind,
                choices=choices,
                optional=optional,
                multiple=multiple,
                default=f.default,
                help=meta["help"],
                metavar=meta["metavar"],
                required=meta["required"],
                ge=meta["ge"],
                gt=meta["gt"],
                le=meta["le"],
                lt=meta["lt"],
            )
    return out


# Section name -> its dataclass, in declaration order.
SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(TrainConfig)[f.name] for f in dataclasses.fields(TrainConfig)
}
OPTIONS: dict[str, Option] = _index()


def _flatten(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`{field: value}` from a flat or sectioned mapping, each value checked against its type."""
    out: dict[str, Any] = {}
    unknown: list[str] = []

    def put(key: str, value: Any, qualified: str) -> None:
        option = OPTIONS.get(key)
        if option is None or (qualified != key and not qualified.startswith(option.section + ".")):
            unknown.append(qualified)
            return
        if key in out:
            raise ConfigError(
                f"{source}: {key} is given twice (top-level and in [{option.section}])"
            )
        out[key] = option.coerce(value, source)

    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {key} must be a table of options ([{key}])")
            for name, inner in value.items():
                put(name, inner, f"{key}.{name}")
        else:
            put(key, value, key)
    if unknown:
        raise ConfigError(
            f"{source}: unknown keys {unknown} "
            "(keys are the --options without dashes, top-level or in their [section])"
        )
    return out


def _build(values: Mapping[str, Any]) -> TrainConfig:
    """A validated TrainConfig from `{field: value}` (values already of the right types)."""
    by_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in values.items():
        by_section[OPTIONS[key].section][key] = value
    cfg = TrainConfig(**{name: SECTIONS[name](**kw) for name, kw in by_section.items()})
    cfg.validate()
    return cfg


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML run file as `{field: value}`; unknown keys and mistyped values are errors naming
    the file."""
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return _flatten(values, str(path))


# --- the command line ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ConfigError (one line; `main` prints it and exits 2) instead of
    the usage block of 47 options and a SystemExit."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (see python -m train --help)")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help at spaces only: `--num-workers` is never cut after `--num-`."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _converter(option: Option) -> Any:
    """The `type=` of a numeric or string option: `none` is None for optional ones."""

    def convert(text: str) -> Any:
        if option.optional and text.strip().lower() == "none":
            return None
        try:
            return option.kind(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}.get(option.kind, "a value")
            spelled = what + (" or none" if option.optional else "")
            raise argparse.ArgumentTypeError(f"expected {spelled}, got {text!r}") from None

    return convert


def _help(option: Option) -> str:
    shown = "required" if option.required else f"default: {_show(option.default)}"
    return f"{option.help} ({shown})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """One option per field, in one argument group per section. An option not given is absent
    from the result (`default=SUPPRESS`), so that TOML values show through, and `--max-steps none`
    can still override a TOML value."""
    parser = _Parser(
        prog="python -m train",
        description="Pretrain a GPT (clm) or BERT (mlm) model on dataprep shards. "
        "Launch with torchrun for several processes (see README).",
        epilog="Every option can also be set in the --config TOML file, by its name without "
        "dashes, top-level (micro_batch = 16) or in its section's table ([batch]); the command "
        "line wins. Optional numbers take `none`.",
        allow_abbrev=False,  # a prefix of an option is a typo, not that option
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="TOML",
        help="TOML file of option = value, top-level or in [section] tables (command line wins)",
    )
    groups = {
        name: parser.add_argument_group(*(cls.__doc__ or name).split(": ", 1))
        for name, cls in SECTIONS.items()
    }
    for option in OPTIONS.values():
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS,
            "help": _help(option),
            "dest": option.name,
        }
        if option.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.multiple:
            kwargs["action"] = "append"
            kwargs["metavar"] = option.metavar or "TEXT"
        elif option.choices is not None:
            kwargs["choices"] = list(option.choices)
        else:
            kwargs["type"] = _converter(option)
            kwargs["metavar"] = option.metavar or {int: "N", float: "X"}.get(option.kind, "TEXT")
        groups[option.section].add_argument(option.flag, **kwargs)
    return parser


def parse(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < `--config` TOML < explicit command-line options; then validated.

    Raises ConfigError (a ValueError) with one line naming the option on any bad input.
    """
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config")
    for name, value in args.items():
        if isinstance(value, list):  # a repeated option (`action="append"`)
            args[name] = tuple(value)
    values = load_toml(config_file) if config_file is not None else {}
    values.update(args)
    return _build(values)


__all__ = [
    "OPTIONS",
    "SECTIONS",
    "BatchConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "LoggingConfig",
    "MlmMaskingConfig",
    "NetworkConfig",
    "OptimConfig",
    "Option",
    "ParallelConfig",
    "PrecisionConfig",
    "RunConfig",
    "ScheduleConfig",
    "ShardSpec",
    "TrainConfig",
    "build_parser",
    "load_toml",
    "opt",
    "parse",
    "parse_profile_steps",
    "parse_specs",
]
