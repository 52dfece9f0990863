"""Memory of a loaded tokenizer with a 200k vocabulary, side by side: dataprep (own engine, and the
hf engine on the same vocabulary with a split regex only it runs), HF `tokenizers` and tiktoken.
Each is loaded in a fresh process that then encodes 1 MB of enwiki; the figure is that process's
resident memory (VmRSS) after the encode minus its resident memory right after the import.

    python bench/bench_vocab_memory.py [--vocab-size 200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CORPORA, wiki_docs

CHILD = r"""
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
kind, path, text_path = sys.argv[1:4]
text = open(text_path, encoding="utf-8").read()
if kind.startswith("dataprep"):
    import dataprep
elif kind == "tokenizers":
    import tokenizers
else:
    import dataprep, tiktoken
base = rss()
if kind.startswith("dataprep"):
    tok = dataprep.Tokenizer.from_file(path)
    # "-documents": special-token text as text, what `dataprep tokenize` does with documents.
    n = len(tok.encode(text, split_special_tokens=kind.endswith("-documents")))
    engine = tok.engine
elif kind == "tokenizers":
    tok = tokenizers.Tokenizer.from_file(path)
    n = len(tok.encode(text, add_special_tokens=False).ids)
    engine = "-"
else:
    enc = dataprep.tiktoken_encoding(path)
    n = len(enc.encode_ordinary(text))
    engine = "-"
print(json.dumps({"kib": rss() - base, "tokens": n, "engine": engine}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab-size", type=int, default=200000)
    ap.add_argument("--corpus", default="enwiki")
    a = ap.parse_args()
    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())
    tok_path = tmp / "tok.json"
    dataprep.train_bpe(folder, a.vocab_size, out=tok_path, special_tokens=["<|endoftext|>"])
    # The same vocabulary with a split regex the own engine does not take (Llama-3's): hf engine.
    doc = json.loads(tok_path.read_text())
    llama3 = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    doc["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": llama3},
                "behavior": "Isolated",
                "invert": False,
            },
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": False,
            },
        ],
    }
    hf_path = tmp / "tok-hf-engine.json"
    hf_path.write_text(json.dumps(doc))
    text = "\n\n".join(wiki_docs(folder))[:1_000_000]
    text_path = tmp / "text.txt"
    text_path.write_text(text, encoding="utf-8")
    ranks = dataprep.tiktoken_paths(tok_path)[0]
    runs = [
        ("dataprep", tok_path),
        ("dataprep-hf-engine", hf_path),
        ("dataprep-hf-engine-documents", hf_path),
        ("tokenizers", tok_path),
        ("tiktoken", ranks),
    ]
    print(f"vocabulary {a.vocab_size:,} ids (trained on {a.corpus}); 1 MB encoded after loading")
    print("| library | engine | MB resident over the bare import |")
    print("|---|---|---:|")
    for kind, path in runs:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(path), str(text_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {kind} | {r['engine']} | {r['kib'] / 1024:.0f} |")


if __name__ == "__main__":
    main()
