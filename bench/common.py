"""Helpers shared by the benchmarks: reading WikiExtractor documents in Python (for the anchors,
which have no reader of their own) and running each system in a fresh process so that its
peak RSS is its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
DOC = re.compile(r"<doc [^>]*>\n(.*?)\n</doc>", re.S)


def wiki_docs(folder: Path) -> Iterator[str]:
    """Documents of a WikiExtractor folder, in the order dataprep reads them."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            for m in DOC.finditer(p.read_text(encoding="utf-8", errors="replace")):
                text = m.group(1).strip("\n")
                if text.strip():
                    yield text


def training_docs(folder: Path, every: int = 100) -> Iterator[str]:
    """Streams the documents dataprep trains on: all but its held-back ones (below)."""
    return (t for i, t in enumerate(wiki_docs(folder)) if i % every != every - 1)


def heldout_docs(folder: Path, every: int = 100) -> list[str]:
    """dataprep's hold-out rule: every `every`-th document (index % every == every - 1)."""
    return [t for i, t in enumerate(wiki_docs(folder)) if i % every == every - 1]


def run_isolated(fn: str, **kwargs: object) -> dict:
    """Runs `bench.<module>:<fn>(**kwargs)` in a child process; returns its JSON result plus
    the child's peak RSS in MB."""
    module, func = fn.split(":")
    code = (
        f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import {module} as m; "
        f"print('RESULT' + json.dumps(m.{func}(**json.loads(sys.argv[1]))))"
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(kwargs)],
            stdout=out,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "true"},
        )
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{fn} failed with exit code {proc.returncode}")
        out.seek(0)
        line = next(x for x in out.read().splitlines() if x.startswith("RESULT"))
    res = json.loads(line[len("RESULT") :])
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    res["process_seconds"] = time.perf_counter() - t0
    return res
