"""The loader's headroom with data mixtures: `train.mixture.make_loader` over two shard sets
(enwiki and kowiki, one tokenizer) against `train.data.make_loader` over one, side by side in one
run, each variant in a fresh process (peak RSS is its own).

    python bench/bench_mixture.py [--work /tmp/bench_mixture] [--tokenizer tok.json] [--runs 3]

Shards (32k byte-level BPE with `<|endoftext|> [PAD] [UNK] [CLS] [SEP] [MASK]` trained on
enwiki/AA unless `--tokenizer` is given; clm seq 1024 and mlm full-sentence seq 512 of enwiki/AA
and of kowiki/AA, 1% val) are cached under `--work` and reused. The headroom divides each
loader's rate by what the trainer consumes: the 2-rank tiny-GPT CPU run of BENCHMARKS.md
(1,903 tokens/s per rank) and a GPU estimate (0.6M tokens/s per GPU, GPT-2-small on an H100).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import CORPORA, REPO, run_isolated

SPECIALS = ["<|endoftext|>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SHARDS = {
    "clm": {"seq_len": 1024},
    "mlm": {"seq_len": 512, "objective": "mlm", "layout": "full-sentence"},
}
CPU_TRAINER_PER_RANK = 1_903  # tokens/s, tiny GPT clm 1024, BENCHMARKS.md (Trainer)
GPU_ESTIMATE = 600_000  # tokens/s per GPU, GPT-2-small on an H100 (estimate, BENCHMARKS.md)


def prepare(work: Path, tokenizer: str | None) -> dict[str, Path]:
    """The shard directories `{clm,mlm}-{en,ko}`, built once and reused."""
    import dataprep

    work.mkdir(parents=True, exist_ok=True)
    tok = Path(tokenizer) if tokenizer else work / "tok.json"
    if not tok.is_file():
        t0 = time.perf_counter()
        dataprep.train_bpe(
            CORPORA / "enwiki" / "AA", 32000, out=tok, special_tokens=SPECIALS, tiktoken=False
        )
        print(f"train_bpe: {time.perf_counter() - t0:.1f} s", flush=True)
    dirs = {}
    for lang, corpus in [("en", "enwiki"), ("ko", "kowiki")]:
        for name, kw in SHARDS.items():
            out = work / f"{name}-{lang}"
            if not (out / "manifest.json").is_file():
                t0 = time.perf_counter()
                dataprep.tokenize(CORPORA / corpus / "AA", tok, out, val_fraction=0.01, **kw)
                print(f"tokenize {out.name}: {time.perf_counter() - t0:.1f} s", flush=True)
            dirs[out.name] = out
    return dirs


def loader(
    shards: list[str],
    weights: list[float],
    micro_batch: int,
    steps: int,
    world_size: int,
    strategy: str | None = None,
) -> dict:
    """Drains `steps` micro-batches of rank 0 (after the first) of one set or a mixture."""
    sys.path.insert(0, str(REPO / "python"))
    from train import data, mixture

    sets = [data.ShardSet(s, "train") for s in shards]
    masking = data.MaskingConfig(strategy=strategy) if strategy else None  # type: ignore[arg-type]
    if len(sets) == 1:
        # Epoch after epoch, as the trainer reads one set.
        it = (
            batch
            for epoch in itertools.count()
            for batch in data.make_loader(
                sets[0],
                rank=0,
                world_size=world_size,
                micro_batch=micro_batch,
                grad_accum=1,
                seed=0,
                epoch=epoch,
                masking=masking,
            )
        )
    else:
        plan = mixture.MixturePlan(
            [s.num_rows for s in sets], weights, world_size=world_size, micro_batch=micro_batch
        )
        it = iter(mixture.make_loader(sets, plan, rank=0, masking=masking))
    t0 = time.perf_counter()
    next(it)
    t1 = time.perf_counter()
    rows = 0
    for _ in range(steps):
        rows += int(next(it)["input_ids"].shape[0])
    return {
        "startup": t1 - t0,
        "seconds": time.perf_counter() - t1,
        "rows": rows,
        "seq_len": sets[0].seq_len,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench_mixture", help="Shard cache.")
    ap.add_argument("--tokenizer", default=None, help="Reuse a tokenizer with the specials.")
    ap.add_argument("--steps", type=int, default=1000, help="Micro-batches timed.")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--world-size", type=int, default=2, help="Ranks of the plan (rank 0 runs).")
    ap.add_argument("--runs", type=int, default=3, help="Interleaved rounds (median).")
    a = ap.parse_args()
    dirs = {k: str(v) for k, v in prepare(Path(a.work), a.tokenizer).items()}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"commit {commit}; {os.cpu_count()} cpus (shared), load average "
        f"{os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    base = {"micro_batch": a.micro_batch, "steps": a.steps, "world_size": a.world_size}
    variants: list[tuple[str, dict]] = []
    for obj, strategy in [("clm", None), ("mlm", "bernoulli")]:
        en, ko = dirs[f"{obj}-en"], dirs[f"{obj}-ko"]
        kw = {**base, "strategy": strategy}
        variants += [
            (f"{obj} enwiki alone", {"shards": [en], "weights": [1.0], **kw}),
            (f"{obj} mixture en:0.7 ko:0.3", {"shards": [en, ko], "weights": [0.7, 0.3], **kw}),
            (f"{obj} mixture en:0.5 ko:0.5", {"shards": [en, ko], "weights": [0.5, 0.5], **kw}),
        ]
    results: dict[str, list[dict]] = {}
    for r in range(a.runs):
        for name, kw in variants:
            res = run_isolated("bench_mixture:loader", **kw)
            results.setdefault(name, []).append(res)
            tps = res["rows"] * res["seq_len"] / res["seconds"]
            print(f"round {r} {name}: {tps:,.0f} tok/s", flush=True)

    def rate(x: dict) -> float:
        return x["rows"] * x["seq_len"] / x["seconds"]

    print(
        f"\n| loader (rank 0 of {a.world_size}, micro-batch {a.micro_batch}, in process) | "
        "tokens/s | vs one set | start-up s | peak RSS MB | headroom over CPU trainer / GPU |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        tps = statistics.median(rate(x) for x in rs)
        alone = results[name.split(" ")[0] + " enwiki alone"]
        ratio = statistics.median(rate(x) / rate(y) for x, y in zip(rs, alone, strict=True))
        print(
            f"| {name} | {tps:,.0f} | {ratio:.2f}x | "
            f"{statistics.median(x['startup'] for x in rs):.2f} | "
            f"{max(x['peak_rss_mb'] for x in rs):.0f} | "
            f"{tps / CPU_TRAINER_PER_RANK:,.0f}x / {tps / GPU_ESTIMATE:,.1f}x |"
        )


if __name__ == "__main__":
    main()
