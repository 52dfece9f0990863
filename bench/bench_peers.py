"""Encoders side by side (issue 13): dataprep vs tiktoken, fastokens, GigaToken and HF `tokenizers`,
every one loading the same vocabulary, in one run.

Vocabularies: byte-level BPE trained by dataprep with the cl100k and the o200k split pattern on
English + Korean wiki files of ../shared/corpora (cached under --work, so reruns skip training).
dataprep, fastokens, GigaToken and HF load its `tokenizer.json`; tiktoken its `.tiktoken` export.

- Throughput: English wiki, Korean wiki (files not trained on), Chinese prose (People's Daily) and
  Python source (this interpreter's stdlib), a few MB each, batch-encoded as document lists on 1
  and 2 threads. Each (library, threads) runs in a fresh process with its thread pools sized by
  environment (RAYON_NUM_THREADS, FASTOKENS_BPE_THREADS) and by argument; ids of every document are
  compared with tiktoken's in an untimed first pass (which also warms caches), then the median of
  --runs timed passes is reported.
- Pathological single pieces: one document of "a", of spaces, of Han characters without spaces
  and of seeded random printable ASCII, at 16 KiB and at 1 MiB, 1 thread; a process that has
  not finished the 1 MiB encode after --timeout seconds is stopped and reported as "> N s".
- Memory: resident memory of each library's loaded vocabulary after encoding 1 MB of English
  (VmRSS after the encode minus right after the import, as bench/bench_vocab_memory.py does).

    python bench/bench_peers.py [--vocab-size 100000] [--runs 3] [--mb 5] [--work /tmp/bench-peers]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import CORPORA

LIBS = ["tiktoken", "dataprep", "fastokens", "gigatoken", "HF tokenizers"]
PEERS = [lib for lib in LIBS if lib != "dataprep"]
PATTERNS = ["cl100k", "o200k"]
TEXTS = ["English wiki", "Korean wiki", "Chinese prose", "Python source"]
CASES = ['"a"', "spaces", "Han, no spaces", "random ASCII"]
SIZES = {"16 KB": 16 * 1024, "1 MB": 1024 * 1024}
BENCH = Path(__file__).resolve().parent

# The API timed for each library: its batch call that hands back ids without building per-token
# Python objects where the library has one.
API = {
    "tiktoken": "encode_ordinary_batch(num_threads=N)",
    "dataprep": "encode_batch(threads=N)",
    "fastokens": "encode_batch_flat, FASTOKENS_BPE_THREADS=N",
    "gigatoken": "encode_batch(parallel=N>1), RAYON_NUM_THREADS=N",
    "HF tokenizers": "encode_batch_fast, RAYON_NUM_THREADS=N",
}


# ---------------------------------------------------------------------------------------------
# Child side: everything below up to the parent section runs in a fresh process.


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _import(lib: str) -> None:
    if lib == "tiktoken":
        import tiktoken  # noqa: F401
    elif lib == "dataprep":
        import dataprep  # noqa: F401
    elif lib == "fastokens":
        import fastokens  # noqa: F401
    elif lib == "gigatoken":
        import awkward  # noqa: F401
        import gigatoken  # noqa: F401
    else:
        import tokenizers  # noqa: F401


def _encoder(lib: str, tok_json: str, threads: int) -> Any:
    """A function from a list of texts to a list of per-document id arrays (uint32 bytes-able)."""
    import numpy as np

    if lib == "tiktoken":
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        ranks = str(Path(tok_json).with_suffix(".tiktoken"))
        meta = json.loads(Path(ranks + ".json").read_text())
        enc = tiktoken.Encoding(
            "bench",
            pat_str=meta["pat_str"],
            mergeable_ranks=load_tiktoken_bpe(ranks),
            special_tokens={},
        )
        return lambda ts: enc.encode_ordinary_batch(ts, num_threads=threads)
    if lib == "dataprep":
        import dataprep

        tok = dataprep.Tokenizer.from_file(tok_json)
        return lambda ts: tok.encode_batch(ts, threads=threads)
    if lib == "fastokens":
        import fastokens

        ft = fastokens.Tokenizer.from_file(tok_json)

        def flat(ts: list[str]) -> list[Any]:
            ids, offsets = ft.encode_batch_flat(ts)
            a = np.frombuffer(ids, np.uint32)
            o = np.frombuffer(offsets, np.uint64)
            return [a[o[i] : o[i + 1]] for i in range(len(ts))]

        return flat
    if lib == "gigatoken":
        import awkward as ak
        import gigatoken

        try:
            gt = gigatoken.Tokenizer(tok_json)
        except RuntimeError as e:
            # Its tokenizer.json loader knows a fixed set of split regexes and refuses dataprep's
            # portable cl100k one; the same ranks through its .tiktoken loader, naming the scheme.
            if "Unknown pre_tokenizer Split regex" not in str(e):
                raise
            pattern = Path(tok_json).parent.name.split("-")[0]
            ranks = str(Path(tok_json).with_suffix(".tiktoken"))
            gt = gigatoken.Tokenizer.from_tiktoken(ranks, pretokenizer=pattern)
            print(f"NOTE gigatoken: {pattern} loaded with from_tiktoken(pretokenizer={pattern!r})")

        def giga(ts: list[str]) -> list[Any]:
            arr = gt.encode_batch(ts, parallel=threads > 1)
            flat_ids = ak.to_numpy(ak.flatten(arr))
            ends = np.cumsum(ak.to_numpy(ak.num(arr)))
            return np.split(flat_ids, ends[:-1])

        return giga
    import tokenizers

    hf = tokenizers.Tokenizer.from_file(tok_json)
    return lambda ts: [e.ids for e in hf.encode_batch_fast(ts, add_special_tokens=False)]


def _digest(ids: Any) -> str:
    import numpy as np

    return hashlib.blake2b(np.asarray(ids, dtype=np.uint32).tobytes(), digest_size=8).hexdigest()


def throughput_child(lib: str, tok_json: str, texts_json: str, threads: int, runs: int) -> dict:
    """Per text: the digest of each document's ids (untimed first pass), the wall and CPU
    seconds of each timed pass."""
    texts: dict[str, list[str]] = json.loads(Path(texts_json).read_text())
    _import(lib)
    encode = _encoder(lib, tok_json, threads)
    out: dict[str, Any] = {}
    for name, docs in texts.items():
        out[name] = {"digests": [_digest(x) for x in encode(docs)], "wall": [], "cpu": []}
    for _ in range(runs):
        for name, docs in texts.items():
            c0, t0 = time.process_time(), time.perf_counter()
            res = encode(docs)
            t1, c1 = time.perf_counter(), time.process_time()
            del res
            out[name]["wall"].append(t1 - t0)
            out[name]["cpu"].append(c1 - c0)
    return out


def piece_text(case: str, size: int, han: list[str]) -> str:
    """One document of `size` UTF-8 bytes (at most) of a pathological case."""
    if case == '"a"':
        return "a" * size
    if case == "spaces":
        return " " * size
    if case == "Han, no spaces":
        return "".join(han[i % len(han)] for i in range(size // 3))
    rng = random.Random(13)
    return "".join(chr(rng.randrange(32, 127)) for _ in range(size))


def _common_han() -> list[str]:
    """The 300 most frequent Han characters of the People's Daily corpus (ties by code point)."""
    counts: Counter[str] = Counter()
    with open(CORPORA / "zh" / "people-daily-199801.jsonl", encoding="utf-8") as f:
        for line in f:
            counts.update(c for c in json.loads(line)["text"] if "\u4e00" <= c <= "\u9fff")
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:300]]


def piece_child(lib: str, tok_json: str, pieces_json: str, case: str, min_seconds: float) -> None:
    """Prints one JSON line per size (16 KB first, then 1 MB) as soon as it is measured, so the
    parent can stop the process on a slow 1 MB encode and still keep the 16 KB figure."""
    texts: dict[str, str] = json.loads(Path(pieces_json).read_text())[case]
    _import(lib)
    encode = _encoder(lib, tok_json, 1)
    print(json.dumps({"loaded": True}), flush=True)
    for label, text in texts.items():
        nbytes = len(text.encode())
        times: list[float] = []
        digest = ""
        while not times or (sum(times) < min_seconds and len(times) < 50):
            t0 = time.perf_counter()
            res = encode([text])
            times.append(time.perf_counter() - t0)
            digest = _digest(res[0])
            del res
        print(
            json.dumps({"size": label, "bytes": nbytes, "seconds": min(times), "digest": digest}),
            flush=True,
        )


def memory_child(lib: str, tok_json: str, text_path: str) -> dict:
    docs: list[str] = json.loads(Path(text_path).read_text())
    _import(lib)
    base = _rss_kib()
    encode = _encoder(lib, tok_json, 1)
    n = sum(len(x) for x in encode(docs))
    return {"kib": _rss_kib() - base, "tokens": n}


# ---------------------------------------------------------------------------------------------
# Parent side.


def child_env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "RAYON_NUM_THREADS": str(threads),
        "FASTOKENS_BPE_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "true",
    }


def child_cmd(func: str, **kwargs: object) -> list[str]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); import bench_peers as m; "
        f"r = m.{func}(**json.loads(sys.argv[1])); "
        "r is None or print('RESULT' + json.dumps(r))"
    )
    return [sys.executable, "-c", code, json.dumps(kwargs)]


NOTES: set[str] = set()


def error_line(stderr: str) -> str:
    """The exception line of a child's traceback (the last line is not always it)."""
    lines = stderr.strip().splitlines() or ["(no output)"]
    errs = [x for x in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", x)]
    return (errs[-1] if errs else lines[-1])[:200]


def run_child(func: str, pool: int, **kwargs: object) -> dict:
    p = subprocess.run(
        child_cmd(func, **kwargs), env=child_env(pool), capture_output=True, text=True
    )
    NOTES.update(x[5:] for x in p.stdout.splitlines() if x.startswith("NOTE "))
    if p.returncode != 0:
        return {"error": error_line(p.stderr)}
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def run_piece(
    lib: str, tok_json: str, pieces_json: str, case: str, timeout: float, min_seconds: float
) -> dict:
    """{size label: result line}; a size the process did not finish within `timeout` seconds
    of starting it (after loading) is {"timeout": True}."""
    proc = subprocess.Popen(
        child_cmd(
            "piece_child",
            lib=lib,
            tok_json=tok_json,
            pieces_json=pieces_json,
            case=case,
            min_seconds=min_seconds,
        ),
        env=child_env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: dict[str, Any] = {}
    loaded = False
    while True:
        try:
            line = lines.get(timeout=timeout if loaded else 600)
        except queue.Empty:
            proc.kill()
            proc.wait()
            for label in SIZES:
                out.setdefault(label, {"timeout": True})
            return out
        if line is None:
            break
        if line.startswith("NOTE "):
            NOTES.add(line[5:].strip())
            continue
        r = json.loads(line)
        if r.get("loaded"):
            loaded = True
        else:
            out[r["size"]] = r
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.wait() != 0:
        for label in SIZES:
            out.setdefault(label, {"error": error_line(err)})
    return out


def train(work: Path, pattern: str, vocab_size: int, en_files: int, ko_files: int) -> Path:
    import dataprep

    out = work / f"{pattern}-{vocab_size}-en{en_files}-ko{ko_files}" / "tokenizer.json"
    if out.exists() and out.with_suffix(".tiktoken").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = sorted((CORPORA / "enwiki" / "AA").iterdir())[:en_files]
    inputs += sorted((CORPORA / "kowiki" / "AA").iterdir())[:ko_files]
    t0 = time.perf_counter()
    _, stats = dataprep.train_bpe(inputs, vocab_size, pattern=pattern, out=out, tiktoken=True)
    log(
        f"trained {pattern} {vocab_size:,} on {len(inputs)} files "
        f"({stats['bytes'] / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s -> {out}"
    )
    return out


def take(docs: list[str], mb: float) -> list[str]:
    """The first documents of `docs` up to `mb` MB of UTF-8."""
    out, n = [], 0
    for d in docs:
        if n >= mb * 1e6:
            break
        out.append(d)
        n += len(d.encode())
    return out


def build_texts(work: Path, mb: float, en_files: int, ko_files: int) -> Path:
    path = work / f"texts-{mb:g}mb-en{en_files}-ko{ko_files}.json"
    if path.exists():
        return path
    import dataprep

    def wiki(corpus: str, skip: int) -> list[str]:
        # files after the ones trained on, enough of them for `mb` MB
        files = sorted((CORPORA / corpus / "AA").iterdir())[skip:]
        docs, _ = dataprep.read_documents(files[: int(mb) + 2])
        return [d["text"] for d in docs]

    zh = CORPORA / "zh" / "people-daily-199801.jsonl"
    with open(zh, encoding="utf-8") as f:
        chinese = [json.loads(line)["text"] for line in f]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    py = []
    for p in sorted(stdlib.rglob("*.py")):
        if "site-packages" in p.parts:
            continue
        try:
            py.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    texts = {
        "English wiki": take(wiki("enwiki", en_files), mb),
        "Korean wiki": take(wiki("kowiki", ko_files), mb),
        "Chinese prose": take(chinese, mb),
        "Python source": take(py, mb),
    }
    path.write_text(json.dumps(texts, ensure_ascii=False))
    return path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab-size", type=int, default=100000)
    ap.add_argument("--memory-vocab-sizes", default="100000,200000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=float, default=5.0, help="MB of each text")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per 1 MB piece")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-peers"))
    ap.add_argument("--en-files", type=int, default=20, help="enwiki files trained on")
    ap.add_argument("--ko-files", type=int, default=5, help="kowiki files trained on")
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--skip", default="", help="comma list of: throughput,pieces,memory")
    a = ap.parse_args()
    for opt in ("vocab_size", "runs", "en_files", "ko_files"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1")
    if not (0 < a.mb <= 50):
        ap.error("--mb must be in (0, 50]")
    if a.timeout <= 0:
        ap.error("--timeout must be positive")
    try:
        threads = [int(x) for x in a.threads.split(",")]
        mem_sizes = [int(x) for x in a.memory_vocab_sizes.split(",") if x]
    except ValueError:
        ap.error("--threads and --memory-vocab-sizes take comma-separated integers")
    if any(t < 1 for t in threads) or any(v < 1 for v in mem_sizes):
        ap.error("--threads and --memory-vocab-sizes must be at least 1")
    libs = a.libs.split(",")
    if "tiktoken" not in libs or any(x not in LIBS for x in libs):
        ap.error(f"--libs: names from {LIBS}, tiktoken included (the ids reference)")
    skip = set(filter(None, a.skip.split(",")))
    if skip - {"throughput", "pieces", "memory"}:
        ap.error("--skip takes throughput, pieces, memory")
    a.work.mkdir(parents=True, exist_ok=True)

    toks = {p: train(a.work, p, a.vocab_size, a.en_files, a.ko_files) for p in PATTERNS}
    texts_path = build_texts(a.work, a.mb, a.en_files, a.ko_files)
    texts = json.loads(texts_path.read_text())
    sizes = {k: sum(len(d.encode()) for d in v) for k, v in texts.items()}
    print(
        f"\nVocabularies: {a.vocab_size:,} ids, trained by dataprep on the first {a.en_files} "
        f"enwiki and {a.ko_files} kowiki files of {CORPORA}."
    )
    print(
        "Texts: "
        + "; ".join(f"{k}: {len(texts[k]):,} docs, {sizes[k] / 1e6:.1f} MB" for k in TEXTS)
    )

    if "throughput" not in skip:
        throughput(a, libs, threads, toks, texts_path, texts, sizes)
    if "pieces" not in skip:
        pieces(a, libs, toks)
    if "memory" not in skip:
        memory(a, libs, mem_sizes)
    if NOTES:
        print("\nLoaders: " + "; ".join(sorted(NOTES)))
    print("Timed calls: " + "; ".join(f"{k}: `{API[k]}`" for k in libs))


def throughput(
    a: argparse.Namespace,
    libs: list[str],
    threads: list[int],
    toks: dict[str, Path],
    texts_path: Path,
    texts: dict[str, list[str]],
    sizes: dict[str, int],
) -> None:
    res: dict[tuple[str, str, int], dict] = {}
    for pat in PATTERNS:
        for n in threads:
            for lib in libs:
                t0 = time.perf_counter()
                res[pat, lib, n] = run_child(
                    "throughput_child",
                    n,
                    lib=lib,
                    tok_json=str(toks[pat]),
                    texts_json=str(texts_path),
                    threads=n,
                    runs=a.runs,
                )
                log(f"{pat} {lib} {n} threads: {time.perf_counter() - t0:.0f} s")

    def same(pat: str, lib: str, text: str) -> tuple[int, int] | None:
        """(differing documents, documents) against tiktoken on the first thread count."""
        r, ref = res[pat, lib, threads[0]], res[pat, "tiktoken", threads[0]]
        if "error" in r or "error" in ref:
            return None
        d, e = r[text]["digests"], ref[text]["digests"]
        return sum(x != y for x, y in zip(d, e, strict=True)), len(e)

    def mbps(pat: str, lib: str, n: int, text: str) -> float | None:
        r = res[pat, lib, n]
        return None if "error" in r else sizes[text] / statistics.median(r[text]["wall"]) / 1e6

    print("\n### Ids compared with tiktoken's, document by document\n")
    others = [x for x in libs if x != "tiktoken"]
    print("| vocabulary | text | documents | " + " | ".join(others) + " |")
    print("|---|---|---:|" + "---|" * len(others))
    for pat in PATTERNS:
        for text in TEXTS:
            cells = []
            for lib in others:
                s = same(pat, lib, text)
                if s is None:
                    err = res[pat, lib, threads[0]].get("error", "tiktoken failed")
                    cells.append(f"failed: {err}")
                else:
                    cells.append("equal" if s[0] == 0 else f"**{s[0]} differ**")
            print(f"| {pat} | {text} | {len(texts[text]):,} | " + " | ".join(cells) + " |")

    print(f"\n### MB/s, median of {a.runs} passes\n")
    print(
        "`*` ids differ from tiktoken's on some document (timed anyway). Ratio: dataprep over the "
        "fastest peer with ids equal to tiktoken's on every document.\n"
    )
    print("| vocabulary | text | threads | " + " | ".join(libs) + " | dataprep / fastest peer |")
    print("|---|---|---:|" + "---:|" * (len(libs) + 1))
    for pat in PATTERNS:
        for text in TEXTS:
            for n in threads:
                cells, best = [], (0.0, "")
                for lib in libs:
                    v = mbps(pat, lib, n, text)
                    s = same(pat, lib, text) if lib != "tiktoken" else (0, 0)
                    ok = s is not None and s[0] == 0
                    cells.append("failed" if v is None else fmt(v) + ("" if ok else "*"))
                    if v is not None and ok and lib != "dataprep" and v > best[0]:
                        best = (v, lib)
                ours = mbps(pat, "dataprep", n, text) if "dataprep" in libs else None
                ratio = f"{ours / best[0]:.2f}x ({best[1]})" if ours and best[0] else "-"
                print(f"| {pat} | {text} | {n} | " + " | ".join(cells) + f" | {ratio} |")

    if len(threads) > 1:
        lo, hi = threads[0], threads[-1]
        print(f"\n### {hi} threads over {lo} thread (MB/s ratio)\n")
        print("| vocabulary | text | " + " | ".join(libs) + " |")
        print("|---|---|" + "---:|" * len(libs))
        for pat in PATTERNS:
            for text in TEXTS:
                cells = []
                for lib in libs:
                    x, y = mbps(pat, lib, lo, text), mbps(pat, lib, hi, text)
                    cells.append(f"{y / x:.2f}x" if x and y else "-")
                print(f"| {pat} | {text} | " + " | ".join(cells) + " |")

    print("\n### Threads actually busy: CPU seconds per wall second (median over texts)\n")
    print("| vocabulary | threads | " + " | ".join(libs) + " |")
    print("|---|---:|" + "---:|" * len(libs))
    for pat in PATTERNS:
        for n in threads:
            cells = []
            for lib in libs:
                r = res[pat, lib, n]
                if "error" in r:
                    cells.append("-")
                    continue
                ratios = [
                    statistics.median(r[t]["cpu"]) / statistics.median(r[t]["wall"]) for t in TEXTS
                ]
                cells.append(f"{statistics.median(ratios):.2f}")
            print(f"| {pat} | {n} | " + " | ".join(cells) + " |")


def pieces(a: argparse.Namespace, libs: list[str], toks: dict[str, Path]) -> None:
    pieces_json = a.work / "pieces.json"
    if not pieces_json.exists():
        han = _common_han()
        pieces_json.write_text(
            json.dumps(
                {c: {k: piece_text(c, n, han) for k, n in SIZES.items()} for c in CASES},
                ensure_ascii=False,
            )
        )
    res: dict[tuple[str, str, str], dict] = {}
    for pat in PATTERNS:
        for case in CASES:
            for lib in libs:
                t0 = time.perf_counter()
                res[pat, case, lib] = run_piece(
                    lib, str(toks[pat]), str(pieces_json), case, a.timeout, 1.0
                )
                log(f"{pat} {case} {lib}: {time.perf_counter() - t0:.0f} s")

    failures: set[str] = set()

    def cell(r: dict, ref: dict, where: str) -> str:
        if r.get("timeout"):
            return f"> {a.timeout:g} s"
        if "error" in r:
            failures.add(f"{where}: {r['error']}")
            return "failed"
        v = fmt(r["bytes"] / r["seconds"] / 1e6)
        if ref.get("digest") and r["digest"] != ref["digest"]:
            v += "*"
        return v

    print("\n### Pathological single pieces: MB/s, 1 thread\n")
    print(
        f"One document per case. `> {a.timeout:g} s`: the 1 MB encode was stopped after "
        f"{a.timeout:g} s. `*`: ids differ from tiktoken's. Ratio: MB/s at 1 MB over MB/s at "
        "16 KB (1.0: linear; target for dataprep >= 0.8).\n"
    )
    print("| vocabulary | case | size | " + " | ".join(libs) + " |")
    print("|---|---|---|" + "---:|" * len(libs))
    for pat in PATTERNS:
        for case in CASES:
            for label in [*SIZES, "ratio"]:
                cells = []
                for lib in libs:
                    r = res[pat, case, lib]
                    if label != "ratio":
                        cells.append(
                            cell(
                                r.get(label, {}),
                                res[pat, case, "tiktoken"].get(label, {}),
                                f"{lib}, {pat}, {case}, {label}",
                            )
                        )
                        continue
                    small, big = r.get("16 KB", {}), r.get("1 MB", {})
                    if "seconds" in small and "seconds" in big:
                        q = (big["bytes"] / big["seconds"]) / (small["bytes"] / small["seconds"])
                        cells.append(f"{q:.2f}")
                    else:
                        cells.append("-")
                print(f"| {pat} | {case} | {label} | " + " | ".join(cells) + " |")
    for f in sorted(failures):
        print(f"\nfailed: {f}")


def memory(a: argparse.Namespace, libs: list[str], vocab_sizes: list[int]) -> None:
    text_path = a.work / "memory-1mb.json"
    if not text_path.exists():
        english = json.loads(build_texts(a.work, a.mb, a.en_files, a.ko_files).read_text())
        text_path.write_text(json.dumps(take(english["English wiki"], 1.0)))
    print("\n### Memory: MB resident over the bare import, vocabulary loaded and 1 MB encoded\n")
    print("| vocabulary | ids trained of asked | " + " | ".join(libs) + " |")
    print("|---|---:|" + "---:|" * len(libs))
    for pat in PATTERNS:
        for v in vocab_sizes:
            tok = train(a.work, pat, v, a.en_files, a.ko_files)
            cells = []
            for lib in libs:
                r = run_child(
                    "memory_child", 1, lib=lib, tok_json=str(tok), text_path=str(text_path)
                )
                cells.append("failed" if "error" in r else f"{r['kib'] / 1024:.0f}")
            ids = len(json.loads(tok.read_text())["model"]["vocab"])  # the corpus may give fewer
            print(f"| {pat} | {ids:,} of {v:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
