"""`tokenize --engine ray` on a real Ray cluster started here (`ray.cluster_utils.Cluster`: a head
that runs no tasks, as on a real cluster, and worker nodes of one CPU added and removed per test;
one test starts its own head with `ray start`): the shards and manifest are byte-identical to the
local engine's for 1, 2 and 3 nodes, causal and MLM; a driver killed mid-run and rerun, and a node
lost mid-run, give the same bytes; a corrupt input fails at once naming it; the engine flags are
refused where they do not apply; the local engine never imports ray. `train-bpe --engine ray`:
the tokenizer files are byte-identical to the local engine's on 1 and 3 nodes, with and without
held-out documents."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import files_digest
from faultkit import dataprep_cmd
from ray.cluster_utils import Cluster

import dataprep
from dataprep import ray_engine
from dataprep.cli import main

OBJECT_STORE = 100 * 1024 * 1024
# Node loss is noticed in about 2 s instead of Ray's default (tens of seconds).
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
UNIT_MB = "0.06"  # about 10 units from the corpus below (its files are 10-560 KB)
ONE_FILE_UNITS = "0.000001"  # every input file a unit of its own
CLM = ["--seq-len", "64", "--val-fraction", "0.1", "--shard-size", "40KB"]
MLM = [
    *["--objective", "mlm", "--layout", "nsp", "--nsp-block-docs", "4", "--static-masking"],
    *["--seq-len", "64", "--val-fraction", "0.1", "--shard-size", "40KB"],
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str]) -> Path:
    """Eleven inputs of different sizes and formats: ten JSONL files (every tenth demo
    document), one larger than a unit (a unit of its own), one gzipped."""
    d = tmp_path_factory.mktemp("corpus")
    for k in range(10):
        lines = "".join(json.dumps({"text": t}) + "\n" for t in demo_texts[k::10])
        (d / f"part{k:02d}.jsonl").write_text(lines)
    big = "".join(json.dumps({"text": f"big {i}: {t}"}) + "\n" for i, t in enumerate(demo_texts))
    (d / "part10.jsonl.gz").write_bytes(gzip.compress(big.encode()))
    return d


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """44 inputs (the corpus four times): with ONE_FILE_UNITS, one unit each and one task at a
    time on one node, seconds of units to stop or lose a node in the middle of."""
    d = tmp_path_factory.mktemp("many")
    for k in range(4):
        for p in corpus.iterdir():
            (d / f"{k}-{p.name}").write_bytes(p.read_bytes())
    return d


@pytest.fixture(scope="module")
def cluster() -> Iterator[Nodes]:
    """One Ray cluster for the module; tests set its number of worker nodes."""
    # Its own temporary directory: not the machine's /tmp/ray, whose `ray_current_cluster` file
    # would point other users' `--address auto` at this cluster (short: it holds Unix sockets).
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": OBJECT_STORE,
            "temp_dir": temp,
            "_system_config": FAST_HEALTH_CHECKS,
        },
    )
    nodes = Nodes(c, Path(temp))
    try:
        yield nodes
    finally:
        c.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


class Nodes:
    """The worker nodes (one CPU each) of the module's cluster."""

    def __init__(self, cluster: Cluster, temp: Path) -> None:
        self.cluster = cluster
        self.temp = temp  # Ray's session directories and logs, every node's
        self.workers: list[Any] = []

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def add(self) -> Any:
        node = self.cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        self.workers.append(node)
        return node

    def remove(self, node: Any) -> None:
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def resize(self, n: int) -> None:
        while len(self.workers) < n:
            self.add()
        while len(self.workers) > n:
            self.remove(self.workers[-1])
        self.cluster.wait_for_nodes()


def without_s3_environment(cluster: Nodes, n: int) -> None:
    """Restarts the worker nodes (`n` of them) with no AWS_* variable in their environment, and
    checks on the cluster that their tasks see none: only the driver has the S3 settings."""
    cluster.resize(0)
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("AWS_")]}
    try:
        cluster.resize(n)
    finally:
        os.environ.update(saved)
    probe = (
        "import json, os, ray\n"
        f"ray.init(address={cluster.address!r}, log_to_driver=False)\n"
        "@ray.remote(num_cpus=1, scheduling_strategy='SPREAD')\n"
        "def env():\n"
        "    return ray.get_runtime_context().get_node_id(), "
        "' '.join(sorted(k for k in os.environ if k.startswith('AWS_')))\n"
        f"print(json.dumps(sorted(set(ray.get([env.remote() for _ in range({4 * n})])))))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=clean
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])  # [[node id, "AWS_* names"], ...]
    assert len(seen) == n and all(names == "" for _, names in seen), seen


def secret_nowhere(secret: str, *roots: Path) -> None:
    """No file under `roots` (Ray's logs of every node, the run's directories) holds `secret`."""
    needle = secret.encode()
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    assert needle not in p.read_bytes(), f"the secret key is in {p}"


def tokenize_args(corpus: Path, tok: Path, out: Path, extra: list[str]) -> list[str]:
    return ["tokenize", str(corpus), "--tokenizer", str(tok), "--out", str(out), *extra]


def local_reference(corpus: Path, tok: Path, out: Path, extra: list[str]) -> dict[str, str]:
    r = CliRunner().invoke(main, tokenize_args(corpus, tok, out, extra))
    assert r.exit_code == 0, r.output
    return files_digest(out)


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter: the driver is its own process, as for a user (and Ray's
    driver state never lives in the test process)."""
    return subprocess.run(dataprep_cmd(args), capture_output=True, text=True, timeout=180)


def same_directory(out: Path, ref: Path) -> None:
    """Every shard and the manifest equal the local engine's, and nothing else is there."""
    assert files_digest(out) == files_digest(ref)
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))
    assert not Path(f"{out}{ray_engine.WORK_SUFFIX}").exists(), "work directory left behind"


# --- options, no cluster ---------------------------------------------------------------------


def test_engine_flags_are_refused_where_they_do_not_apply(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer], corpus: Path, tmp_path: Path
) -> None:
    tok, _ = specials_tokenizer
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    base = tokenize_args(corpus, tok, tmp_path / "o", [])
    cases = [
        ([*base, "--address", "1.2.3.4:6379"], "--address applies to --engine ray only"),
        ([*base, "--work-dir", "w"], "--work-dir applies to --engine ray only"),
        ([*base, "--unit-mb", "8"], "--unit-mb applies to --engine ray only"),
        ([*base, "--engine", "ray", "--unit-mb", "0"], "--unit-mb 0.0: must be more than 0"),
        ([*base, "--engine", "ray", "--unit-mb", "nan"], "--unit-mb nan: must be more than 0"),
        (
            [*base, "--engine", "ray", "--dedup", "exact"],
            "--dedup: not supported with --engine ray yet",
        ),
        (
            [*base, "--engine", "ray", "--address", f"127.0.0.1:{port}"],
            f"--address 127.0.0.1:{port}: no Ray cluster there",
        ),
        (
            [*base, "--engine", "ray", "--seq-len", "0"],
            "--seq-len 0 is too short",
        ),
        (
            ["dedup", str(corpus), "--engine", "ray"],
            "--engine ray: not supported by `dataprep dedup` yet",
        ),
        (
            [
                "train-bpe",
                str(corpus),
                "--vocab-size",
                "300",
                "--out",
                str(tmp_path / "o"),
                "--engine",
                "ray",
                "--address",
                f"127.0.0.1:{port}",
            ],
            f"--address 127.0.0.1:{port}: no Ray cluster there",
        ),
        (
            ["train-bpe", str(corpus), "--vocab-size", "300", "--engine", "ray", "--unit-mb", "-1"],
            "--unit-mb -1.0: must be more than 0",
        ),
        (
            ["train-bpe", str(corpus), "--out", str(tmp_path / "t.json"), "--unit-mb", "8"],
            "--unit-mb applies to --engine ray only",
        ),
    ]
    for args, message in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, (args, r.output)
        assert r.output.startswith("error: ") and message in r.output, (args, r.output)
        assert r.output.count("\n") == 1, r.output
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "o.work").exists()


def test_the_local_engine_never_imports_ray(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer], corpus: Path, tmp_path: Path
) -> None:
    tok, _ = specials_tokenizer
    args = tokenize_args(corpus, tok, tmp_path / "o", CLM)
    code = (
        "import sys\n"
        "from dataprep.cli import main\n"
        f"main({args!r}, standalone_mode=False)\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if 'ray' in m)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "manifest.json").exists()


# --- on the cluster --------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_same_bytes_as_the_local_engine_on_1_2_and_3_nodes(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    corpus: Path,
    tmp_path: Path,
    objective: str,
) -> None:
    tok, _ = specials_tokenizer
    extra = CLM if objective == "clm" else MLM
    ref = tmp_path / "local"
    local_reference(corpus, tok, ref, extra)
    assert len(files_digest(ref)) > 3, "too few shards to show the shard boundaries"
    for n in (1, 2, 3):
        cluster.resize(n)
        out = tmp_path / f"ray{n}"
        args = tokenize_args(corpus, tok, out, extra)
        r = run_cli([*args, "--engine", "ray", "--address", cluster.address, "--unit-mb", UNIT_MB])
        assert r.returncode == 0, r.stderr
        assert f"{n} node{'s' * (n > 1)}, {n} CPU" in r.stderr, r.stderr
        assert "units: " in r.stderr and "0 verified from an earlier run" in r.stderr
        same_directory(out, ref)
    # A rerun of a complete output returns it after checking it, as the local engine does (and
    # needs no cluster); what a run killed before its clean-up left is removed.
    work = Path(f"{out}{ray_engine.WORK_SUFFIX}")
    work.mkdir()
    (work / "unit-000000.bin").write_bytes(b"left")
    r = CliRunner().invoke(main, [*args, "--engine", "ray", "--address", "127.0.0.1:9"])
    assert r.exit_code == 0 and "is complete" in r.output, r.output
    same_directory(out, ref)


def test_the_python_api(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    corpus: Path,
    tmp_path: Path,
) -> None:
    """`ray_engine.tokenize` returns the manifest `dataprep.tokenize` returns (in a process of its
    own: the driver's Ray state never lives in the test process)."""
    tok, _ = specials_tokenizer
    kw = {"seq_len": 64, "val_fraction": 0.1, "shard_size": "40KB"}
    local = dataprep.tokenize(corpus, tok, tmp_path / "local", **kw)
    cluster.resize(2)
    code = (
        "import json, sys\n"
        "from dataprep import ray_engine\n"
        f"m = ray_engine.tokenize({str(corpus)!r}, {str(tok)!r}, {str(tmp_path / 'ray')!r}, "
        f"address={cluster.address!r}, unit_mb=0.06, **{kw!r})\n"
        "print(json.dumps(m))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == local
    same_directory(tmp_path / "ray", tmp_path / "local")


def test_units_depend_on_the_inputs_only(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer], corpus: Path, tmp_path: Path
) -> None:
    tok, _ = specials_tokenizer
    engine = ray_engine.EngineOptions("ray", unit_mb=float(UNIT_MB))
    run = ray_engine.RayTokenize(corpus, tok, tmp_path / "o", engine, seq_len=64)
    files = [f for u in run.units for f in u.files]
    assert [Path(p).name for p, _ in files] == sorted(p.name for p in corpus.iterdir())
    assert 5 <= len(run.units) < len(files), [u.files for u in run.units]
    big = next(u for u in run.units if u.files[0][0].endswith("part10.jsonl.gz"))
    assert len(big.files) == 1 and big.bytes > float(UNIT_MB) * 1e6
    assert all(u.bytes <= float(UNIT_MB) * 1e6 for u in run.units if len(u.files) > 1)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.work").exists()


def wait_for(predicate: Any, proc: subprocess.Popen[bytes], what: str, limit: float = 60) -> None:
    deadline = time.time() + limit
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} after {limit} s"
        time.sleep(0.002)


def done_records(work: Path) -> list[Path]:
    return sorted(work.glob("unit-*.done.json")) if work.exists() else []


def test_driver_interrupted_then_killed_mid_run_then_rerun(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    many: Path,
    tmp_path: Path,
) -> None:
    tok, _ = specials_tokenizer
    ref, out = tmp_path / "local", tmp_path / "ray"
    local_reference(many, tok, ref, CLM)
    cluster.resize(1)
    args = [
        *tokenize_args(many, tok, out, CLM),
        *["--engine", "ray", "--address", cluster.address, "--unit-mb", ONE_FILE_UNITS],
    ]
    work = Path(f"{out}{ray_engine.WORK_SUFFIX}")
    # Ctrl-C first: one line, the tasks cancelled, the finished units kept. The driver gets the
    # default SIGINT disposition: a test run started in the background of a script inherits
    # SIGINT ignored (POSIX shells do that to background jobs), and the signal would do nothing.
    proc = subprocess.Popen(
        dataprep_cmd(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: done_records(work), proc, "done record")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err.decode()
    assert err.decode().splitlines()[-1].startswith("error: interrupted; finished units are kept")
    assert done_records(work)
    # Then SIGKILL, in the middle of the rerun.
    proc = subprocess.Popen(
        dataprep_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    before = len(done_records(work))
    wait_for(lambda: len(done_records(work)) > before, proc, "new done record")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(done_records(work))
    assert not (out / "manifest.json").exists()
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    # The units finished before the kill are verified, not encoded again.
    line = next(x for x in r.stderr.splitlines() if x.startswith("units: "))
    assert int(line.split(", ")[1].split()[0]) >= kept >= 2, (line, kept)
    same_directory(out, ref)


def test_a_node_lost_mid_run_changes_nothing(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    many: Path,
    tmp_path: Path,
) -> None:
    tok, _ = specials_tokenizer
    ref, out = tmp_path / "local", tmp_path / "ray"
    local_reference(many, tok, ref, MLM)
    cluster.resize(1)
    doomed = cluster.workers[0]
    args = [
        *tokenize_args(many, tok, out, MLM),
        *["--engine", "ray", "--address", cluster.address, "--unit-mb", ONE_FILE_UNITS],
    ]
    work = Path(f"{out}{ray_engine.WORK_SUFFIX}")
    proc = subprocess.Popen(dataprep_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: done_records(work), proc, "done record")
    # Every task runs on the one worker node: it goes at the first done record, with the task in
    # flight on it, before its replacement is added (while no node is there, no unit can finish:
    # the count below is the loss's, whatever the timing; adding the new node first let the old
    # one finish every unit while the new one started).
    cluster.remove(doomed)
    at_loss = len(done_records(work))
    cluster.add()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    units = int(err.decode().split("plan: ")[1].split()[0])
    assert at_loss < units, "every unit was done before the node was lost"
    same_directory(out, ref)


def test_a_corrupt_input_fails_at_once_naming_it(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    corpus: Path,
    tmp_path: Path,
) -> None:
    tok, _ = specials_tokenizer
    bad = tmp_path / "corpus"
    bad.mkdir()
    for p in corpus.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    gz = bad / "part10.jsonl.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])  # a truncated gzip stream
    cluster.resize(2)
    t0 = time.perf_counter()
    r = run_cli(
        [
            *tokenize_args(bad, tok, tmp_path / "o", CLM),
            *["--engine", "ray", "--address", cluster.address, "--unit-mb", UNIT_MB],
        ]
    )
    secs = time.perf_counter() - t0
    assert r.returncode == 1, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: ") and str(gz) in last, r.stderr
    assert secs < 30, f"took {secs:.1f} s: retried?"
    assert not (tmp_path / "o" / "manifest.json").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_cli_against_a_cluster_from_ray_start(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer], corpus: Path, tmp_path: Path
) -> None:
    tok, _ = specials_tokenizer
    ref, out = tmp_path / "local", tmp_path / "ray"
    local_reference(corpus, tok, ref, CLM)
    port = free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    # Ray's temporary directory holds Unix sockets, whose paths must be short (tmp_path's are too
    # long).
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    start = [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
             f"--object-store-memory={OBJECT_STORE}", f"--temp-dir={temp}",
             "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    # NOTE: not `ray stop`: it stops every Ray process of the machine (other users' clusters,
    # this module's). The head runs in the foreground (`--block`) in a session of its own; a
    # SIGTERM stops it and what it started, and the session is killed after it.
    head = subprocess.Popen(
        start, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.time() + 60
        while ray_engine._reachable(f"127.0.0.1:{port}") is not None:
            assert head.poll() is None, head.communicate()[1].decode()[-2000:]
            assert time.time() < deadline, "no head after 60 s"
            time.sleep(0.2)
        args = [
            *tokenize_args(corpus, tok, out, CLM),
            *["--engine", "ray", "--address", f"127.0.0.1:{port}"],
        ]
        r = run_cli(args)
        assert r.returncode == 0, r.stderr
        assert "1 node, 1 CPU" in r.stderr, r.stderr
        same_directory(out, ref)
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
            try:
                head.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                head.kill()
                head.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_inputs_and_output_in_object_storage(
    cluster: Nodes,
    s3_env: Any,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    corpus: Path,
    tmp_path: Path,
) -> None:
    """s3:// inputs (each unit's task stages its own objects) and an s3:// output (built on the
    driver, uploaded with the manifest last): the objects the local engine writes from the
    same bucket, byte for byte."""
    from dataprep import storage

    tok, _ = specials_tokenizer
    base = f"{s3_env.bucket('ray-io')}/{tmp_path.name}"
    for p in sorted(corpus.rglob("*")):
        if p.is_file():
            storage.upload(p, f"{base}/corpus/{p.relative_to(corpus).as_posix()}")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    extra = ["--seq-len", "64", "--val-fraction", "0.1", "--shard-size", "40KB"]
    # Only the driver has the S3 endpoint and keys: the tasks get them from it.
    without_s3_environment(cluster, 2)
    outs = {"local": f"{base}/local", "ray": f"{base}/ray"}
    for engine, out in outs.items():
        args = ["tokenize", f"{base}/corpus", "--tokenizer", str(tok), "--out", out, *extra]
        if engine == "ray":
            args += ["--engine", "ray", "--address", cluster.address, "--unit-mb", UNIT_MB]
        r = subprocess.run(dataprep_cmd(args), capture_output=True, text=True, timeout=180, env=env)
        assert r.returncode == 0, r.stderr
    local, ray_out = (storage.list_files(outs[k]) for k in ("local", "ray"))
    assert local == ray_out and any(n.endswith(".arrow") for n, _ in local)
    for name, _ in local:
        assert storage.read_bytes(f"{outs['ray']}/{name}") == storage.read_bytes(
            f"{outs['local']}/{name}"
        )
    manifest = json.loads(storage.read_bytes(f"{outs['ray']}/manifest.json"))
    assert all(i["path"].startswith(f"{base}/corpus/") for i in manifest["inputs"])
    secret_nowhere(s3_env.secret_key, cluster.temp, tmp_path)


# --- train-bpe -------------------------------------------------------------------------------


def tokenizer_files(out: Path) -> dict[str, str]:
    """SHA-256 of every file next to a trained tokenizer.json (its .tiktoken pair), by name."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.parent.iterdir())
    }


def table_row(stdout: str, name: str) -> str:
    return next(x for x in stdout.splitlines() if name in x)


@pytest.mark.parametrize("holdout", ["0", "7"])
def test_train_bpe_same_files_as_the_local_engine_on_1_and_3_nodes(
    cluster: Nodes, corpus: Path, tmp_path: Path, holdout: str
) -> None:
    def args(out: Path) -> list[str]:
        return ["train-bpe", str(corpus), "--vocab-size", "400", "--holdout-every", holdout,
                "--out", str(out)]  # fmt: skip

    ref = tmp_path / "local" / "tok.json"
    for d in ("local", "ray1", "ray3"):
        (tmp_path / d).mkdir()
    local = CliRunner().invoke(main, args(ref))
    assert local.exit_code == 0, local.output
    expected = tokenizer_files(ref)
    assert sorted(expected) == ["tok.json", "tok.tiktoken", "tok.tiktoken.json"]
    for n in (1, 3):
        cluster.resize(n)
        out = tmp_path / f"ray{n}" / "tok.json"
        r = run_cli([*args(out), "--engine", "ray", "--address", cluster.address,
                     "--unit-mb", UNIT_MB])  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"{n} node{'s' * (n > 1)}, {n} CPU" in r.stderr, r.stderr
        assert "units: 10 run on the cluster" in r.stderr, r.stderr
        assert tokenizer_files(out) == expected
        assert not Path(f"{out}{ray_engine.WORK_SUFFIX}").exists(), "work directory left behind"
        if holdout != "0":
            # The held-out documents are the local run's: the same ones measured.
            assert table_row(r.stdout, "bytes/token") == table_row(local.output, "bytes/token")


def test_train_bpe_killed_then_rerun_skips_verified_units(
    cluster: Nodes, many: Path, tmp_path: Path
) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    ref, out = tmp_path / "local" / "tok.json", tmp_path / "ray" / "tok.json"
    base = ["train-bpe", str(many), "--vocab-size", "400", "--holdout-every", "7"]
    local = CliRunner().invoke(main, [*base, "--out", str(ref)])
    assert local.exit_code == 0, local.output
    cluster.resize(1)
    args = [*base, "--out", str(out), "--engine", "ray", "--address", cluster.address,
            "--unit-mb", ONE_FILE_UNITS]  # fmt: skip
    work = Path(f"{out}{ray_engine.WORK_SUFFIX}")
    proc = subprocess.Popen(
        dataprep_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: len(done_records(work)) >= 2, proc, "done records")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(done_records(work))
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("units: "))
    assert int(line.split(", ")[1].split()[0]) >= kept >= 2, (line, kept)
    assert tokenizer_files(out) == tokenizer_files(ref)
    assert table_row(r.stdout, "bytes/token") == table_row(local.output, "bytes/token")
    assert not work.exists(), "work directory left behind"


def test_relative_paths_are_the_drivers(
    cluster: Nodes,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    corpus: Path,
    tmp_path: Path,
) -> None:
    """Inputs, tokenizer, --out and the work directory given relative to the driver's working
    directory, which is not the worker nodes' (they were started from the test's): the tasks
    resolve them as the driver does."""
    tok, _ = specials_tokenizer
    shutil.copytree(corpus, tmp_path / "c")
    shutil.copy(tok, tmp_path / "tok.json")
    cluster.resize(2)
    ray_args = ["--engine", "ray", "--address", cluster.address, "--unit-mb", UNIT_MB]
    runs = {
        "tokenize": (["tokenize", "c", "--tokenizer", "tok.json", *CLM], "shards"),
        "train-bpe": (["train-bpe", "c", "--vocab-size", "300"], "bpe/t.json"),
    }
    for command, (args, out) in runs.items():
        outs = {}
        for engine, extra in (("local", []), ("ray", ray_args)):
            (tmp_path / engine / "bpe").mkdir(parents=True, exist_ok=True)
            r = subprocess.run(
                dataprep_cmd([*args, "--out", f"{engine}/{out}", *extra]),
                capture_output=True, text=True, timeout=180, cwd=tmp_path,
            )  # fmt: skip
            assert r.returncode == 0, (command, r.stderr)
            path = tmp_path / engine / out
            outs[engine] = files_digest(path) if command == "tokenize" else tokenizer_files(path)
        assert outs["ray"] == outs["local"] and outs["local"], command


def test_train_bpe_inputs_and_output_in_object_storage(
    cluster: Nodes, s3_env: Any, corpus: Path, tmp_path: Path
) -> None:
    """s3:// inputs (each task stages its own objects) and an s3:// --out (written here and
    uploaded, tokenizer.json last): the objects the local engine writes, byte for byte."""
    from dataprep import storage

    base = f"{s3_env.bucket('ray-bpe')}/{tmp_path.name}"
    for p in sorted(corpus.iterdir()):
        storage.upload(p, f"{base}/corpus/{p.name}")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    without_s3_environment(cluster, 2)  # the tasks get the driver's S3 settings
    for engine in ("local", "ray"):
        args = ["train-bpe", f"{base}/corpus", "--vocab-size", "300", "--holdout-every", "7",
                "--out", f"{base}/{engine}/tok.json"]  # fmt: skip
        if engine == "ray":
            args += ["--engine", "ray", "--address", cluster.address, "--unit-mb", UNIT_MB]
        r = subprocess.run(dataprep_cmd(args), capture_output=True, text=True, timeout=180, env=env)
        assert r.returncode == 0, r.stderr
    local, ray_out = (storage.list_files(f"{base}/{k}") for k in ("local", "ray"))
    assert local == ray_out and len(local) == 3, (local, ray_out)
    for name, _ in local:
        assert storage.read_bytes(f"{base}/ray/{name}") == storage.read_bytes(
            f"{base}/local/{name}"
        )
    secret_nowhere(s3_env.secret_key, cluster.temp, tmp_path)


def test_work_directory_in_object_storage(
    cluster: Nodes,
    s3_env: Any,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    many: Path,
    corpus: Path,
    tmp_path: Path,
) -> None:
    """`--work-dir s3://...` on nodes without any AWS_* variable: the tasks upload their unit
    files and done records there; the driver, killed mid-run, is rerun from another machine's
    cache (nothing of the first run local), verifies the units in the bucket (a unit object
    altered in the bucket runs again) and writes the local engine's bytes; then the unit objects
    are gone. train-bpe with an s3:// work directory: the local engine's tokenizer files."""
    from dataprep import storage

    tok, _ = specials_tokenizer
    work = f"{s3_env.bucket('ray-work')}/{tmp_path.name}/work"
    ref, out = tmp_path / "local", tmp_path / "ray"
    local_reference(many, tok, ref, CLM)
    without_s3_environment(cluster, 1)
    args = [*tokenize_args(many, tok, out, CLM), "--engine", "ray", "--address", cluster.address,
            "--unit-mb", ONE_FILE_UNITS, "--work-dir", work]  # fmt: skip

    def records() -> list[str]:
        return [n for n, _ in storage.list_files(work) if n.endswith(".done.json")]

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache1")}
    proc = subprocess.Popen(
        dataprep_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    wait_for(lambda: len(records()) >= 3, proc, "done records in the bucket", limit=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    # The task in flight when the driver died may still finish: wait until the count is still.
    kept, deadline = len(records()), time.time() + 30
    while time.time() < deadline:
        time.sleep(2)
        if len(now := records()) == kept:
            break
        kept = len(now)
    assert kept >= 3
    # Unit 0 altered in the bucket (same size, one bit): its record no longer matches it.
    first = f"{work}/unit-000000.bin"
    raw = bytearray(storage.read_bytes(first))
    raw[len(raw) // 2] ^= 1
    (tmp_path / "altered").write_bytes(bytes(raw))
    storage.upload(tmp_path / "altered", first)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache2")
    r = subprocess.run(dataprep_cmd(args), capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert f"work directory {work}" in r.stderr, r.stderr
    line = next(x for x in r.stderr.splitlines() if x.startswith("units: "))
    assert int(line.split(", ")[1].split()[0]) == kept - 1, (line, kept)
    assert files_digest(out) == files_digest(ref)
    assert storage.list_files(work) == [], "unit objects left behind"
    copy = tmp_path / "cache2" / "dataprep" / "work"  # the driver's copy of the work directory
    assert not any(copy.rglob("unit-*")), "unit files left behind in the driver's copy"

    bpe_ref, bpe_out = tmp_path / "bpe-local" / "tok.json", tmp_path / "bpe-ray" / "tok.json"
    for p in (bpe_ref, bpe_out):
        p.parent.mkdir()
    base = ["train-bpe", str(corpus), "--vocab-size", "300", "--holdout-every", "7"]
    local = CliRunner().invoke(main, [*base, "--out", str(bpe_ref)])
    assert local.exit_code == 0, local.output
    r = subprocess.run(
        dataprep_cmd([*base, "--out", str(bpe_out), "--engine", "ray", "--address",
                      cluster.address, "--unit-mb", UNIT_MB, "--work-dir", f"{work}-bpe"]),
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "units: 10 run on the cluster" in r.stderr, r.stderr
    assert tokenizer_files(bpe_out) == tokenizer_files(bpe_ref)
    assert storage.list_files(f"{work}-bpe") == []
    secret_nowhere(s3_env.secret_key, cluster.temp, tmp_path)
