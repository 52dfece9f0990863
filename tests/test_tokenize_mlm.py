"""`tokenize --objective mlm`: row structure in both layouts, every sentence token kept in order,
NSP labels balanced with B from another document when the label says so, determinism across
thread counts, kill -9 and resume, static masking with a dupe factor, and errors."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import files_digest, kill_9_after_first_shard

import dataprep
from dataprep.cli import main

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, CLS, SEP, MASK = 0, 2, 3, 4


@pytest.fixture(scope="module")
def mlm_tok(tmp_path_factory, demo_corpus: Path) -> tuple[Path, dataprep.Tokenizer]:  # type: ignore[no-untyped-def]
    """A 1,000-id tokenizer on the demo corpus with BERT-style specials at ids 0..4, as BERT has
    them (`--specials first`)."""
    out = tmp_path_factory.mktemp("mlmtok") / "tok.json"
    tok, _ = dataprep.train_bpe(
        demo_corpus, 1000, out=out, special_tokens=SPECIALS, specials="first", holdout_every=0
    )
    return out, tok


@pytest.fixture(scope="module")
def tagged_corpus(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """Many short documents whose sentences say which document and line they are:
    `Doc 17 line 3 end` followed by a few words, so decoded rows name their origin."""
    d = tmp_path_factory.mktemp("tagged")
    rng = random.Random(5)
    words = ["apple", "river", "stone", "light", "music", "green", "table", "cloud"]
    doc = 0
    for part in range(4):
        lines = []
        for _ in range(300):
            sents = [
                f"Doc {doc} line {s} end " + " ".join(rng.choices(words, k=rng.randint(1, 6))) + "."
                for s in range(rng.randint(1, 8))
            ]
            lines.append(json.dumps({"text": " ".join(sents)}) + "\n")
            doc += 1
        (d / f"part{part}.jsonl").write_text("".join(lines))
    return d


def table_of(d: Path, split: str = "train") -> pa.Table:
    paths = dataprep.Manifest.read(d).shard_paths(split)
    return pa.concat_tables([pa.ipc.open_stream(pa.memory_map(str(p))).read_all() for p in paths])


def col(t: pa.Table, name: str) -> np.ndarray:
    c = t.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(c.type):
        return c.values.to_numpy().reshape(len(c), c.type.list_size)
    return c.to_numpy()


def check_rows(t: pa.Table, seq_len: int) -> None:
    """[CLS] first, [SEP] after A (and B), token types, special mask, n_tokens and padding."""
    ids, tt, sm = col(t, "input_ids"), col(t, "token_type_ids"), col(t, "special_tokens_mask")
    ws, n, nsp = col(t, "word_start"), col(t, "n_tokens"), col(t, "nsp_label")
    assert ids.shape[1] == seq_len
    for r in range(len(ids)):
        k = int(n[r])
        assert ids[r, 0] == CLS and ids[r, k - 1] == SEP
        assert (ids[r, k:] == PAD).all() and (sm[r, k:] == 1).all() and (tt[r, k:] == 0).all()
        assert (sm[r, :k] == np.isin(ids[r, :k], [CLS, SEP])).all()
        assert (ws[r][sm[r] == 1] == 0).all()
        if nsp[r] == -1:
            assert (tt[r] == 0).all()
        else:
            seps = np.flatnonzero(ids[r, :k] == SEP)
            assert len(seps) == 2 and seps[0] + 1 < seps[1]
            assert (tt[r, : seps[0] + 1] == 0).all() and (tt[r, seps[0] + 1 : k] == 1).all()


def test_full_sentence_rows_keep_every_sentence_token_in_order(
    mlm_tok, demo_corpus: Path, demo_texts: list[str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, tok = mlm_tok
    out = tmp_path / "fs"
    m = dataprep.tokenize(demo_corpus, path, out, seq_len=64, objective="mlm", shard_size="20KB")
    assert m["objective"] == "mlm" and m["layout"] == "full_sentence"
    assert m["mlm"]["cls_id"] == CLS and m["mlm"]["static_masking"] is None
    assert len(m["splits"]["train"]["shards"]) > 1
    t = table_of(out)
    check_rows(t, 64)
    ids, sm, ws, n = (
        col(t, c) for c in ("input_ids", "special_tokens_mask", "word_start", "n_tokens")
    )
    assert (col(t, "nsp_label") == -1).all()
    got_ids = [int(x) for r in range(len(ids)) for x in ids[r, : n[r]][sm[r, : n[r]] == 0]]
    got_ws = [int(x) for r in range(len(ids)) for x in ws[r, : n[r]][sm[r, : n[r]] == 0]]
    exp_ids: list[int] = []
    exp_ws: list[int] = []
    for text in demo_texts:
        for s in dataprep.split_sentences(text):
            i, w = dataprep.encode_with_word_starts(tok, s)
            exp_ids += i.tolist()
            exp_ws += w.tolist()
    assert got_ids == exp_ids and got_ws == exp_ws
    assert m["splits"]["train"]["tokens"] == int(n.sum())
    shard = out / m["splits"]["train"]["shards"][0]["file"]
    t0 = pa.ipc.open_stream(pa.memory_map(str(shard))).read_all()
    assert t0.schema.metadata[b"dataprep.objective"] == b"mlm"
    assert t0.schema.metadata[b"dataprep.layout"] == b"full_sentence"
    ds = datasets.Dataset.from_file(str(shard))
    assert len(ds) == t0.num_rows and ds[0]["input_ids"] == col(t0, "input_ids")[0].tolist()


TAG = re.compile(r"Doc (\d+) line (\d+) end")


def test_nsp_labels_balanced_and_random_b_from_another_document(
    mlm_tok, tagged_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, tok = mlm_tok
    out = tmp_path / "nsp"
    m = dataprep.tokenize(
        tagged_corpus, path, out, seq_len=64, objective="mlm", layout="nsp", nsp_block_docs=64
    )
    assert m["layout"] == "nsp" and m["mlm"]["nsp_block_docs"] == 64
    t = table_of(out)
    check_rows(t, 64)
    ids, n, nsp = col(t, "input_ids"), col(t, "n_tokens"), col(t, "nsp_label")
    checked = {0: 0, 1: 0}
    for r in range(len(ids)):
        row = ids[r, : n[r]].tolist()
        sep = row.index(SEP)
        a = [(int(d), int(s)) for d, s in TAG.findall(tok.decode(row[1:sep]))]
        b = [(int(d), int(s)) for d, s in TAG.findall(tok.decode(row[sep + 1 : -1]))]
        if not a or not b:
            continue  # a tag cut by truncation: nothing to check on this row
        assert len({d for d, _ in a}) == 1, "A comes from one document"
        doc = a[0][0]
        label = int(nsp[r])
        checked[label] += 1
        if label == 1:
            assert all(d != doc for d, _ in b), f"row {r}: random B from A's document"
        else:
            assert label == 0
            assert all(d == doc for d, _ in b), f"row {r}: B is not A's continuation"
            assert min(s for _, s in b) >= max(s for _, s in a)
    total = checked[0] + checked[1]
    assert total > 500, checked
    labels = nsp.tolist()
    share = labels.count(1) / len(labels)
    assert abs(share - 0.5) < 0.05, (share, len(labels))


def test_identical_output_whatever_the_thread_count(
    mlm_tok, tagged_corpus: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path, _ = mlm_tok
    for layout in ("full-sentence", "nsp"):
        digests = []
        for threads in (1, 3):
            out = tmp_path / f"{layout}{threads}"
            dataprep.tokenize(
                tagged_corpus,
                path,
                out,
                seq_len=48,
                val_fraction=0.1,
                shard_size="16KB",
                threads=threads,
                objective="mlm",
                layout=layout,
                static_masking=True,
                # Refused with the full-sentence layout (it does not apply there).
                **({"nsp_block_docs": 32} if layout == "nsp" else {}),
            )
            digests.append(files_digest(out))
        assert digests[0] == digests[1]
        assert len(digests[0]) > 4


@pytest.mark.parametrize("layout", ["full-sentence", "nsp"])
def test_kill_9_then_resume_gives_identical_output(
    mlm_tok, tagged_corpus: Path, tmp_path: Path, layout: str
) -> None:  # type: ignore[no-untyped-def]
    path, _ = mlm_tok
    args = [
        "tokenize",
        str(tagged_corpus),
        "--tokenizer",
        str(path),
        "--objective",
        "mlm",
        "--layout",
        layout,
        "--seq-len",
        "32",
        "--shard-size",
        "4KB",
        "--val-fraction",
        "0.05",
        "--static-masking",
        "--dupe-factor",
        "2",
        # Refused with the full-sentence layout (it does not apply there).
        *(["--nsp-block-docs", "16"] if layout == "nsp" else []),
    ]
    ref = tmp_path / "ref"
    r = CliRunner().invoke(main, [*args, "--out", str(ref)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    journal = kill_9_after_first_shard(args, out)
    assert journal.exists(), "the run ended before any shard was finished; corpus too small"
    assert not (out / "manifest.json").exists()
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert files_digest(out) == files_digest(ref)
    assert not journal.exists()
    assert not [p for p in os.listdir(out) if ".tmp-" in p]


def test_static_masking_with_dupe_factor(mlm_tok, demo_corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = mlm_tok
    kw = {"seq_len": 64, "objective": "mlm", "layout": "nsp", "nsp_block_docs": 8}
    plain = dataprep.tokenize(demo_corpus, path, tmp_path / "plain", **kw)
    m = dataprep.tokenize(
        demo_corpus, path, tmp_path / "masked", static_masking=True, dupe_factor=2, **kw
    )
    assert m["mlm"]["static_masking"]["dupe_factor"] == 2
    assert m["splits"]["train"]["rows"] == 2 * plain["splits"]["train"]["rows"]
    p, t = table_of(tmp_path / "plain"), table_of(tmp_path / "masked")
    orig, ids, labels = col(p, "input_ids"), col(t, "input_ids"), col(t, "labels")
    sm = col(t, "special_tokens_mask")
    assert (col(t, "nsp_label")[::2] == col(p, "nsp_label")).all()
    for k in (0, 1):
        dup_ids, dup_labels = ids[k::2], labels[k::2]
        masked = dup_labels != -100
        # labels hold the original id exactly where masked; elsewhere the input is unchanged
        assert (dup_labels[masked] == orig[masked]).all()
        assert (dup_ids[~masked] == orig[~masked]).all()
        assert not (masked & (sm[k::2] == 1)).any()
        share = masked.sum() / (sm[k::2] == 0).sum()
        assert 0.12 < share < 0.18, share
        assert (dup_ids[masked] == MASK).mean() > 0.7
    assert ((labels[0::2] != -100) != (labels[1::2] != -100)).any(), "dupes share one mask"


def test_mlm_errors(mlm_tok, trained, demo_corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _ = mlm_tok
    causal_tok, _ = trained  # specials <|endoftext|> and [MASK] only
    base = ["tokenize", str(demo_corpus), "--objective", "mlm", "--seq-len", "64"]
    r = CliRunner().invoke(
        main, [*base, "--tokenizer", str(causal_tok), "--out", str(tmp_path / "a")]
    )
    assert r.exit_code == 1 and "no CLS token found" in r.output and str(causal_tok) in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    bare = tmp_path / "bare.json"
    dataprep.train_bpe(
        demo_corpus, 600, out=bare, special_tokens=["[PAD]", "[CLS]", "[SEP]"], holdout_every=0
    )
    args = [*base, "--tokenizer", str(bare), "--out", str(tmp_path / "b")]
    r = CliRunner().invoke(main, [*args, "--static-masking"])
    assert r.exit_code == 1 and "no MASK token found" in r.output and "--mask-token" in r.output
    assert CliRunner().invoke(main, args).exit_code == 0  # no [MASK] is fine without masking
    r = CliRunner().invoke(
        main, [*base, "--tokenizer", str(path), "--out", str(tmp_path / "c"), "--dupe-factor", "2"]
    )
    assert r.exit_code == 1 and "static masking" in r.output
    r = CliRunner().invoke(
        main,
        [*base, "--tokenizer", str(path), "--out", str(tmp_path / "d"), "--cls-token", "<cls>"],
    )
    assert r.exit_code == 1 and "'<cls>' is not a special token" in r.output
    ok = [*base, "--tokenizer", str(path), "--out", str(tmp_path / "e")]
    assert CliRunner().invoke(main, ok).exit_code == 0
    # other MLM options on the same --out: refused, like any other option change
    r = CliRunner().invoke(main, [*ok, "--layout", "nsp"])
    assert r.exit_code == 1 and "other options" in r.output
    r = CliRunner().invoke(
        main, [*ok, "--layout", "nsp", "--seq-len", "4", "--out", str(tmp_path / "f")]
    )
    assert r.exit_code == 1 and "too short" in r.output
