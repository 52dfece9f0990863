"""What people watch besides `metrics.jsonl`: Weights & Biases, and `torch.profiler` traces.

TensorBoard events (`--tensorboard`) are written by `train.train.Metrics` with every numeric
field of each metrics line (loss, lr, grad_norm, tokens_per_s, mfu, data_wait, eval_loss,
mix/<set>); `--wandb` sends the same fields to Weights & Biases. Both are optional packages:
`check_available` refuses the run on every rank, before anything starts, when one is asked for
and not installed. Plots without either: `python -m train.plot` (train/plot.py).

`--profile-steps A:B` records optimizer steps A .. B-1 of each rank with `torch.profiler` and
writes `RUN/profile/trace-rank<r>-steps<A>-<B>.json` (Chrome trace format: open it in
chrome://tracing or https://ui.perfetto.dev), under a temporary name renamed into place.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from train.config import ConfigError, TrainConfig, parse_profile_steps

PROFILE_DIR = "profile"


def check_available(cfg: TrainConfig) -> None:
    """Raises ConfigError (one line naming the option and the package) when `--tensorboard`
    or `--wandb` is asked for and its package is not installed. Called on every rank."""
    wanted = [
        ("--tensorboard", "tensorboard", cfg.logging.tensorboard, " or 'dataprep[watch]'"),
        ("--wandb", "wandb", cfg.logging.wandb, " or 'dataprep[watch]'"),
    ]
    for option, package, on, extra in wanted:
        if on and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"{option} needs the `{package}` package, which is not installed "
                f"(pip install {package}{extra})"
            )


class Wandb:
    """A Weights & Biases run for rank 0's metrics lines. The run id is derived from the run
    directory, so a resumed run appends to the same W&B run (`resume="allow"`); the project is
    `WANDB_PROJECT` (W&B's own variable) or `dataprep`."""

    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        import hashlib

        wandb: Any = importlib.import_module("wandb")  # optional: not a typed dependency
        key = os.fspath(run_dir.resolve())
        self.run: Any = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "dataprep"),
            name=run_dir.name,
            id=hashlib.sha256(key.encode()).hexdigest()[:16],
            resume="allow",
            config=cfg.to_dict(),
            dir=os.fspath(run_dir),
        )

    def log(self, record: dict[str, Any]) -> None:
        values = {
            k: v
            for k, v in record.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.run.log(values, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()


class StepProfiler:
    """`torch.profiler` over optimizer steps `start .. stop-1` (`--profile-steps`); inactive
    when `steps` is None. Call `before(step)` before a step's work and `after(step)` with the
    step count after it; `close()` ends a recording cut short (a stop inside the range)."""

    def __init__(
        self, steps: tuple[int, int] | None, run_dir: Path, rank: int, device: torch.device
    ) -> None:
        self.steps = steps
        self.run_dir, self.rank = run_dir, rank
        self.activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            self.activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.prof: torch.profiler.profile | None = None
        self.first = self.done = -1
        self.written: Path | None = None

    def before(self, step: int) -> None:
        if self.steps is None or self.prof is not None:
            return
        start, stop = self.steps
        if start <= step < stop:
            self.first = step
            self.prof = torch.profiler.profile(activities=self.activities)
            self.prof.__enter__()  # type: ignore[no-untyped-call]

    def after(self, done: int) -> None:
        """`done`: steps completed (the loop's step counter after the step)."""
        self.done = done
        if self.prof is not None and self.steps is not None and done >= self.steps[1]:
            self.close()

    def close(self) -> None:
        if self.prof is None:
            return
        prof, self.prof = self.prof, None
        prof.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        out = self.run_dir / PROFILE_DIR
        out.mkdir(parents=True, exist_ok=True)
        final = out / f"trace-rank{self.rank}-steps{self.first}-{self.done}.json"
        tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
        prof.export_chrome_trace(os.fspath(tmp))
        os.replace(tmp, final)
        self.written = final


__all__ = ["PROFILE_DIR", "StepProfiler", "Wandb", "check_available", "parse_profile_steps"]
