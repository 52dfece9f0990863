"""Encoding with the tokenizers people continue from, side by side in one run: dataprep (which
engine runs each file is printed) vs HF `tokenizers` on the same `tokenizer.json`, 1 thread and 2,
on the articles of a corpus. Ids are checked to be identical on every document.

Layouts (vocabularies trained here by the `tokenizers` library on the corpus): BERT WordPiece,
T5 Unigram, Llama-2 SentencePiece BPE (byte fallback), Llama-3- and Qwen2-pattern byte-level BPEs
(Qwen2's with its NFC normalizer) and a cl100k-pattern byte-level BPE.

    python bench/bench_models.py [--corpus enwiki] [--files 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from common import CORPORA, wiki_docs

CL100K = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+\z"
    r"|\s*[\r\n]|\s+(?!\S)|\s"
)
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}", 1)


def build(kind: str, texts: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    if kind == "bert-wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tr = trainers.WordPieceTrainer(
            vocab_size=30000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        )
        tok.train_from_iterator(texts, tr)
        tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    elif kind == "t5-unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tr = trainers.UnigramTrainer(
            vocab_size=32000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
        )
        tok.train_from_iterator(texts, tr)
    elif kind == "llama2-spbpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        )
        specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
        tok.train_from_iterator(
            texts, trainers.BpeTrainer(vocab_size=32000, special_tokens=specials)
        )
    else:  # byte-level BPE with a split regex
        pattern = {"llama3-bytelevel": LLAMA3, "qwen2-bytelevel": QWEN2}.get(kind, CL100K)
        tok = Tokenizer(models.BPE())
        if kind == "qwen2-bytelevel":
            tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        tr = trainers.BpeTrainer(
            vocab_size=32000,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, tr)
    return tok


def best(f, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--files", type=int, default=10, help="corpus files to encode (~1 MB each)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument(
        "--kinds",
        default="bert-wordpiece,t5-unigram,llama2-spbpe,llama3-bytelevel,qwen2-bytelevel,cl100k-bytelevel",
    )
    a = ap.parse_args()
    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())

    def first(n: int) -> list[str]:
        d = tmp / f"first{n}"
        d.mkdir()
        for f in sorted(folder.iterdir())[:n]:
            (d / f.name).symlink_to(f)
        return list(wiki_docs(d))

    texts = first(a.files)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    train_texts = first(5)
    print(f"{len(texts)} documents, {mb:.1f} MB of {a.corpus}; best of {a.runs} runs; MB/s")
    print("| tokenizer | engine | threads | HF tokenizers | dataprep | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for kind in a.kinds.split(","):
        hf = build(kind, train_texts)
        path = tmp / f"{kind}.json"
        hf.save(str(path))
        ours = dataprep.Tokenizer.from_file(str(path))
        want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
        got = [x.tolist() for x in ours.encode_batch(texts, threads=2)]
        assert got == want, f"{kind}: ids differ from HF"
        for threads in (1, 2):
            # HF's batch encoder runs on its rayon pool; its size is fixed at first use, so it is
            # measured with single-text calls on 1 thread.
            if threads == 1:
                t_hf = best(lambda: [hf.encode(t, add_special_tokens=False) for t in texts], a.runs)  # noqa: B023
            else:
                t_hf = best(lambda: hf.encode_batch(texts, add_special_tokens=False), a.runs)  # noqa: B023
            t_dp = best(lambda: ours.encode_batch(texts, threads=threads), a.runs)  # noqa: B023
            print(
                f"| {kind} | {ours.engine} | {threads} | {mb / t_hf:.1f} | {mb / t_dp:.1f} "
                f"| {t_hf / t_dp:.2f}x |"
            )


if __name__ == "__main__":
    main()
