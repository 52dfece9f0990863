"""Learning-rate schedules: linear warmup, then cosine, linear, constant or warmup-stable-decay.

Every schedule is a pure function of the optimizer step and the run's length (`lr_at`), so a
checkpoint needs no scheduler state and a resumed run continues on exactly the same curve
(tests/test_train_loop.py resumes a run of each schedule and compares lr and weights).

    cosine    warmup, then a half cosine from `--lr` to `--lr x --min-lr-ratio` at the last step
    linear    warmup, then a straight line to the same floor
    constant  warmup, then `--lr` to the end (`--min-lr-ratio` is not used)
    wsd       warmup, `--lr` held ("stable"), then a straight line to the floor over the last
              `--decay-fraction` of the steps (MiniCPM, Hägele et al. 2024: the stable phase can
              be continued and a decay branched off any of its checkpoints with another
              `--max-steps`)

NOTE: the run's length is `total_steps` as the trainer computes it now: resuming with another
`--max-steps` moves the decay (wanted for WSD branches; for cosine the curve bends at once).

>>> from train.config import TrainConfig
>>> cfg = TrainConfig.from_dict({"shards": "s", "lr": 1.0, "warmup_steps": 2, "min_lr_ratio": 0.0,
...                              "lr_schedule": "wsd", "decay_fraction": 0.5})
>>> [lr_at(s, cfg, 8) for s in range(9)]
[0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
"""

from __future__ import annotations

import math

from train.config import ConfigError, TrainConfig


def wsd_decay_start(cfg: TrainConfig, total_steps: int) -> int:
    """First step of WSD's decay: `total_steps` minus `--decay-fraction` of it (at least one
    step of decay).

    >>> from train.config import TrainConfig
    >>> wsd_decay_start(TrainConfig.from_dict({"shards": "s", "decay_fraction": 0.1}), 1000)
    900
    """
    decay = max(1, round(cfg.schedule.decay_fraction * total_steps))
    return max(0, total_steps - decay)


def check(cfg: TrainConfig, total_steps: int) -> None:
    """Raises ConfigError (one line naming the options) for a schedule that cannot be run as
    asked in `total_steps` steps: a WSD warmup that runs into its decay.

    A warmup longer than the run is allowed for the other schedules (a short test run still
    warms up), as before schedules could be chosen.

    >>> from train.config import TrainConfig
    >>> check(TrainConfig.from_dict({"shards": "s", "lr_schedule": "wsd", "warmup_steps": 100}), 100)
    Traceback (most recent call last):
    ...
    train.config.ConfigError: --warmup-steps 100 runs into the wsd decay (--decay-fraction 0.2 of 100 steps starts at step 80): lower one of them
    """
    s = cfg.schedule
    if s.lr_schedule != "wsd":
        return
    start = wsd_decay_start(cfg, total_steps)
    if s.warmup_steps > start:
        raise ConfigError(
            f"--warmup-steps {s.warmup_steps} runs into the wsd decay (--decay-fraction "
            f"{s.decay_fraction} of {total_steps} steps starts at step {start}): lower one of them"
        )


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based) of a run of `total_steps` steps.

    Linear warmup over `--warmup-steps` (step 0 gets lr / warmup, not 0: a wasted step
    otherwise), then the `--lr-schedule` (see the module docstring); the decaying schedules
    reach `--lr x --min-lr-ratio` at `total_steps`.

    >>> from train.config import TrainConfig
    >>> cfg = TrainConfig.from_dict({"shards": "s", "lr": 1.0, "warmup_steps": 10, "min_lr_ratio": 0.1})
    >>> [round(lr_at(s, cfg, 110), 3) for s in (0, 9, 10, 60, 110)]
    [0.1, 1.0, 1.0, 0.55, 0.1]
    """
    s, peak = cfg.schedule, cfg.optim.lr
    if step < s.warmup_steps:
        return peak * (step + 1) / s.warmup_steps
    if s.lr_schedule == "constant":
        return peak
    floor = peak * s.min_lr_ratio
    if s.lr_schedule == "wsd":
        start = wsd_decay_start(cfg, total_steps)
        if step < start:
            return peak
        progress = min(1.0, (step - start) / max(1, total_steps - start))
        return peak - progress * (peak - floor)
    progress = min(1.0, (step - s.warmup_steps) / max(1, total_steps - s.warmup_steps))
    if s.lr_schedule == "linear":
        return peak - progress * (peak - floor)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


__all__ = ["check", "lr_at", "wsd_decay_start"]
