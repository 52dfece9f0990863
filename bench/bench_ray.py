"""`dataprep tokenize --engine ray` against the local engine, side by side in one run, on the same
machine: causal LM, seq_len 1024, a 32k tokenizer trained on the corpus. The Ray clusters are
simulated on this machine (`ray.cluster_utils.Cluster`: a head without CPUs, the driver's
cluster service only, plus worker nodes): 1 node of 2 CPUs, then 2 and 3 nodes of 1 CPU. Each
run is the CLI in a fresh process, timed from start to exit (Python start, connecting to the
cluster, the units, assemble); every output's shards and manifest are compared byte for byte with
the local engine's. Every run is a new Ray job, and Ray starts a job's worker processes when its
first tasks arrive, so each run pays for that (about 1.2 s here) even on a cluster that stays up.

    python bench/bench_ray.py [--corpus enwiki] [--unit-mb 16] [--scale 1 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPORA, REPO

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--unit-mb", default="16")
    ap.add_argument("--scale", type=int, nargs="+", default=[1, 4])
    a = ap.parse_args()
    os.environ["PYTHONPATH"] = str(REPO / "python")  # the worker nodes import dataprep too
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
