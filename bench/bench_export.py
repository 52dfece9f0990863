"""`dataprep export`: throughput and peak memory per format, and raw text -> Megatron `.bin`/`.idx`
side by side with Megatron-LM's own `tools/preprocess_data.py`.

1. Per format: `export` of causal shards of `../shared/corpora/enwiki/AA` (tokenizer and shards
   made first when not given: `train-bpe --vocab-size 32000`, `tokenize --seq-len 1024`), each run
   in a fresh process (its peak RSS is its own). MB/s counts the tokens' bytes (uint16) per second
   of the whole command, shard verification (SHA-256 of every shard) included; verification alone
   is timed once as well.
2. Raw text -> `.bin`/`.idx`: dataprep (`tokenize --val-fraction 0` then `export --format
   megatron`) against `preprocess_data.py --tokenizer-type HuggingFaceTokenizer` on the same
   documents (a JSONL of what dataprep reads; writing it is not timed) with the same tokenizer
   (our `export-tokenizer` directory, loaded with `--tokenizer-hf-use-fast`: without it Megatron
   asks transformers for a slow tokenizer), `--append-eod`, `--workers 2`. Runs when `--megatron-lm`
   names a Megatron-LM checkout whose `tools/preprocess_data.py` imports (see BENCHMARKS.md for
   the setup); the two outputs are compared byte for byte.

    python bench/bench_export.py [--runs 3] [--shards DIR --tokenizer FILE]
                                 [--megatron-lm DIR [--side-runs 1]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPORA, REPO, run_isolated

FORMATS = ("megatron", "mds", "bin", "parquet")


def export_one(shards: str, out: str, fmt: str) -> dict:
    from dataprep.export import export

    t0 = time.perf_counter()
    summary = export(shards, out, fmt)
    return {
        "seconds": time.perf_counter() - t0,
        "tokens": sum(s["tokens"] for s in summary["splits"].values()),
        "documents": sum(s["documents"] for s in summary["splits"].values()),
        "bytes": sum(f["bytes"] for s in summary["splits"].values() for f in s["files"]),
    }


def verify_only(shards: str) -> dict:
    import dataprep

    t0 = time.perf_counter()
    assert dataprep.Manifest.read(shards).verify() == []
    return {"seconds": time.perf_counter() - t0}


def tokenize_one(corpus: str, tok: str, out: str) -> dict:
    import dataprep

    t0 = time.perf_counter()
    m = dataprep.tokenize(corpus, tok, out, seq_len=1024, val_fraction=0.0, threads=2)
    return {"seconds": time.perf_counter() - t0, "bytes": m["documents"]["bytes"]}


def timed_command(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of a command, from wait4's
    rusage of the child: it counts the processes the child waited for (a worker pool's), and
    its `ru_maxrss` is the largest of them. On a shared machine CPU seconds are the steadier
    figure: wall time stretches with everyone else's load."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:4]} failed: {err.read().decode()[-2000:]}")
    return secs, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def prepare(work: Path, corpus: Path) -> tuple[Path, Path]:
    tok, shards = work / "tok.json", work / "shards"
    if not tok.exists():
        import dataprep

        dataprep.train_bpe(corpus, 32000, out=tok, special_tokens=["<|endoftext|>"])
    if not shards.exists():
        import dataprep

        dataprep.tokenize(corpus, tok, shards, seq_len=1024, val_fraction=0.01)
    return tok, shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", default=str(CORPORA / "enwiki" / "AA"))
    ap.add_argument("--shards", help="causal shards of --corpus [default: made in --work]")
    ap.add_argument("--tokenizer", help="their tokenizer.json [default: trained in --work]")
    ap.add_argument("--work", default=str(REPO / "bench" / "out" / "export"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--megatron-lm", help="a Megatron-LM checkout (tools/preprocess_data.py)")
    ap.add_argument("--side-runs", type=int, default=1, help="rounds of the side by side")
    ap.add_argument(
        "--megatron-arg",
        action="append",
        default=[],
        help="an extra preprocess_data.py flag (repeatable), e.g. --tokenizer-hf-include-special-tokens",
    )
    args = ap.parse_args()
    if args.runs < 1 or args.side_runs < 1:
        ap.error("--runs and --side-runs must be >= 1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.shards and args.tokenizer:
        tok, shards = Path(args.tokenizer), Path(args.shards)
    else:
        tok, shards = prepare(work, Path(args.corpus))
    tmp = Path(tempfile.mkdtemp(dir=work))
    try:
        v = run_isolated("bench_export:verify_only", shards=str(shards))
        print(f"verify alone: {v['seconds']:.2f} s, peak RSS {v['peak_rss_mb']:.0f} MB")
        print(
            "| format | seconds (median) | MB/s of tokens | documents | tokens | output MB | peak RSS MB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for fmt in FORMATS:
            runs = []
            for r in range(args.runs):
                out = tmp / f"{fmt}-{r}"
                runs.append(
                    run_isolated(
                        "bench_export:export_one", shards=str(shards), out=str(out), fmt=fmt
                    )
                )
                shutil.rmtree(out)
            secs = statistics.median(x["seconds"] for x in runs)
            last = runs[-1]
            print(
                f"| {fmt} | {secs:.2f} | {last['tokens'] * 2 / secs / 1e6:.0f} | "
                f"{last['documents']:,} | {last['tokens']:,} | {last['bytes'] / 1e6:.1f} | "
                f"{max(x['peak_rss_mb'] for x in runs):.0f} |",
                flush=True,
            )
        if args.megatron_lm:
            side_by_side(
                Path(args.megatron_lm),
                Path(args.corpus),
                tok,
                tmp,
                args.side_runs,
                args.megatron_arg,
            )
        else:
            print("Megatron-LM side by side: skipped (no --megatron-lm)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def side_by_side(
    mlm: Path, corpus: Path, tok: Path, tmp: Path, runs: int, extra: list[str]
) -> None:
    import dataprep
    from dataprep.hf_tokenizer import write_transformers_dir

    hf_dir = tmp / "hf-tokenizer"
    write_transformers_dir(tok, hf_dir)
    jsonl = tmp / "corpus.jsonl"
    docs, _ = dataprep.read_documents([str(corpus)])
    with open(jsonl, "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d["text"]}) + "\n")
    del docs
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(mlm), os.environ.get("PYTHONPATH", "")]),
    }
    cli = [sys.executable, "-m", "dataprep.cli"]
    print("\n| raw text -> .bin/.idx | wall s (median) | CPU s (median) | MB/s of text (wall) | peak RSS MB (largest process) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    text_mb = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file()) / 1e6
    rows: dict[str, list[tuple[float, float, float]]] = {"dataprep": [], "megatron": []}
    for r in range(runs):
        shards, out = tmp / f"s{r}", tmp / f"m{r}"
        t1 = timed_command([*cli, "tokenize", str(corpus), "--tokenizer", str(tok), "--out", str(shards), "--seq-len", "1024", "--val-fraction", "0", "--threads", "2"], env)  # fmt: skip
        t2 = timed_command([*cli, "export", str(shards), "--format", "megatron", "--out", str(out)], env)  # fmt: skip
        rows["dataprep"].append((t1[0] + t2[0], t1[1] + t2[1], max(t1[2], t2[2])))
        prefix = tmp / f"mlm{r}"
        t3 = timed_command(
            [sys.executable, "-W", "ignore", str(mlm / "tools" / "preprocess_data.py"),
             "--input", str(jsonl), "--output-prefix", str(prefix),
             "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(hf_dir),
             "--tokenizer-hf-use-fast", "--append-eod", "--workers", "2", *extra],
            env,
        )  # fmt: skip
        rows["megatron"].append(t3)
        same = all(
            (out / f"train.{ext}").read_bytes()
            == Path(f"{prefix}_text_document.{ext}").read_bytes()
            for ext in ("bin", "idx")
        )
        print(f"round {r}: dataprep {t1[0]:.1f} + {t2[0]:.1f} s wall ({t1[1] + t2[1]:.1f} s CPU), Megatron-LM {t3[0]:.1f} s wall ({t3[1]:.1f} s CPU), identical .bin/.idx: {same}", flush=True)  # fmt: skip
        shutil.rmtree(shards)
        shutil.rmtree(out)
    names = {"dataprep": "dataprep tokenize + export", "megatron": "Megatron-LM preprocess_data.py"}
    for key, name in names.items():
        wall = statistics.median(x[0] for x in rows[key])
        cpu = statistics.median(x[1] for x in rows[key])
        peak = max(x[2] for x in rows[key])
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {text_mb / wall:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
