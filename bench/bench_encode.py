"""Encoder throughput, side by side in one run: dataprep vs tiktoken vs HF tokenizers, all three
built from the same 32k vocabulary (trained by dataprep on the corpus, GPT-2 pattern), on every
article of the corpus, batch-encoded on 1 and on 2 threads. Ids are checked to be identical.

    python bench/bench_encode.py [--corpus enwiki] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import CORPORA, wiki_docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    import tokenizers

    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())
    tok_path = tmp / "tok.json"
    dataprep.train_bpe(folder, a.vocab_size, out=tok_path, special_tokens=["<|endoftext|>"])
    ours = dataprep.Tokenizer.from_file(str(tok_path))
    tik = dataprep.tiktoken_encoding(dataprep.tiktoken_paths(tok_path)[0])
    hf = tokenizers.Tokenizer.from_file(str(tok_path))
    texts = list(wiki_docs(folder))
    mb = sum(len(t.encode()) for t in texts) / 1e6

    a_ids = [list(x) for x in ours.encode_batch(texts, threads=2)]
    same_tik = a_ids == tik.encode_ordinary_batch(texts, num_threads=2)
    same_hf = a_ids == [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]

    systems = {
        "dataprep": lambda n: ours.encode_batch(texts, threads=n),
        "tiktoken": lambda n: tik.encode_ordinary_batch(texts, num_threads=n),
        "HF tokenizers": lambda n: hf.encode_batch(texts, add_special_tokens=False),
    }
    print(
        f"\n{a.corpus}: {len(texts)} articles, {mb:.1f} MB, vocab {a.vocab_size}, median of {a.runs}"
    )
    print(f"ids identical to tiktoken: {same_tik}; to HF: {same_hf}\n")
    print("| system | threads | MB/s | dataprep speedup |")
    print("|---|---:|---:|---:|")
    for n in (1, 2):
        os.environ["RAYON_NUM_THREADS"] = str(n)  # HF tokenizers' pool size (read at first use)
        times: dict[str, list[float]] = {k: [] for k in systems}
        for _ in range(a.runs):
            for name, fn in systems.items():
                t0 = time.perf_counter()
                fn(n)
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name in systems:
            if name == "HF tokenizers" and n == 1:
                continue  # its thread pool is fixed once started; only the 2-thread figure is fair
            print(f"| {name} | {n} | {mb / med[name]:.1f} | {med[name] / med['dataprep']:.1f}x |")


if __name__ == "__main__":
    main()
