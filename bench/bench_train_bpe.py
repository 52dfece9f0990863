"""BPE training, side by side in one run: dataprep vs HF tokenizers vs rustbpe.

Each system trains a byte-level BPE (GPT-2 split pattern, min frequency 2 where supported) on
the same documents, in its own fresh process (peak RSS is per process, Python included), then
encodes the same held-back documents (every 100th, never trained on) to measure compression.
The anchors get their text from a Python WikiExtractor parser; that reading is timed as part of
their training, as dataprep's own reading is part of its.

    python bench/bench_train_bpe.py [--corpus enwiki|kowiki] [--vocab-size 32000] [--runs 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import CORPORA, heldout_docs, run_isolated, training_docs

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def bytes_per_token(held: list[str], encode) -> float:  # type: ignore[no-untyped-def]
    return sum(len(t.encode()) for t in held) / sum(len(encode(t)) for t in held)


def ours(folder: str, vocab_size: int, threads: int) -> dict:
    import dataprep

    t0 = time.perf_counter()
    tok, stats = dataprep.train_bpe(folder, vocab_size, threads=threads, holdout_every=100)
    secs = time.perf_counter() - t0
    held = heldout_docs(Path(folder))
    return {
        "seconds": secs,
        "read_count_seconds": stats["read_count_seconds"],
        "merge_seconds": stats["merge_seconds"],
        "bytes": stats["bytes"],
        "bpt": bytes_per_token(held, tok.encode),
        "vocab": tok.vocab_size,
    }


def hf(folder: str, vocab_size: int, threads: int) -> dict:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_docs(Path(folder)), trainer=trainer)
    secs = time.perf_counter() - t0
    held = heldout_docs(Path(folder))
    return {
        "seconds": secs,
        "bpt": bytes_per_token(held, lambda t: tok.encode(t).ids),
        "vocab": tok.get_vocab_size(),
    }


def rustbpe_(folder: str, vocab_size: int, threads: int) -> dict:
    import rustbpe

    t0 = time.perf_counter()
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(training_docs(Path(folder)), vocab_size, pattern=GPT2)
    secs = time.perf_counter() - t0
    held = heldout_docs(Path(folder))
    return {"seconds": secs, "bpt": bytes_per_token(held, tok.encode), "vocab": vocab_size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    folder = str(CORPORA / a.corpus / "AA")
    systems = {
        "dataprep": "bench_train_bpe:ours",
        "HF tokenizers": "bench_train_bpe:hf",
        "rustbpe": "bench_train_bpe:rustbpe_",
    }
    results: dict[str, list[dict]] = {k: [] for k in systems}
    for _ in range(a.runs):  # interleaved, so that machine noise hits every system alike
        for name, fn in systems.items():
            results[name].append(
                run_isolated(fn, folder=folder, vocab_size=a.vocab_size, threads=a.threads)
            )
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    size = results["dataprep"][0]["bytes"]
    print(
        f"\n{a.corpus}: {size / 1e6:.1f} MB, vocab {a.vocab_size}, {a.threads} threads, median of {a.runs}\n"
    )
    print("| system | train s | MB/s | peak RSS MB | bytes/token (held out) | dataprep speedup |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        rss = max(r["peak_rss_mb"] for r in rs)
        bpt = rs[0]["bpt"]
        print(
            f"| {name} | {med[name]:.2f} | {size / med[name] / 1e6:.1f} | {rss:.0f} | {bpt:.4f} | "
            f"{med[name] / med['dataprep']:.1f}x |"
        )
    d = results["dataprep"][0]
    gap = (d["bpt"] / results["HF tokenizers"][0]["bpt"] - 1) * 100
    print(
        f"\ndataprep phases: read+split+count {d['read_count_seconds']:.2f} s, merge {d['merge_seconds']:.2f} s"
    )
    print(f"compression vs HF: {gap:+.2f}% bytes/token")


if __name__ == "__main__":
    main()
