"""The trainer's loader reading shards from an S3-compatible server against reading them from
local disk, for one shard set and for a mixture of two, side by side in one run, each variant in a
fresh process.

    python bench/bench_remote_shards.py [--work /tmp/bench_remote_shards] [--runs 3]

Shards: clm seq 1024 of enwiki/AA and of kowiki/AA (1% val, 4 MB shards) with a 16k byte-level
BPE trained by dataprep on enwiki/AA/wiki_00..09, built once under `--work` and reused. The
server is `rclone serve s3` on localhost (tests/s3server.py; the `cloud` extra installs rclone),
started here, with both sets uploaded by `storage.upload_set`. Every variant takes the trainer's
own options, `--shards` (repeated with `:WEIGHT` for a mixture) and `--shard-cache`, parsed by
`train.config.parse` and opened as `Trainer.__init__` opens them; then rank 0 of a 2-rank plan,
micro-batch 16, in process, from `train.data.make_loader` (one set) or
`train.mixture.make_loader` (a mixture):

    local          the shard directories on local disk (`--shards DIR`)
    s3 cold        `--shards s3://... --shard-cache DIR` with an empty cache: every shard
                   downloaded and verified, the background fetch racing the loader (the first
                   micro-batch waits for the shards it needs; the timed ones for any not
                   fetched yet)
    s3 warm        the same cache again in a new process: each shard hashed once, nothing fetched

each for enwiki alone and for the mixture `--shards en:0.7 --shards ko:0.3`.

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


def prepare(work: Path) -> dict[str, Path]:
    """The clm shard directories `{en: clm, ko: clm-ko}`, built once and reused."""
    import dataprep

    work.mkdir(parents=True, exist_ok=True)
    tok = work / "tok.json"
    if not tok.is_file():
        files = sorted((CORPORA / "enwiki" / "AA").iterdir())[:10]
        dataprep.train_bpe(files, 16000, out=tok, special_tokens=SPECIALS, tiktoken=False)
    dirs = {}
    for lang, corpus, name in [("en", "enwiki", "clm"), ("ko", "kowiki", "clm-ko")]:
        out = work / name
        if not (out / "manifest.json").is_file():
            # 4 MB shards: a dozen per set, so that the order of downloads matters.
            dataprep.tokenize(
                CORPORA / corpus / "AA", tok, out, seq_len=1024, val_fraction=0.01,
                shard_size="4MB",
            )  # fmt: skip
        dirs[lang] = out
    return dirs


def loader(
    shards: list[str], cache: str | None, micro_batch: int, steps: int, world_size: int
) -> dict:
    """Opens the sets from the trainer's options (`--shards` as given, `--shard-cache`), drains
    `steps` micro-batches of rank 0 after the first; for remote sets also the time until every
    shard is in the cache."""
    sys.path.insert(0, str(REPO / "python"))
    from dataprep import storage
    from train import config, data, mixture

    t0 = time.perf_counter()
    argv = [x for s in shards for x in ("--shards", s)]
    cfg = config.parse(argv + (["--shard-cache", cache] if cache else []))
    # As Trainer.__init__ opens them: a remote set through the cache, a local one in place.
    specs = mixture.parse_specs(cfg.data.shards)
    sets = [
        data.ShardSet(
            spec.path, "train", cache=cfg.data.shard_cache if storage.is_remote(spec.path) else None
        )
        for spec in specs
    ]
    mixture.check_sets(sets)
    if len(sets) == 1:
        it = (
            batch
            for epoch in itertools.count()
            for batch in data.make_loader(
                sets[0], rank=0, world_size=world_size, micro_batch=micro_batch, grad_accum=1,
                seed=0, epoch=epoch,
            )
        )  # fmt: skip
    else:
        plan = mixture.MixturePlan(
            [s.num_rows for s in sets],
            [spec.weight for spec in specs],
            world_size=world_size,
            micro_batch=micro_batch,
        )
        it = iter(mixture.make_loader(sets, plan, rank=0))
    next(it)
    t1 = time.perf_counter()
    rows = 0
    source = [0] * len(sets)
    for _ in range(steps):
        batch = next(it)
        rows += int(batch["input_ids"].shape[0])
        if mixture.SOURCE in batch:
            for i, n in enumerate(batch[mixture.SOURCE].bincount(minlength=len(sets)).tolist()):
                source[i] += n
    t2 = time.perf_counter()
    remote = [s.remote for s in sets if s.remote is not None]
    for r in remote:
        r.join()
    return {
        "startup": t1 - t0,
        "seconds": t2 - t1,
        "all_cached": time.perf_counter() - t0 if remote else None,
        "rows": rows,
        "seq_len": sets[0].seq_len,
        "bytes": sum(i.bytes for s in sets for i in s.info.shards),
        "shards": sum(len(s.files) for s in sets),
        "source": source,
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
    dirs = prepare(work)
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "python"))
    from s3server import S3Server

    from dataprep import storage

    shutil.rmtree(work / "s3", ignore_errors=True)
    server = S3Server.start(work / "s3")
    try:
        os.environ.update(server.env)  # the children inherit it
        urls, uploads = {}, []
        for lang, local in dirs.items():
            urls[lang] = server.bucket("bench") + "/" + local.name
            t0 = time.perf_counter()
            objects, nbytes = storage.upload_set(local, urls[lang])
            up = time.perf_counter() - t0
            uploads.append(
                f"{lang}: {objects} objects, {nbytes / 1e6:.1f} MB in {up:.1f} s "
                f"({nbytes / 1e6 / up:.0f} MB/s)"
            )
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        print(
            f"commit {commit}; {os.cpu_count()} cpus (shared), load average "
            f"{os.getloadavg()[0]:.1f} at start; upload_set {'; '.join(uploads)}",
            flush=True,
        )
        base = {"micro_batch": a.micro_batch, "steps": a.steps, "world_size": a.world_size}
        one_cache, mix_cache = str(work / "cache"), str(work / "cache-mix")
        local_mix = [f"{dirs['en']}:0.7", f"{dirs['ko']}:0.3"]
        s3_mix = [f"{urls['en']}:0.7", f"{urls['ko']}:0.3"]
        variants: list[tuple[str, dict]] = [
            ("enwiki, local", {"shards": [str(dirs["en"])], "cache": None}),
            ("enwiki, s3 cold", {"shards": [urls["en"]], "cache": one_cache}),
            ("enwiki, s3 warm", {"shards": [urls["en"]], "cache": one_cache}),
            ("mixture en:0.7 ko:0.3, local", {"shards": local_mix, "cache": None}),
            ("mixture en:0.7 ko:0.3, s3 cold", {"shards": s3_mix, "cache": mix_cache}),
            ("mixture en:0.7 ko:0.3, s3 warm", {"shards": s3_mix, "cache": mix_cache}),
        ]
        results: dict[str, list[dict]] = {}
        for r in range(a.runs):
            for cache in (one_cache, mix_cache):  # the cold variants start from nothing
                shutil.rmtree(cache, ignore_errors=True)
            for name, kw in variants:
                res = run_isolated("bench_remote_shards:loader", **kw, **base)
                results.setdefault(name, []).append(res)
                tps = res["rows"] * res["seq_len"] / res["seconds"]
                print(f"round {r} {name}: {tps:,.0f} tok/s, start-up {res['startup']:.2f} s, "
                      f"all shards cached after {res['all_cached']} s", flush=True)  # fmt: skip
    finally:
        server.stop()

    def rate(x: dict) -> float:
        return x["rows"] * x["seq_len"] / x["seconds"]

    for name in ("enwiki, local", "mixture en:0.7 ko:0.3, local"):
        first = results[name][0]
        print(f"\n{name}: {first['shards']} train shards, {first['bytes'] / 1e6:.1f} MB", end="")
    print(
        f"\n\n| loader (rank 0 of {a.world_size}, micro-batch {a.micro_batch}, in process) | "
        "rows/s | tokens/s | enwiki rows | start-up s | all shards local s | peak RSS MB | "
        "headroom over CPU trainer / GPU estimate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        tps = statistics.median(rate(x) for x in rs)
        src = rs[0]["source"]
        share = f"{src[0] / sum(src):.3f}" if sum(src) else "1.000"
        print(
            f"| {name} | {tps / rs[0]['seq_len']:,.0f} | {tps:,.0f} | {share} | "
            f"{statistics.median(x['startup'] for x in rs):.2f} | "
            f"{_median([x['all_cached'] for x in rs])} | "
            f"{max(x['peak_rss_mb'] for x in rs):.0f} | "
            f"{tps / CPU_TRAINER_PER_RANK:,.0f}x / {tps / GPU_ESTIMATE:,.1f}x |"
        )


def _median(xs: list[float | None]) -> str:
    return "-" if None in xs else f"{statistics.median(x for x in xs if x is not None):.2f}"


if __name__ == "__main__":
    main()
