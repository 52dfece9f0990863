"""`tokenize`: packing keeps every token, shards open in pyarrow and HF datasets, manifest
checksums, determinism across thread counts, kill -9 and resume, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import files_digest, kill_9_after_first_shard

import dataprep
from dataprep.cli import main


def rows_of(d: Path, split: str) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    ids, starts, n = [], [], []
    for path in dataprep.Manifest.read(d).shard_paths(split):
        t = dataprep.open_shard(path)
        ids.append(dataprep.input_ids(t))
        starts += t.column("doc_starts").to_pylist()
        n.append(t.column("n_tokens").to_numpy())
    return np.concatenate(ids), starts, np.concatenate(n)


def test_packing_keeps_every_token_in_order(
    trained, demo_corpus: Path, demo_texts: list[str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, tok = trained
    eos = tok.special_id("<|endoftext|>")
    out = tmp_path / "s"
    m = dataprep.tokenize(demo_corpus, path, out, seq_len=100, shard_size=100 * 2 * 50)
    assert m["splits"]["train"]["documents"] == len(demo_texts)
    assert len(m["splits"]["train"]["shards"]) > 3
    ids, starts, n = rows_of(out, "train")
    stream = [t for r in range(len(ids)) for t in ids[r, : n[r]].tolist()]
    expected, doc_pos = [], []
    for t in demo_texts:
        doc_pos.append(len(expected))
        expected += [*tok.encode(t), eos]  # this tokenizer has no BOS
    assert stream == expected
    assert [r * 100 + s for r, row in enumerate(starts) for s in row] == doc_pos
    assert (n[:-1] == 100).all() and 0 < n[-1] <= 100
    assert m["splits"]["train"]["tokens"] == len(expected)


def test_shards_open_zero_copy_and_in_hf_datasets(
    trained, demo_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    out = tmp_path / "s"
    m = dataprep.tokenize(demo_corpus, path, out, seq_len=128, val_fraction=0.2)
    shard = out / m["splits"]["train"]["shards"][0]["file"]
    t = pa.ipc.open_stream(pa.memory_map(str(shard))).read_all()
    assert t.schema.field("input_ids").type == pa.list_(
        pa.field("item", pa.uint16(), nullable=False), 128
    )
    assert t.schema.metadata[b"dataprep.schema_version"] == b"1"
    arr = dataprep.input_ids(t)
    assert arr.shape == (t.num_rows, 128) and arr.dtype == np.uint16
    ds = datasets.Dataset.from_file(str(shard))
    assert len(ds) == t.num_rows
    assert ds[0]["input_ids"] == arr[0].tolist()
    assert m["splits"]["val"]["documents"] > 0
    assert m["documents"]["train"] + m["documents"]["val"] == m["documents"]["read"]


def test_manifest_checksums_and_inspect(trained, demo_corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    out = tmp_path / "s"
    m = dataprep.tokenize(demo_corpus, path, out, seq_len=64)
    for s in m["splits"]["train"]["shards"]:
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    assert (out / m["tokenizer"]["file"]).read_bytes() == path.read_bytes()
    assert m["config"]["seq_len"] == 64 and m["inputs"][0]["bytes"] > 0
    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "OK" in r.output and "row 0" in r.output, r.output
    shard = out / m["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 1
    shard.write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert r.exit_code == 1 and "checksum mismatch" in r.output


def test_identical_output_whatever_the_thread_count(
    trained, demo_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    digests = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}"
        dataprep.tokenize(
            demo_corpus, path, out, seq_len=64, val_fraction=0.1, shard_size="20KB", threads=threads
        )
        digests.append(files_digest(out))
    assert digests[0] == digests[1] == digests[2]
    assert len(digests[0]) > 4


def test_last_row_drop_is_counted(trained, demo_corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    pad = dataprep.tokenize(demo_corpus, path, tmp_path / "p", seq_len=1000)
    drop = dataprep.tokenize(demo_corpus, path, tmp_path / "d", seq_len=1000, last_row="drop")
    p, d = pad["splits"]["train"], drop["splits"]["train"]
    assert d["rows"] == p["rows"] - 1
    assert d["tokens"] + d["dropped_tokens"] == p["tokens"] and d["dropped_tokens"] > 0


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, demo_texts: list[str]) -> Path:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("big")
    for k in range(6):
        (d / f"part{k}.jsonl").write_text(
            "".join(
                json.dumps({"text": f"{k}-{i} {t}"}) + "\n" for i, t in enumerate(demo_texts * 6)
            )
        )
    return d


def test_kill_9_then_resume_gives_identical_output(
    trained, big_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    args = [
        "tokenize",
        str(big_corpus),
        "--tokenizer",
        str(path),
        "--seq-len",
        "256",
        "--shard-size",
        "64KB",
        "--val-fraction",
        "0.05",
    ]
    ref = tmp_path / "ref"
    assert CliRunner().invoke(main, [*args, "--out", str(ref)]).exit_code == 0
    out = tmp_path / "run"
    journal = kill_9_after_first_shard(args, out)
    assert journal.exists(), "the run ended before any shard was finished; corpus too small"
    assert not (out / "manifest.json").exists()
    done_before = json.loads(journal.read_text())["streams"]
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert files_digest(out) == files_digest(ref)
    assert not journal.exists()
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    assert sum(len(s["shards"]) for s in done_before.values()) >= 1


def test_cancel_keeps_finished_shards_and_resumes(
    trained, big_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import threading

    path, _ = trained
    kw = {"seq_len": 256, "shard_size": "64KB", "threads": 1}
    ref = dataprep.tokenize(big_corpus, path, tmp_path / "ref", **kw)
    progress = dataprep.Progress()
    out = tmp_path / "run"

    def cancel_after_first_shard() -> None:
        while not (out / ".dataprep-journal.json").exists():
            time.sleep(0.001)
        progress.cancel()

    threading.Thread(target=cancel_after_first_shard, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        dataprep.tokenize(big_corpus, path, out, progress=progress, **kw)
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    m = dataprep.tokenize(big_corpus, path, out, **kw)
    assert m == ref | {"config": m["config"]} and files_digest(out) == files_digest(
        tmp_path / "ref"
    )


@pytest.mark.parametrize("damage", ["delete", "alter"])
def test_rerun_refuses_a_finished_shard_deleted_or_altered(
    trained, big_corpus: Path, tmp_path: Path, damage: str
) -> None:  # type: ignore[no-untyped-def]
    import threading

    path, _ = trained
    kw = {"seq_len": 256, "shard_size": "64KB", "threads": 1}
    progress = dataprep.Progress()
    out = tmp_path / "run"
    journal = out / ".dataprep-journal.json"

    def cancel_after_first_shard() -> None:
        while not journal.exists():
            time.sleep(0.001)
        progress.cancel()

    def spoil(shard: Path) -> None:
        if damage == "delete":
            shard.unlink()
        else:
            data = bytearray(shard.read_bytes())
            data[len(data) // 2] ^= 1  # same size, other bytes
            shard.write_bytes(bytes(data))

    threading.Thread(target=cancel_after_first_shard, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        dataprep.tokenize(big_corpus, path, out, progress=progress, **kw)
    listed = [
        s["file"]
        for st in json.loads(journal.read_text())["streams"].values()
        for s in st["shards"]
    ]
    spoil(out / listed[0])
    with pytest.raises(dataprep.DataprepError, match="remove the output directory") as e:
        dataprep.tokenize(big_corpus, path, out, **kw)
    assert listed[0] in str(e.value)
    # A complete directory: its shards are checked before "already complete".
    done = tmp_path / "done"
    m = dataprep.tokenize(big_corpus, path, done, **kw)
    shard = m["splits"]["train"]["shards"][-1]["file"]
    spoil(done / shard)
    with pytest.raises(dataprep.DataprepError, match="remove the output directory") as e:
        dataprep.tokenize(big_corpus, path, done, **kw)
    assert shard in str(e.value)


def test_other_options_on_the_same_out_are_refused(
    trained, demo_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    out = tmp_path / "s"
    dataprep.tokenize(demo_corpus, path, out, seq_len=64)
    again = dataprep.tokenize(demo_corpus, path, out, seq_len=64)  # complete: returns at once
    assert again["splits"]["train"]["rows"] > 0
    with pytest.raises(dataprep.DataprepError, match="holds shards made with other options"):
        dataprep.tokenize(demo_corpus, path, out, seq_len=32)


@pytest.mark.parametrize(
    "setup,message",
    [
        ("empty_file", "no text found"),
        ("empty_dir", "directory contains no files"),
        ("bad_utf8_error", "invalid UTF-8"),
        ("wordpiece", "no EOS token found"),
        ("no_eos", "no EOS token found"),
    ],
)
def test_bad_inputs_give_one_line_errors(trained, tmp_path: Path, setup: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    corpus = tmp_path / "c"
    corpus.mkdir()
    args: list[str] = []
    tok = str(path)
    if setup == "empty_file":
        (corpus / "a.txt").write_text("")
    elif setup == "bad_utf8_error":
        (corpus / "a.txt").write_bytes(b"ok \xff\xfe")
        args = ["--invalid-utf8", "error"]
    elif setup in ("wordpiece", "no_eos"):
        (corpus / "a.txt").write_text("hello")
        if setup == "wordpiece":
            import tokenizers

            wp = tokenizers.Tokenizer(tokenizers.models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
            tok = str(tmp_path / "wp.json")
            wp.save(tok)
        else:
            tok = str(tmp_path / "plain.json")
            dataprep.train_bpe(corpus, 260, out=tok, tiktoken=False)
    target = corpus if setup != "empty_dir" else tmp_path / "empty"
    if setup == "empty_dir":
        target.mkdir()
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main, ["tokenize", str(target), "--tokenizer", tok, "--out", str(out), *args]
    )
    assert r.exit_code == 1 and message in r.output, r.output
    assert r.output.strip().count("\n") == 0
    assert not out.exists() or not [
        p for p in os.listdir(out) if p.endswith(".arrow") or ".tmp-" in p
    ]


def test_invalid_utf8_replaced_is_recorded(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    (tmp_path / "a.txt").write_bytes(b"good text\n\nbad \xff text\n\n   \n\nmore")
    m = dataprep.tokenize(
        tmp_path / "a.txt", path, tmp_path / "s", seq_len=16, text_unit="paragraph"
    )
    assert m["documents"]["read"] == 3 and m["documents"]["invalid_utf8_replaced"] == 1
    m = dataprep.tokenize(
        tmp_path / "a.txt",
        path,
        tmp_path / "s2",
        seq_len=16,
        text_unit="paragraph",
        invalid_utf8="skip",
    )
    assert m["documents"]["read"] == 2 and m["documents"]["skipped"]["invalid_utf8"] == 1


def test_dedup_before_encoding_is_counted_in_the_manifest(
    trained, demo_texts: list[str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, tok = trained
    originals = demo_texts[:10]
    near = [t.replace(" the ", " a ", 1) for t in originals[:3]]  # one word changed: Jaccard ~0.99
    docs = [*originals, *originals[:4], *near]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    exact = dataprep.tokenize(src, path, tmp_path / "e", seq_len=64, dedup="exact")
    assert exact["documents"]["skipped"]["exact_duplicate"] == 4
    assert exact["documents"]["train"] == len(docs) - 4
    near_m = dataprep.tokenize(src, path, tmp_path / "n", seq_len=64, dedup="near")
    assert near_m["documents"]["skipped"]["exact_duplicate"] == 4
    assert near_m["documents"]["skipped"]["near_duplicate"] == 3
    assert near_m["config"]["dedup"] == "near"
    ids, _, n = rows_of(tmp_path / "n", "train")
    stream = [t for r in range(len(ids)) for t in ids[r, : n[r]].tolist()]
    assert stream == [
        t for d in originals for t in [*tok.encode(d), tok.special_id("<|endoftext|>")]
    ]
    none = dataprep.tokenize(src, path, tmp_path / "0", seq_len=64)
    assert none["documents"]["skipped"]["exact_duplicate"] == 0 and none["documents"][
        "train"
    ] == len(docs)


def test_binary_files_and_truncated_documents_reach_manifest_and_summary(
    trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = trained
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("plain text here")
    (corpus / "b.so").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    (corpus / "wiki_00").write_text('<doc id="1" url="u" title="T">\nT\n\nCut sho')
    out = tmp_path / "s"
    r = CliRunner().invoke(
        main, ["tokenize", str(corpus), "--tokenizer", str(path), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "1 binary files" in text and str(corpus / "b.so") in text, r.output
    assert "truncated: 1 documents without </doc>" in text and "replaced: 0" in text, r.output
    docs = json.loads((out / "manifest.json").read_text())["documents"]
    assert docs["read"] == 2 and docs["truncated_documents"] == 1
    assert docs["binary_skipped"] == 1 and docs["binary_skipped_paths"] == [str(corpus / "b.so")]
    assert dataprep.Manifest.read(out).documents.binary_skipped == 1
