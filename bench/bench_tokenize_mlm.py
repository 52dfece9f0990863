"""`dataprep tokenize --objective mlm` vs `--objective clm` on the same corpus and tokenizer,
side by side in one run: causal packing, MLM full-sentence rows, MLM NSP pairs (and NSP with
static masking, dupe factor 1). Runs are interleaved (clm, mlm, mlm, ... per round) because the
machine is shared; each run is a fresh process so its peak RSS is its own. Goal: mlm/clm <= 1.5.

    python bench/bench_tokenize_mlm.py [--corpus enwiki] [--runs 3] [--seq-len 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import CORPORA, run_isolated

SPECIALS = ["<|endoftext|>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VARIANTS = {
    "clm": {"objective": "clm"},
    "mlm full-sentence": {"objective": "mlm", "layout": "full-sentence"},
    "mlm nsp": {"objective": "mlm", "layout": "nsp"},
    "mlm nsp + static masking": {"objective": "mlm", "layout": "nsp", "static_masking": True},
}


def one(folder: str, tok: str, out: str, seq_len: int, threads: int, kw: dict) -> dict:
    import dataprep

    t0 = time.perf_counter()
    m = dataprep.tokenize(folder, tok, out, seq_len=seq_len, threads=threads, **kw)
    return {
        "seconds": time.perf_counter() - t0,
        "tokens": m["splits"]["train"]["tokens"],
        "rows": m["splits"]["train"]["rows"],
        "bytes": m["documents"]["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokenizer", default=None, help="Reuse a tokenizer with the specials.")
    a = ap.parse_args()
    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())
    tok = Path(a.tokenizer) if a.tokenizer else tmp / "tok.json"
    if not a.tokenizer:
        dataprep.train_bpe(folder, 32000, out=tok, special_tokens=SPECIALS, tiktoken=False)
    results: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    for r in range(a.runs):
        for name, kw in VARIANTS.items():
            out = tmp / f"out-{r}"
            res = run_isolated(
                "bench_tokenize_mlm:one",
                folder=str(folder),
                tok=str(tok),
                out=str(out),
                seq_len=a.seq_len,
                threads=a.threads,
                kw=kw,
            )
            results[name].append(res)
            shutil.rmtree(out, ignore_errors=True)
            print(f"round {r} {name}: {res['process_seconds']:.2f} s", flush=True)
    size = results["clm"][0]["bytes"]
    med = {k: statistics.median(x["process_seconds"] for x in v) for k, v in results.items()}
    # Per round ratios, so a noisy round does not count twice.
    print(
        f"\n{a.corpus}/AA: {size / 1e6:.1f} MB, seq_len {a.seq_len}, {a.threads} encoder threads, "
        f"median of {a.runs} interleaved rounds (process wall time)\n"
    )
    print("| objective | seconds | MB/s | rows | peak RSS MB | ratio to clm (median of rounds) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        ratios = [
            x["process_seconds"] / c["process_seconds"]
            for x, c in zip(rs, results["clm"], strict=True)
        ]
        print(
            f"| {name} | {med[name]:.2f} | {size / med[name] / 1e6:.1f} | {rs[0]['rows']:,} | "
            f"{max(x['peak_rss_mb'] for x in rs):.0f} | {statistics.median(ratios):.2f}x |"
        )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
