"""MLM masking throughput: dataprep vs HF `DataCollatorForLanguageModeling`, same batches, one run.

    python bench/bench_mask.py                     # 512 x 512 int64, 20 repeats
    python bench/bench_mask.py --batch 256 --seq-len 128 --repeats 50

Both sides get the same `(B, T)` int64 ids and the precomputed `special_tokens_mask` (HF's fast
path: without it the collator calls `get_special_tokens_mask` row by row in Python) and mask at
0.15 with 80/10/10. HF is timed on `numpy_mask_tokens` (its masking, without list collation);
ours on `dataprep.mask_batch` (copy of the ids, masking, labels). Times are the median of
`--repeats` runs after one warm-up; tokens/s counts every position of the batch, padding included.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

import dataprep

PAD, CLS, SEP, UNK, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, CLS, SEP, UNK, MASK]


def hf_collator(vocab_size: int):
    import tokenizers
    import transformers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])}
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(
            tokenizers.models.WordLevel(vocab, unk_token="[UNK]")
        ),
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        mask_token="[MASK]",
    )
    return transformers.DataCollatorForLanguageModeling(
        tok, mlm_probability=0.15, return_tensors="np", seed=0
    )


def make_batch(b: int, t: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(len(SPECIALS), vocab, size=(b, t), dtype=np.int64)  # (B, T)
    lengths = rng.integers(t // 2, t + 1, size=b)
    ids[:, 0] = CLS
    ids[np.arange(b), lengths - 1] = SEP
    ids[np.arange(t)[None, :] >= lengths[:, None]] = PAD
    ws = (rng.random((b, t)) < 0.6).astype(np.uint8)
    return ids, np.isin(ids, SPECIALS), ws


def timeit(f: Callable[[], object], repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    b, t, v = args.batch, args.seq_len, args.vocab_size
    ids, stm, ws = make_batch(b, t, v)
    n = ids.size
    coll = hf_collator(v)
    index = np.arange(b)

    def ours(strategy: str = "bernoulli", threads: int = 1, word_start=None) -> object:
        return dataprep.mask_batch(
            ids,
            index,
            mask_token_id=MASK,
            vocab_size=v,
            special_tokens_mask=stm,
            word_start=word_start,
            strategy=strategy,
            threads=threads,
        )

    rows = [
        (
            "HF DataCollatorForLanguageModeling.numpy_mask_tokens",
            timeit(
                lambda: coll.numpy_mask_tokens(ids.copy(), special_tokens_mask=stm), args.repeats
            ),
        )
    ]
    rows.append(("dataprep mask_batch bernoulli, 1 thread", timeit(lambda: ours(), args.repeats)))
    if args.threads > 1:
        rows.append(
            (
                f"dataprep mask_batch bernoulli, {args.threads} threads",
                timeit(lambda: ours(threads=args.threads), args.repeats),
            )
        )
    for s in ("fixed", "whole_word", "span"):
        rows.append(
            (
                f"dataprep mask_batch {s}, 1 thread",
                timeit(lambda s=s: ours(s, word_start=ws), args.repeats),
            )
        )
    print(
        f"# batch {b} x {t} int64 ids ({n:,} tokens), vocab {v}, p=0.15, 80/10/10; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"numpy {np.__version__}"
    )
    print(f"| {'masker':58} | {'ms/batch':>9} | {'Mtokens/s':>10} | {'vs HF':>7} |")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 12}|{'-' * 9}|")
    hf = rows[0][1]
    for name, sec in rows:
        print(f"| {name:58} | {sec * 1e3:9.2f} | {n / sec / 1e6:10.1f} | {hf / sec:6.1f}x |")


if __name__ == "__main__":
    main()
