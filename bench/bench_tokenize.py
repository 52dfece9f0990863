"""End-to-end tokenization, side by side in one run: `dataprep tokenize` vs the usual HF
datasets pipeline (load -> map(tokenize, batched, num_proc=2) -> pack to 1024 -> save_to_disk),
with the same 32k tokenizer. Each system runs in a fresh process (peak RSS is its own). Then
dataprep alone on the corpus repeated 4x, to show that its memory does not grow with input size.

    python bench/bench_tokenize.py [--corpus enwiki] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import CORPORA, run_isolated, wiki_docs


def ours(folder: str, tok: str, out: str) -> dict:
    import dataprep

    t0 = time.perf_counter()
    m = dataprep.tokenize(folder, tok, out, seq_len=1024, threads=2)
    return {
        "seconds": time.perf_counter() - t0,
        "tokens": m["splits"]["train"]["tokens"],
        "bytes": m["documents"]["bytes"],
    }


def hf_datasets(folder: str, tok: str, out: str) -> dict:
    os.environ["HF_DATASETS_CACHE"] = str(Path(out).parent / "hf-cache")
    from datasets import Dataset, disable_progress_bars
    from transformers import PreTrainedTokenizerFast

    disable_progress_bars()
    t0 = time.perf_counter()
    ds = Dataset.from_generator(lambda: ({"text": t} for t in wiki_docs(Path(folder))))
    fast = PreTrainedTokenizerFast(tokenizer_file=tok)
    eos = fast.convert_tokens_to_ids("<|endoftext|>")

    def encode(batch: dict) -> dict:
        return {"input_ids": [[*ids, eos] for ids in fast(batch["text"])["input_ids"]]}

    def pack(batch: dict) -> dict:
        flat = [t for ids in batch["input_ids"] for t in ids]
        n = len(flat) // 1024 * 1024
        return {"input_ids": [flat[i : i + 1024] for i in range(0, n, 1024)]}

    ds = ds.map(encode, batched=True, num_proc=2, remove_columns=["text"])
    ds = ds.map(pack, batched=True, num_proc=2)
    ds.save_to_disk(out)
    return {"seconds": time.perf_counter() - t0, "tokens": len(ds) * 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())
    tok = tmp / "tok.json"
    dataprep.train_bpe(folder, 32000, out=tok, special_tokens=["<|endoftext|>"], tiktoken=False)
    results: dict[str, list[dict]] = {"dataprep": [], "HF datasets": []}
    for r in range(a.runs):
        for name, fn in (
            ("dataprep", "bench_tokenize:ours"),
            ("HF datasets", "bench_tokenize:hf_datasets"),
        ):
            out = tmp / f"{name.replace(' ', '-')}-{r}"
            results[name].append(run_isolated(fn, folder=str(folder), tok=str(tok), out=str(out)))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tmp / "hf-cache", ignore_errors=True)
    size = results["dataprep"][0]["bytes"]
    med = {k: statistics.median(x["process_seconds"] for x in v) for k, v in results.items()}
    print(
        f"\n{a.corpus}: {size / 1e6:.1f} MB, seq_len 1024, 2 workers, median of {a.runs} (process wall time)\n"
    )
    print("| system | seconds | MB/s | peak RSS MB | dataprep speedup |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in results.items():
        rss = max(x["peak_rss_mb"] for x in rs)
        print(
            f"| {name} | {med[name]:.2f} | {size / med[name] / 1e6:.1f} | {rss:.0f} | {med[name] / med['dataprep']:.1f}x |"
        )

    # Memory vs input size: the same corpus linked 4 times.
    big = tmp / "x4"
    for k in range(4):
        (big / str(k)).mkdir(parents=True)
        for f in sorted(folder.iterdir()):
            (big / str(k) / f.name).symlink_to(f)
    print("\n| input | seconds | peak RSS MB |")
    print("|---|---:|---:|")
    for label, src in ((f"{size / 1e6:.0f} MB", folder), (f"{4 * size / 1e6:.0f} MB (4x)", big)):
        out = tmp / "scale"
        r = run_isolated("bench_tokenize:ours", folder=str(src), tok=str(tok), out=str(out))
        shutil.rmtree(out)
        print(f"| {label} | {r['process_seconds']:.2f} | {r['peak_rss_mb']:.0f} |")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
