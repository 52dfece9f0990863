"""The trainer's loader reading shards from an S3-compatible server against reading them from
local disk, side by side in one run, each variant in a fresh process.

    python bench/bench_remote_shards.py [--work /tmp/bench_remote_shards] [--runs 3]

Shards: clm seq 1024 of enwiki/AA (1% val, 4 MB shards) with a 16k byte-level BPE trained by dataprep on
enwiki/AA/wiki_00..09, built once under `--work` and reused. The server is `rclone serve s3` on
localhost (tests/s3server.py; the `cloud` extra installs rclone), started here, with the shards
uploaded by `storage.upload_set`. Variants, `train.data.make_loader`, rank 0 of a 2-rank plan,
micro-batch 16, in process:

    local       the shard directory on local disk (the trainer's `--shards DIR`)
    s3 cold     `--shards s3://...` with an empty cache: every shard downloaded and verified,
                the background fetch racing the loader (the first micro-batch waits for the
                shards it needs; the timed ones for any not fetched yet)
    s3 warm     the same cache again in a new process: each shard hashed once, nothing fetched

The headroom divides by what the trainer consumes: the 2-rank tiny-GPT CPU run of BENCHMARKS.md
(1,903 tokens/s per rank) and the GPU estimate (0.6M tokens/s per GPU, GPT-2-small on an H100).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import CORPORA, REPO, run_isolated

SPECIALS = ["<|endoftext|>", "[PAD]"]
CPU_TRAINER_PER_RANK = 1_903  # tokens/s, tiny GPT clm 1024, BENCHMARKS.md (Trainer)
GPU_ESTIMATE = 600_000  # tokens/s per GPU, GPT-2-small on an H100 (estimate, BENCHMARKS.md)


def prepare(work: Path) -> Path:
    """The clm shard directory, built once and reused."""
    import dataprep

    work.mkdir(parents=True, exist_ok=True)
    tok = work / "tok.json"
    if not tok.is_file():
        files = sorted((CORPORA / "enwiki" / "AA").iterdir())[:10]
        dataprep.train_bpe(files, 16000, out=tok, special_tokens=SPECIALS, tiktoken=False)
    out = work / "clm"
    if not (out / "manifest.json").is_file():
        # 4 MB shards: a dozen, so that the order of downloads matters.
        dataprep.tokenize(
            CORPORA / "enwiki" / "AA", tok, out, seq_len=1024, val_fraction=0.01, shard_size="4MB"
        )
    return out


def loader(shards: str, cache: str | None, micro_batch: int, steps: int, world_size: int) -> dict:
    """Opens the set, drains `steps` micro-batches of rank 0 after the first; for a remote set
    also the time until every shard is in the cache."""
    sys.path.insert(0, str(REPO / "python"))
    from train import data

    t0 = time.perf_counter()
    s = data.ShardSet(shards, "train", cache=cache)
    it = (
        batch
        for epoch in itertools.count()
        for batch in data.make_loader(
            s, rank=0, world_size=world_size, micro_batch=micro_batch, grad_accum=1, seed=0,
            epoch=epoch,
        )
    )  # fmt: skip
    next(it)
    t1 = time.perf_counter()
    rows = 0
    for _ in range(steps):
        rows += int(next(it)["input_ids"].shape[0])
    t2 = time.perf_counter()
    if s.remote is not None:
        s.remote.join()
    return {
        "startup": t1 - t0,
        "seconds": t2 - t1,
        "all_cached": time.perf_counter() - t0 if s.remote is not None else None,
        "rows": rows,
        "seq_len": s.seq_len,
        "bytes": sum(i.bytes for i in s.info.shards),
        "shards": len(s.files),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/bench_remote_shards", help="Shards and server data.")
    ap.add_argument("--steps", type=int, default=1000, help="Micro-batches timed.")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--world-size", type=int, default=2, help="Ranks of the plan (rank 0 runs).")
    ap.add_argument("--runs", type=int, default=3, help="Interleaved rounds (median).")
    a = ap.parse_args()
    work = Path(a.work)
    local = prepare(work)
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "python"))
    from s3server import S3Server

    from dataprep import storage

    shutil.rmtree(work / "s3", ignore_errors=True)
    server = S3Server.start(work / "s3")
    try:
        os.environ.update(server.env)  # the children inherit it
        url = server.bucket("bench") + "/clm"
        t0 = time.perf_counter()
        objects, nbytes = storage.upload_set(local, url)
        up = time.perf_counter() - t0
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        print(
            f"commit {commit}; {os.cpu_count()} cpus (shared), load average "
            f"{os.getloadavg()[0]:.1f} at start; upload_set {objects} objects, "
            f"{nbytes / 1e6:.1f} MB in {up:.1f} s ({nbytes / 1e6 / up:.0f} MB/s)",
            flush=True,
        )
        base = {"micro_batch": a.micro_batch, "steps": a.steps, "world_size": a.world_size}
        cache = work / "cache"
        results: dict[str, list[dict]] = {}
        for r in range(a.runs):
            shutil.rmtree(cache, ignore_errors=True)
            for name, kw in [
                ("local", {"shards": str(local), "cache": None}),
                ("s3 cold", {"shards": url, "cache": str(cache)}),
                ("s3 warm", {"shards": url, "cache": str(cache)}),
            ]:
                res = run_isolated("bench_remote_shards:loader", **kw, **base)
                results.setdefault(name, []).append(res)
                tps = res["rows"] * res["seq_len"] / res["seconds"]
                print(f"round {r} {name}: {tps:,.0f} tok/s, start-up {res['startup']:.2f} s, "
                      f"all shards cached after {res['all_cached']} s", flush=True)  # fmt: skip
    finally:
        server.stop()

    def rate(x: dict) -> float:
        return x["rows"] * x["seq_len"] / x["seconds"]

    first = results["local"][0]
    print(
        f"\n{first['shards']} train shards, {first['bytes'] / 1e6:.1f} MB\n\n"
        f"| loader (rank 0 of {a.world_size}, micro-batch {a.micro_batch}, in process) | "
        "rows/s | tokens/s | start-up s | all shards local s | peak RSS MB | "
        "headroom over CPU trainer / GPU estimate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        tps = statistics.median(rate(x) for x in rs)
        print(
            f"| {name} | {tps / rs[0]['seq_len']:,.0f} | {tps:,.0f} | "
            f"{statistics.median(x['startup'] for x in rs):.2f} | "
            f"{_median([x['all_cached'] for x in rs])} | "
            f"{max(x['peak_rss_mb'] for x in rs):.0f} | "
            f"{tps / CPU_TRAINER_PER_RANK:,.0f}x / {tps / GPU_ESTIMATE:,.1f}x |"
        )


def _median(xs: list[float | None]) -> str:
    return "-" if None in xs else f"{statistics.median(x for x in xs if x is not None):.2f}"


if __name__ == "__main__":
    main()
