"""dedup: exact groups, near-duplicate recall and precision on a planted set, the threshold with
verification, determinism, edge inputs, CJK, outputs and the CLI. Small generated data only."""

from __future__ import annotations

import json
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import dataprep
from dataprep.cli import main
from dataprep.dedup import banding

VOCAB = [f"w{i}" for i in range(3000)]


def write_jsonl(path: Path, texts: list[str], **extra: list[object]) -> Path:
    with path.open("w") as f:
        for i, t in enumerate(texts):
            row = {"text": t, "id": f"d{i}"} | {k: v[i] for k, v in extra.items()}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = text.lower().split()
    return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def planted(seed: int = 0) -> tuple[list[str], dict[int, int]]:
    """60 originals of 200 words and 60 edited copies (0-6% of words replaced), shuffled.

    Returns the texts and, for each copy, the index of its original.
    """
    rng = random.Random(seed)
    originals = [[rng.choice(VOCAB) for _ in range(200)] for _ in range(60)]
    docs: list[tuple[str, int | None, int]] = [
        (" ".join(w), None, i) for i, w in enumerate(originals)
    ]
    for i, w in enumerate(originals):
        rate = 0.06 * i / 59
        copy = [rng.choice(VOCAB) + "x" if rng.random() < rate else x for x in w]
        docs.append((" ".join(copy), i, 60 + i))
    rng.shuffle(docs)
    pos = {key: p for p, (_, _, key) in enumerate(docs)}
    partner = {pos[key]: pos[orig] for _, orig, key in docs if orig is not None}
    return [t for t, _, _ in docs], partner


def test_exact_keeps_exactly_one_of_each_group(tmp_path: Path) -> None:
    texts = ["alpha beta", "gamma", "alpha  beta", "Alpha beta", "gamma", "alpha beta\n"]
    src = write_jsonl(tmp_path / "a.jsonl", texts)
    stats = dataprep.dedup(src, tmp_path / "out", mode="exact")
    assert stats["removed"].tolist() == [2, 4, 5]
    assert stats["kept"] == 3 and stats["exact_removed"] == 3
    kept = [json.loads(x)["text"] for x in (tmp_path / "out/a.jsonl").read_text().splitlines()]
    assert kept == ["alpha beta", "gamma", "Alpha beta"]
    clusters = [json.loads(x) for x in (tmp_path / "out/clusters.jsonl").read_text().splitlines()]
    assert [sum(m["kept"] for m in c["members"]) for c in clusters] == [1, 1]
    assert clusters[0]["members"][1]["duplicate_of"] == 0
    assert clusters[0]["members"][1]["id"] == "d2"
    lower = dataprep.dedup(src, mode="exact", lowercase=True)
    assert lower["removed"].tolist() == [2, 3, 4, 5]


def test_near_recall_and_precision_on_planted_set(tmp_path: Path) -> None:
    texts, partner = planted()
    src = write_jsonl(tmp_path / "p.jsonl", texts)
    stats = dataprep.dedup(src, mode="near", threshold=0.8)
    removed = set(stats["removed"].tolist())
    truth = {c: jaccard(texts[c], texts[o]) for c, o in partner.items()}
    should = [c for c, j in truth.items() if j >= 0.8]
    caught = [c for c in should if c in removed or partner[c] in removed]
    assert len(should) > 10
    assert len(caught) == len(should)
    # No removed document without a partner at or above the threshold.
    for r in removed:
        best = max(jaccard(texts[r], t) for i, t in enumerate(texts) if i != r)
        assert best >= 0.8, (r, best)


def test_threshold_just_above_caught_just_below_kept_with_verification(tmp_path: Path) -> None:
    base = [f"t{i}" for i in range(100)]

    def copy(shared: int) -> str:
        return " ".join(base[:shared] + [f"u{i}" for i in range(shared, 100)])

    # Unigram sets: J = s / (200 - s); 89 -> 0.8018, 88 -> 0.7857.
    opts = {"mode": "near", "threshold": 0.8, "ngram": 1, "bands": (64, 2)}
    above = write_jsonl(tmp_path / "above.jsonl", [" ".join(base), copy(89)])
    below = write_jsonl(tmp_path / "below.jsonl", [" ".join(base), copy(88)])
    assert dataprep.dedup(above, **opts)["removed"].tolist() == [1]
    st = dataprep.dedup(below, **opts)
    assert st["removed"].tolist() == [] and st["candidate_pairs"] == 1
    assert dataprep.dedup(below, verify=False, **opts)["removed"].tolist() == [1]


def test_same_output_for_any_thread_count(tmp_path: Path) -> None:
    texts, _ = planted(1)
    src = write_jsonl(tmp_path / "p.jsonl", texts + texts[:20])
    outs = []
    for threads in (1, 2, 3):
        out = tmp_path / f"out{threads}"
        st = dataprep.dedup(src, out, threads=threads, memory_mb=1)
        outs.append(
            (
                st["removed"].tolist(),
                (out / "clusters.jsonl").read_bytes(),
                (out / "p.jsonl").read_bytes(),
            )
        )
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0][0]) >= 20


def test_empty_and_single_document_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    st = dataprep.dedup(empty, tmp_path / "o1")
    assert st["documents"] == 0 and st["removed"].tolist() == []
    assert (tmp_path / "o1/empty.jsonl").read_text() == ""
    assert (tmp_path / "o1/clusters.jsonl").read_text() == ""
    one = write_jsonl(tmp_path / "one.jsonl", ["just one document"])
    st = dataprep.dedup(one, tmp_path / "o2")
    assert st["documents"] == 1 and st["kept"] == 1


def test_cjk_near_duplicates(tmp_path: Path) -> None:
    base = (
        "東京は日本の首都であり、世界で最も人口の多い都市圏の一つである。"
        "経済、政治、文化の中心地として知られ、多くの企業の本社が置かれている。"
    ) * 2
    near = base[:20] + "京" + base[21:]
    other = "大阪は関西地方の中心都市で、食文化と商業の街として有名である。" * 3
    src = write_jsonl(tmp_path / "ja.jsonl", [base, near, other, "北京是中国的首都。" * 10])
    assert dataprep.dedup(src)["removed"].tolist() == [1]


def test_parquet_output_keeps_every_column(tmp_path: Path) -> None:
    table = pa.table({"text": ["one two three", "one two  three", "four"], "url": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "in.parquet")
    dataprep.dedup(tmp_path / "in.parquet", tmp_path / "out", mode="exact")
    kept = pq.read_table(tmp_path / "out/in.parquet")
    assert kept.column("url").to_pylist() == ["a", "c"]


def test_cli_summary_banding_and_report(tmp_path: Path) -> None:
    texts, _ = planted(2)
    src = write_jsonl(tmp_path / "p.jsonl", texts + texts[:5])
    out = tmp_path / "deduped"
    res = CliRunner().invoke(main, ["dedup", str(src), "--out", str(out), "--threads", "2"])
    assert res.exit_code == 0, res.output
    b, r, _ = banding(0.8, 128, True)
    assert f"{b} bands x {r} rows" in res.output
    assert "near removed" in res.output and "exact removed" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exact_removed"] >= 5 and summary["bands"] == b
    kinds = {json.loads(x)["kind"] for x in (out / "clusters.jsonl").read_text().splitlines()}
    assert kinds == {"exact", "near"}
    assert not list(out.glob(".*tmp*"))


def test_cli_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    res = CliRunner().invoke(main, ["dedup", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    # One message (rich wraps it at the test console's width).
    assert res.output.count("error:") == 1
    message = " ".join(res.output.split("error:")[1].split())
    assert "bad.jsonl: line 2: not a JSON object" in message, res.output
    res = CliRunner().invoke(main, ["dedup", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 1 and "missing.jsonl" in res.output


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_banding_fits_num_perm(threshold: float) -> None:
    b, r, p = banding(threshold, 128, True)
    assert b * r <= 128 and p > 0.9
    assert np.isclose(p, 1 - (1 - threshold**r) ** b)


def run_cli(args: list[str], limit_bytes: int | None = None) -> subprocess.Popen[bytes]:
    """`dataprep <args>` in a subprocess; with `limit_bytes`, files it writes may not grow
    beyond that (RLIMIT_FSIZE, SIGXFSZ ignored so that write() fails with EFBIG: a full disk)."""

    def limit() -> None:
        if limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    cmd = [sys.executable, "-m", "dataprep.cli", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit)


def test_full_disk_error_names_the_output_file(tmp_path: Path) -> None:
    rng = random.Random(5)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(40)) for _ in range(2000)]
    (tmp_path / "in").mkdir()
    src = write_jsonl(tmp_path / "in" / "p.jsonl", texts)
    out = tmp_path / "out"
    proc = run_cli(["dedup", str(src), "--out", str(out), "--mode", "exact"], 64 << 10)
    with proc:
        output = " ".join(proc.communicate(timeout=120)[0].decode().split())
    assert proc.returncode == 1, output
    assert f"{out / 'p.jsonl'}: File too large" in output, output
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_rerun_after_kill_9_removes_spill_and_temporary_files(tmp_path: Path) -> None:
    rng = random.Random(6)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(12)) for _ in range(60_000)]
    src = write_jsonl(tmp_path / "p.jsonl", texts)
    spill, out = tmp_path / "spill", tmp_path / "out"
    spill.mkdir()
    args = ["dedup", str(src), "--out", str(out), "--temp-dir", str(spill), "--memory-mb", "1"]
    with run_cli([*args, "--threads", "1"]) as proc:
        deadline = time.time() + 60
        while not list(spill.glob("dataprep-spill-*/*")) and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    assert list(spill.glob(f"dataprep-spill-{proc.pid}-*/*")), "killed before it spilled"
    # What a writer killed while writing leaves: its temporary file under the output name.
    out.mkdir(exist_ok=True)
    (out / f".p.jsonl.tmp-{proc.pid}").write_text("partial")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert list(spill.iterdir()) == []
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_binary_input_is_skipped_named_and_gets_no_output(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_jsonl(src / "a.jsonl", ["one text", "one text", "two"])
    (src / "blob").write_bytes(b"\x00\x01binary" * 100)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["dedup", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 binary files" in res.output, res.output
    # Named in full: a long path is folded over table lines, never cut.
    unfolded = "".join(res.output.replace("\u2502", "").split())
    assert str(src / "blob").replace(" ", "") in unfolded, res.output
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "clusters.jsonl", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["binary_skipped"] == 1 and summary["binary_skipped_paths"] == [str(src / "blob")]
