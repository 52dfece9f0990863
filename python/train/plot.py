"""Draw training runs' curves from their `metrics.jsonl` to a PNG, for people without
TensorBoard: `python -m train.plot RUN [RUN ...] --out curves.png`.

Three panels, one colour per run (several runs on one figure compare them): the training loss
(solid) with the val loss (dashed, dots), the learning rate, and the throughput (tokens/s).
A run is its `--out` directory (or the `metrics.jsonl` itself). Needs matplotlib
(`pip install 'dataprep[watch]'`).

>>> import json, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "metrics.jsonl").write_text("\\n".join(json.dumps(
...     {"step": s, "loss": 5 - s / 10, "lr": 1e-3, "tokens_per_s": 1e4}) for s in range(1, 5)))
>>> plot([d], d / "curves.png").read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The lines of a run's `metrics.jsonl` (`run` is its directory or the file). Raises
    ValueError naming the file (and line) when it is missing, not JSON lines, or empty."""
    path = run if run.suffix == ".jsonl" else run / METRICS
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror}): not a training run?") from None
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}:{n}: not a metrics line (an object with a step)")
        rows.append(row)
    if not any("loss" in r for r in rows):
        raise ValueError(f"{path}: no training loss lines yet")
    return rows


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), int | float)]
    return [s for s, _ in points], [v for _, v in points]


def _labels(runs: Sequence[Path]) -> list[str]:
    """Directory names, or whole paths where two runs share a name."""
    names = [(r if r.is_dir() else r.parent).name or str(r) for r in runs]
    return [str(r) if names.count(n) > 1 else n for r, n in zip(runs, names, strict=True)]


def plot(runs: Sequence[Path], out: Path, *, title: str | None = None) -> Path:
    """Draws `runs` (directories or metrics.jsonl files) into the PNG `out` (written under a
    temporary name and renamed); returns `out`."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    data = [(label, read_metrics(Path(r))) for label, r in zip(_labels(runs), runs, strict=True)]
    fig, (ax_loss, ax_lr, ax_tps) = plt.subplots(1, 3, figsize=(16, 4.5))
    for k, (label, rows) in enumerate(data):
        colour = f"C{k % 10}"
        ax_loss.plot(*_series(rows, "loss"), color=colour, label=f"{label} train")
        steps, values = _series(rows, "eval_loss")
        if steps:
            ax_loss.plot(steps, values, "o--", color=colour, label=f"{label} val", markersize=3)
        ax_lr.plot(*_series(rows, "lr"), color=colour, label=label)
        ax_tps.plot(*_series(rows, "tokens_per_s"), color=colour, label=label)
    for ax, what in [(ax_loss, "loss"), (ax_lr, "learning rate"), (ax_tps, "tokens / s")]:
        ax.set_xlabel("optimizer step")
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m train.plot RUN [RUN ...] --out curves.png [--title TEXT]`."""
    parser = argparse.ArgumentParser(
        prog="python -m train.plot",
        description="Draw runs' loss, val loss, learning rate and throughput from their "
        "metrics.jsonl into one PNG.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (--out of each run)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--title", default=None, help="a title over the panels")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        print(f"error: --out {args.out}: the plot is a PNG (name it *.png)", file=sys.stderr)
        return 2
    try:
        out = plot(args.runs, args.out, title=args.title)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
