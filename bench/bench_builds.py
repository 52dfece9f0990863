"""Two builds of dataprep side by side in one run: encode throughput and end-to-end tokenize time
of a reference build (another checkout's `python/` with its compiled `_core`) against this one,
with tiktoken as the anchor in every round. Use it to show that a refactor did not slow anything.

    python bench/bench_builds.py --baseline /path/to/other/checkout/python [--rounds 5]

Each measurement runs in a fresh process with `PYTHONPATH` set to the build's `python/` folder;
rounds alternate the builds so that machine noise hits both alike. Both builds encode with the
same `tokenizer.json` (32k, GPT-2 pattern, trained once by this build) and tokenize the same
corpus (`../shared/corpora/enwiki/AA`, seq_len 1024, 2 threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CORPORA, REPO

ENCODE = """
import json, sys, time
sys.path.insert(0, {bench!r})
from common import wiki_docs
import dataprep, tiktoken
from pathlib import Path
texts = list(wiki_docs(Path({folder!r})))
mb = sum(len(t.encode()) for t in texts) / 1e6
tok = dataprep.Tokenizer.from_file({tok!r})
tik = dataprep.tiktoken_encoding({ranks!r})
out = {{}}
for n in (1, 2):
    t0 = time.perf_counter(); tok.encode_batch(texts, threads=n); out[f"dataprep_{{n}}"] = mb / (time.perf_counter() - t0)
    t0 = time.perf_counter(); tik.encode_ordinary_batch(texts, num_threads=n); out[f"tiktoken_{{n}}"] = mb / (time.perf_counter() - t0)
print("RESULT" + json.dumps(out))
"""

TOKENIZE = """
import json, shutil, sys, time
import dataprep
t0 = time.perf_counter()
m = dataprep.tokenize({folder!r}, {tok!r}, {out!r}, seq_len=1024, threads=2)
secs = time.perf_counter() - t0
shutil.rmtree({out!r})
print("RESULT" + json.dumps({{"seconds": secs, "mb": m["documents"]["bytes"] / 1e6}}))
"""


def run(code: str, pythonpath: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    result: dict[str, float] = json.loads(line[len("RESULT") :])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="the other build's python/ folder")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", default="enwiki")
    a = ap.parse_args()
    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp())
    tok = tmp / "tok.json"
    dataprep.train_bpe(folder, 32000, out=tok, special_tokens=["<|endoftext|>"])
    builds = {"baseline": a.baseline, "this": str(REPO / "python")}
    enc: dict[str, list[dict[str, float]]] = {k: [] for k in builds}
    tkz: dict[str, list[float]] = {k: [] for k in builds}
    mb = 0.0
    for r in range(a.rounds):
        order = list(builds) if r % 2 == 0 else list(reversed(builds))
        for name in order:
            fmt = {"bench": str(REPO / "bench"), "folder": str(folder), "tok": str(tok)}
            enc[name].append(
                run(ENCODE.format(ranks=str(tmp / "tok.tiktoken"), **fmt), builds[name])
            )
            res = run(TOKENIZE.format(out=str(tmp / f"out-{name}"), **fmt), builds[name])
            tkz[name].append(res["seconds"])
            mb = res["mb"]
    print(f"\n{a.corpus}/AA, {mb:.1f} MB, median of {a.rounds} alternating rounds\n")
    print("| measure | baseline | this build | this / baseline |")
    print("|---|---:|---:|---:|")
    for key in ("dataprep_1", "dataprep_2", "tiktoken_1", "tiktoken_2"):
        b = statistics.median(x[key] for x in enc["baseline"])
        t = statistics.median(x[key] for x in enc["this"])
        print(
            f"| encode MB/s, {key.replace('_', ', ')} thread(s) | {b:.1f} | {t:.1f} | {t / b:.2f} |"
        )
    for key in ("dataprep_1", "dataprep_2"):
        b = statistics.median(
            x[key] / x[key.replace("dataprep", "tiktoken")] for x in enc["baseline"]
        )
        t = statistics.median(x[key] / x[key.replace("dataprep", "tiktoken")] for x in enc["this"])
        print(f"| encode vs tiktoken, {key[-1]} thread(s) | {b:.2f}x | {t:.2f}x | {t / b:.2f} |")
    b, t = statistics.median(tkz["baseline"]), statistics.median(tkz["this"])
    print(f"| tokenize end to end, s | {b:.2f} | {t:.2f} | {t / b:.2f} |")


if __name__ == "__main__":
    main()
