"""`dataprep tokenize --engine ray` against the local engine, side by side in one run, on the same
machine: causal LM, seq_len 1024, a 32k tokenizer trained on the corpus. The Ray clusters are
simulated on this machine (`ray.cluster_utils.Cluster`: a head without CPUs, the driver's
cluster service only, plus worker nodes): 1 node of 2 CPUs, then 2 and 3 nodes of 1 CPU. Each
run is the CLI in a fresh process, timed from start to exit (Python start, connecting to the
cluster, the units, assemble); every output's shards and manifest are compared byte for byte with
the local engine's. Every run is a new Ray job, and Ray starts a job's worker processes when its
first tasks arrive, so each run pays for that (about 1.2 s here) even on a cluster that stays up.

    python bench/bench_ray.py [--corpus enwiki] [--unit-mb 16] [--scale 1 4]

`--datatrove N` runs the issue's comparison instead: datatrove's `RayPipelineExecutor`
(`JsonlReader` -> `DocumentTokenizer`, one task per file, no shuffling) and
`dataprep tokenize --engine ray` on the same cluster (2 worker nodes of 1 CPU), the same
tokenizer and the same input: the first N files of the corpus written as JSONL (one document
a line, the documents dataprep reads from the WikiExtractor files), one unit or task per file.
Each system's driver is a fresh process, timed from start to exit; the two alternate for
`--rounds` rounds. It needs a Python with datatrove (its Ray extra) and this repository's
`dataprep`: its worker processes are started with the same interpreter.

    python bench/bench_ray.py --datatrove 20 [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPORA, REPO, wiki_docs

OBJECT_STORE = 200 * 1024 * 1024
SEQ = ["--seq-len", "1024"]


def digest(out: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.suffix == ".arrow" or p.name == "manifest.json"
    }


def cli(args: list[str]) -> tuple[float, str]:
    """Runs `dataprep ARGS`; returns its wall time and stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "dataprep.cli", *args], capture_output=True, text=True, env=env
    )
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"dataprep {' '.join(args)} failed:\n{r.stderr}")
    return secs, r.stderr


def stage_seconds(stderr: str, stage: str) -> float:
    """The seconds of a stage from the CLI's line `STAGE: ... in X s ...`."""
    line = next(x for x in stderr.splitlines() if x.startswith(f"{stage}: "))
    return float(line.split(" in ")[1].split(" s")[0])


def datatrove_driver(address: str, inputs: str, tok: str, out: str, logs: str) -> None:
    """The datatrove side, run as its own process (`--datatrove-driver`): tokenize every JSONL
    file of `inputs` into `out` on the cluster at `address`, one task per file."""
    import ray
    from datatrove.executor.ray import RayPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    ray.init(address=address, log_to_driver=False)
    files = len(list(Path(inputs).glob("*.jsonl")))
    RayPipelineExecutor(
        pipeline=[
            JsonlReader(inputs, glob_pattern="*.jsonl"),
            DocumentTokenizer(
                out, tokenizer_name_or_path=tok, eos_token="<|endoftext|>", shuffle_documents=False
            ),
        ],
        tasks=files,
        logging_dir=logs,
        cpus_per_task=1,
        mem_per_cpu_gb=0.5,  # Ray's memory resource of the simulated nodes; the tasks use less
        skip_completed=False,
    ).run()


def versus_datatrove(folder: Path, files: int, rounds: int) -> None:
    """`tokenize --engine ray` and datatrove's Ray executor on the same cluster and input."""
    from importlib.metadata import version

    import numpy as np
    from ray.cluster_utils import Cluster

    import dataprep
    from dataprep.shards import ShardSet

    tmp = Path(tempfile.mkdtemp(prefix="bench-dt-", dir="/tmp"))
    tok = tmp / "tok.json"
    dataprep.train_bpe(folder, 32000, out=tok, special_tokens=["<|endoftext|>"], tiktoken=False)
    jsonl = tmp / "jsonl"
    jsonl.mkdir()
    for f in sorted(folder.iterdir())[:files]:
        with open(jsonl / f"{f.name}.jsonl", "w") as w:
            for doc in wiki_docs_of(f):
                w.write(json.dumps({"text": doc}) + "\n")
    size = sum(f.stat().st_size for f in jsonl.iterdir())
    unit_mb = str(max(f.stat().st_size for f in jsonl.iterdir()) / 1e6 / 2)  # a unit per file
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE, "temp_dir": temp},
    )
    rows: list[tuple[str, float, int, float | None]] = []
    same: list[bool] = []
    try:
        for _ in range(2):
            c.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        c.wait_for_nodes()
        for r in range(rounds):
            out = tmp / f"dataprep-{r}"
            secs, _ = cli(["tokenize", str(jsonl), "--tokenizer", str(tok), "--out", str(out),
                           *SEQ, "--engine", "ray", "--address", c.address,
                           "--unit-mb", unit_mb])  # fmt: skip
            manifest = json.loads((out / "manifest.json").read_text())
            tokens = sum(s["tokens"] + s["dropped_tokens"] for s in manifest["splits"].values())
            rows.append(("dataprep", secs, tokens, None))
            out, logs = tmp / f"datatrove-{r}", tmp / f"datatrove-logs-{r}"
            t0 = time.perf_counter()
            p = subprocess.run(
                [sys.executable, __file__, "--datatrove-driver", c.address, str(jsonl), str(tok),
                 str(out), str(logs)],
                capture_output=True, text=True,
            )  # fmt: skip
            secs = time.perf_counter() - t0
            if p.returncode != 0:
                raise SystemExit(f"datatrove failed:\n{p.stderr[-3000:]}")
            # `.ds` files hold the token ids, 2 bytes each with a vocabulary under 65,536.
            tokens = sum(f.stat().st_size for f in out.rglob("*.ds")) // 2
            # Its own account: the time inside its pipeline steps (reader, tokenizer), summed
            # over the tasks; the rest of the wall time is the executor's.
            steps = json.loads((logs / "stats.json").read_text())
            inside = sum(
                t["total"] if isinstance(t := step["time_stats"], dict) else float(t)
                for step in steps
            )
            rows.append(("datatrove", secs, tokens, inside))
            # The same ids in the same order: dataprep's documents as packed (each with its EOS)
            # against datatrove's `.ds` files in task (= file) order.
            ours = np.concatenate(list(ShardSet(tmp / f"dataprep-{r}").documents()))
            theirs = np.concatenate(
                [np.fromfile(f, dtype=np.uint16) for f in sorted(out.rglob("*.ds"))]
            )
            same.append(ours.dtype == theirs.dtype and np.array_equal(ours, theirs))
    finally:
        c.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(f"\n{files} files of {folder.parent.name}/{folder.name} as JSONL: {size / 1e6:.1f} MB; "
          f"32k BPE; 2 worker nodes x 1 CPU; datatrove {version('datatrove')}; process wall "
          "time\n")  # fmt: skip
    print("| round | system | s | MB/s | tokens | in its steps s (sum over tasks) |")
    print("|---|---|---:|---:|---:|---:|")
    for i, (name, secs, tokens, inside) in enumerate(rows):
        steps_s = "" if inside is None else f"{inside:.2f}"
        print(f"| {i // 2 + 1} | {name} | {secs:.2f} | {size / 1e6 / secs:.2f} | {tokens:,} | "
              f"{steps_s} |")  # fmt: skip
    for r in range(rounds):
        (_, d, _, _), (_, t, _, _) = rows[2 * r], rows[2 * r + 1]
        print(f"round {r + 1}: dataprep {t / d:.2f}x datatrove's MB/s; same ids: "
              f"{'yes' if same[r] else 'NO'}")  # fmt: skip
    shutil.rmtree(tmp)


def wiki_docs_of(path: Path) -> list[str]:
    """The documents of one WikiExtractor file (`common.wiki_docs` reads a folder)."""
    one = Path(tempfile.mkdtemp(prefix="wiki-", dir="/tmp"))
    try:
        (one / path.name).symlink_to(path)
        return list(wiki_docs(one))
    finally:
        shutil.rmtree(one)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--unit-mb", default="16")
    ap.add_argument("--scale", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--datatrove", type=int, metavar="N", help="compare with datatrove instead")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--datatrove-driver", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ["PYTHONPATH"] = str(REPO / "python")  # the worker nodes import dataprep too
    if a.datatrove_driver:
        datatrove_driver(*a.datatrove_driver)
        return
    if a.datatrove is not None:
        if not 1 <= a.datatrove <= 100 or a.rounds < 1:
            raise SystemExit("--datatrove: 1 to 100 files; --rounds: at least 1")
        versus_datatrove(CORPORA / a.corpus / "AA", a.datatrove, a.rounds)
        return
    from ray.cluster_utils import Cluster

    import dataprep

    folder = CORPORA / a.corpus / "AA"
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp"))
    tok = tmp / "tok.json"
    dataprep.train_bpe(folder, 32000, out=tok, special_tokens=["<|endoftext|>"], tiktoken=False)
    inputs: dict[int, Path] = {}
    for k in a.scale:  # the corpus linked k times: a larger input of the same text
        d = tmp / f"x{k}"
        for i in range(k):
            (d / str(i)).mkdir(parents=True)
            for f in sorted(folder.iterdir()):
                (d / str(i) / f.name).symlink_to(f)
        inputs[k] = d
    size = sum(f.stat().st_size for f in folder.iterdir())

    def local(k: int) -> tuple[float, dict[str, str]]:
        out = tmp / f"local-x{k}"
        secs, _ = cli(["tokenize", str(inputs[k]), "--tokenizer", str(tok), "--out", str(out),
                       *SEQ, "--threads", "2"])  # fmt: skip
        files = digest(out)
        shutil.rmtree(out)
        return secs, files

    # NOTE: the machine is shared, so its load changes during the run: each Ray run is paired
    # with a local run just before it, and the ratio is taken within the pair.
    rows = []
    clusters = [
        ("1 node x 2 CPUs", [2]),
        ("2 nodes x 1 CPU", [1, 1]),
        ("3 nodes x 1 CPU", [1, 1, 1]),
    ]
    for label, cpus in clusters:
        temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE, "temp_dir": temp},
        )
        try:
            for n in cpus:
                c.add_node(num_cpus=n, object_store_memory=OBJECT_STORE)
            c.wait_for_nodes()
            for k in inputs:
                base, files = local(k)
                out = tmp / f"ray-x{k}"
                secs, err = cli(
                    ["tokenize", str(inputs[k]), "--tokenizer", str(tok), "--out", str(out), *SEQ,
                     "--engine", "ray", "--address", c.address, "--unit-mb", a.unit_mb]
                )  # fmt: skip
                same = digest(out) == files
                shutil.rmtree(out)
                # Both from the start of the units (the assemble overlaps them): when the last
                # unit was done, and when the manifest was.
                units, assemble = stage_seconds(err, "units"), stage_seconds(err, "assemble")
                rows.append((label, k, base, secs, units, assemble, same))
        finally:
            c.shutdown()
            shutil.rmtree(temp, ignore_errors=True)

    print(f"\n{a.corpus}/AA: {size / 1e6:.1f} MB; seq_len 1024; --unit-mb {a.unit_mb}; "
          f"local engine --threads 2; process wall time\n")  # fmt: skip
    print("| input | cluster | local s | ray s | last unit s | manifest s | after last unit s "
          "| ray / local | same bytes |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for label, k, base, secs, units, assemble, same in rows:
        print(f"| {k * size / 1e6:.0f} MB | {label} | {base:.2f} | {secs:.2f} | {units:.1f} | "
              f"{assemble:.1f} | {assemble - units:.1f} | {secs / base:.2f}x | "
              f"{'yes' if same else 'NO'} |")  # fmt: skip
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
