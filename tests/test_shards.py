"""dataprep.shards: the manifest parser (typed, strict), verification against the manifest with
messages naming the shard, documents rebuilt exactly, zero-copy views, random access."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import dataprep
from dataprep import Manifest, ShardSet
from dataprep.cli import main

SEQ_LEN = 16


@pytest.fixture(scope="module")
def clm_dir(tmp_path_factory, demo_corpus: Path, trained) -> Path:  # type: ignore[no-untyped-def]
    """Causal shards of the demo corpus: several shards of several record batches (1,024 rows)."""
    out = tmp_path_factory.mktemp("clm") / "shards"
    dataprep.tokenize(
        demo_corpus, trained[0], out, seq_len=SEQ_LEN, shard_size="40KB", val_fraction=0.1
    )
    return out


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory, demo_corpus: Path, specials_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("mlm") / "shards"
    dataprep.tokenize(
        demo_corpus,
        specials_tokenizer[0],
        out,
        seq_len=64,
        objective="mlm",
        layout="nsp",
        nsp_block_docs=8,
        static_masking=True,
    )
    return out


@pytest.fixture
def copy(tmp_path: Path, clm_dir: Path) -> Path:
    """A copy of the causal shards to break."""
    return Path(shutil.copytree(clm_dir, tmp_path / "copy"))


def as_json(m: Manifest) -> dict[str, Any]:
    """The manifest back as JSON, as the writer leaves out absent MLM fields."""
    d = json.loads(json.dumps(dataclasses.asdict(m), default=str))
    del d["path"]
    return {k: v for k, v in d.items() if not (k in ("layout", "mlm") and v is None)}


def rewrite(directory: Path, change: Any) -> None:
    """Applies `change` to the decoded manifest.json of `directory` and writes it back, with its
    checksum recomputed (as a writer would): what is left to catch is the content itself."""
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    data["manifest_sha256"] = "0" * 64
    raw = json.dumps(data).encode()
    path.write_bytes(raw.replace(b"0" * 64, hashlib.sha256(raw).hexdigest().encode(), 1))


def test_a_flipped_manifest_byte_is_caught_by_its_checksum(copy: Path) -> None:
    path = copy / "manifest.json"
    raw = bytearray(path.read_bytes())
    assert json.loads(raw)["manifest_sha256"]
    at = raw.index(b'"documents"') + 20  # inside a count: still valid JSON
    raw[at : at + 1] = b"9" if raw[at : at + 1] != b"9" else b"8"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"manifest\.json: checksum mismatch"):
        Manifest.read(copy)


# --- Manifest -----------------------------------------------------------------------------


def test_manifest_keeps_every_field_typed(clm_dir: Path, mlm_dir: Path) -> None:
    for d in (clm_dir, mlm_dir):
        m = Manifest.read(d)
        assert as_json(m) == json.loads((d / "manifest.json").read_text())
        assert m == Manifest.read(d / "manifest.json") and m.directory == d
    c = Manifest.read(clm_dir)
    assert (c.objective, c.seq_len, c.dtype, c.layout, c.mlm) == (
        "clm",
        SEQ_LEN,
        "uint16",
        None,
        None,
    )
    assert isinstance(c.splits["train"].shards, tuple) and len(c.splits["train"].shards) > 3
    assert c.tokenizer_path == clm_dir / "tok.json" and c.tokenizer_path.is_file()
    eos = 998  # `trained`: 1,000 ids, the specials last (<|endoftext|>, [MASK])
    assert c.special_token_ids() == {
        "eos": eos,
        "bos": None,
        "pad": eos,
        "cls": None,
        "sep": None,
        "mask": None,
    }
    assert c.shard_paths("val") == [clm_dir / s.file for s in c.splits["val"].shards]
    m = Manifest.read(mlm_dir)
    assert (m.objective, m.layout) == ("mlm", "nsp")
    assert m.mlm is not None and m.mlm.static_masking is not None
    assert m.mlm.static_masking.strategy == "bernoulli" and m.mlm.nsp_block_docs == 8
    assert m.special_token_ids() == {
        "eos": 3,
        "bos": 2,
        "pad": 1,
        "cls": 2,
        "sep": 3,
        "mask": 4,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(schema_version=2),
            r"schema version 2, this version of dataprep reads 1",
        ),
        (lambda d: d.pop("seq_len"), r"not a valid manifest \(missing field 'seq_len'\)"),
        (lambda d: d.update(extra=1), r"not a valid manifest \(unknown field 'extra'\)"),
        (
            lambda d: d["tokenizer"].update(vocab_size="1000"),
            r"tokenizer\.vocab_size is a str \(\"1000\"\), expected int",
        ),
        (lambda d: d.update(objective="t5"), r"objective is a str \(\"t5\"\), expected one of"),
        (
            lambda d: d["splits"]["train"]["shards"][0].update(rows=True),
            r"splits\.train\.shards\[0\]\.rows is a bool",
        ),
        (
            lambda d: d["splits"]["train"].update(rows=d["splits"]["train"]["rows"] + 1),
            r"split 'train' says \d+ rows, its shards \d+",
        ),
        (lambda d: d.update(layout="nsp"), r"objective clm takes no 'mlm' and 'layout' fields"),
    ],
)
def test_manifest_refuses_what_it_does_not_know(copy: Path, change: Any, message: str) -> None:
    rewrite(copy, change)
    with pytest.raises(ValueError, match=rf"^{copy / 'manifest.json'}: .*{message}") as e:
        Manifest.read(copy)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=message):
        ShardSet(copy)


def test_manifest_counts_added_later_default_to_zero(copy: Path) -> None:
    docs = json.loads((copy / "manifest.json").read_text())["documents"]
    assert (docs["truncated_documents"], docs["binary_skipped"], docs["binary_skipped_paths"]) == (
        0,
        0,
        [],
    )
    new = ("truncated_documents", "binary_skipped", "binary_skipped_paths")
    rewrite(copy, lambda d: [d["documents"].pop(k) for k in new])  # a manifest from before them
    m = Manifest.read(copy)
    assert (m.documents.truncated_documents, m.documents.binary_skipped) == (0, 0)
    assert m.documents.binary_skipped_paths == ()


def test_manifest_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json: no manifest\.json"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a valid manifest \(the manifest is a list"):
        Manifest.read(tmp_path)


# --- verification -------------------------------------------------------------------------


def test_verify_accepts_what_tokenize_wrote(clm_dir: Path, mlm_dir: Path) -> None:
    assert ShardSet(clm_dir).verify() == ShardSet(clm_dir, "val").verify() == []
    assert Manifest.read(mlm_dir).verify() == []


def test_verify_names_the_shard_with_a_flipped_byte(copy: Path) -> None:
    s = ShardSet(copy)
    shard = s.files[2]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    assert len(problems := s.verify()) == 1
    assert problems[0].startswith(f"{shard}: checksum mismatch (sha256 ")
    assert ShardSet(copy, "val").verify() == []
    # Shared out over 3 processes (the trainer's ranks): each file is checked by exactly one.
    m = Manifest.read(copy)
    # The list is the tokenizer copy, then the shards: train-00002 is file 3.
    assert [m.verify(part=(k, 3)) for k in range(3)] == [problems, [], []]
    with pytest.raises(ValueError, match="part 3 of 3"):
        m.verify(part=(3, 3))


def test_missing_shard(copy: Path) -> None:
    shard = copy / "train-00003.arrow"
    shard.unlink()
    assert Manifest.read(copy).verify() == [f"{shard}: missing (listed in the manifest)"]
    with pytest.raises(FileNotFoundError, match=rf"^{shard}: shard listed in .*manifest\.json"):
        ShardSet(copy)
    r = CliRunner().invoke(main, ["inspect", str(copy)])
    assert r.exit_code == 1 and "train-00003.arrow: missing" in r.output, r.output


def test_wrong_row_and_token_counts_name_the_shard(copy: Path) -> None:
    def more_rows(d: dict[str, Any]) -> None:
        d["splits"]["train"]["shards"][1]["rows"] += 1
        d["splits"]["train"]["rows"] += 1

    rewrite(copy, more_rows)
    s = ShardSet(copy)
    rows = s.manifest.splits["train"].shards[1].rows
    assert s.verify() == [f"{s.files[1]}: {rows - 1} rows, the manifest says {rows}"]
    with pytest.raises(ValueError, match=rf"^{s.files[1]}: {rows - 1} rows, the manifest says"):
        s.gather([int(s._starts[1])])
    assert s.gather([0])["input_ids"].shape == (1, SEQ_LEN), "the other shards still read"

    def more_tokens(d: dict[str, Any]) -> None:
        d["splits"]["val"]["shards"][0]["tokens"] += 5
        d["splits"]["val"]["tokens"] += 5

    rewrite(copy, more_tokens)
    v = ShardSet(copy, "val")
    tokens = v.manifest.splits["val"].shards[0].tokens
    assert v.verify() == [f"{v.files[0]}: {tokens - 5} tokens, the manifest says {tokens}"]


def test_verify_checks_the_tokenizer_copy(copy: Path) -> None:
    tok = copy / "tok.json"
    tok.write_text(tok.read_text().replace("<|endoftext|>", "<|endoftext?>"))
    (problem,) = Manifest.read(copy).verify()
    assert problem.startswith(f"{tok}: checksum mismatch")
    tok.unlink()
    assert ShardSet(copy).verify() == [f"{tok}: tokenizer copy missing (listed in the manifest)"]


def test_truncated_shard(copy: Path) -> None:
    shard = copy / "train-00000.arrow"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:-10])
    assert Manifest.read(copy).verify() == [f"{shard}: {size - 10} bytes, the manifest says {size}"]


# --- reading ------------------------------------------------------------------------------


def test_documents_are_exactly_the_packed_documents(
    clm_dir: Path, trained, demo_texts: list[str]
) -> None:  # type: ignore[no-untyped-def]
    _, tok = trained
    s = ShardSet(clm_dir)
    docs = [d.tolist() for d in s.documents()]
    m = s.manifest
    assert len(docs) == m.splits["train"].documents
    val = [d.tolist() for d in ShardSet(clm_dir, "val").documents()]
    assert len(val) == m.splits["val"].documents > 0
    # Every document is in one of the splits, whole, in corpus order within its split: the
    # token ids of the text and the EOS (this tokenizer has no BOS).
    expected = [[*tok.encode(t), tok.special_id("<|endoftext|>")] for t in demo_texts]
    assert sorted(docs + val) == sorted(expected)
    assert docs == [e for e in expected if e in docs]
    assert max(len(d) for d in docs) > 10 * SEQ_LEN, "the test wants documents across rows"


def test_mlm_rows_have_no_documents(mlm_dir: Path) -> None:
    with pytest.raises(ValueError, match="mlm rows record no document boundaries"):
        next(ShardSet(mlm_dir).documents())


def test_batches_are_zero_copy_views_of_the_maps(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    batches = list(s.iter_batches())
    assert len(batches) > len(s.files), "several record batches a shard"
    first = batches[0]["input_ids"]
    assert first.shape[1] == SEQ_LEN and first.dtype == np.uint16
    assert not first.flags.writeable and not first.flags.owndata
    # The same memory every time: views of the mapped shard, never copies.
    again = next(s.iter_batches(["input_ids"]))["input_ids"]
    assert np.shares_memory(first, again)
    row = next(s.iter_rows(["input_ids"]))["input_ids"]
    assert np.shares_memory(row, first) and row.shape == (SEQ_LEN,)
    ids = np.concatenate([b["input_ids"] for b in batches])
    assert np.array_equal(ids, s.gather(np.arange(s.num_rows), ["input_ids"])["input_ids"])
    table = s.table(0)
    assert np.array_equal(dataprep.input_ids(table), ids[: table.num_rows])


def test_rows_match_gather_and_locate(mlm_dir: Path) -> None:
    s = ShardSet(mlm_dir)
    rows = list(s.iter_rows())
    assert len(rows) == s.num_rows
    assert set(rows[0]) == {
        "input_ids",
        "token_type_ids",
        "special_tokens_mask",
        "word_start",
        "n_tokens",
        "nsp_label",
        "labels",
    }
    pick = [s.num_rows - 1, 0, 7, 7]
    got = s.gather(pick)
    for i, r in enumerate(pick):
        for name, value in rows[r].items():
            assert np.array_equal(got[name][i], value), name
    path, local = s.locate(s.num_rows - 1)
    assert path == s.files[-1] and local == s.manifest.splits["train"].shards[-1].rows - 1
    with pytest.raises(IndexError, match="out of range"):
        s.locate(s.num_rows)
    assert s.decode(0).startswith("[CLS]")


def test_pickled_shardset_reopens_its_maps(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    before = s.gather([3, 1])
    _ = s.special_ids  # loads the tokenizer, which does not pickle
    again = pickle.loads(pickle.dumps(s))
    assert again._open == {} and again.manifest == s.manifest
    assert np.array_equal(again.gather([3, 1])["input_ids"], before["input_ids"])
    assert again.special_ids == s.special_ids == (998, 999)  # `trained`'s specials, last


def test_inspect_shows_the_summary_and_decoded_rows(clm_dir: Path) -> None:
    r = CliRunner().invoke(main, ["inspect", str(clm_dir), "--rows", "3"])
    assert r.exit_code == 0, r.output
    assert "OK" in r.output and "train-00000.arrow row 2:" in r.output
    r = CliRunner().invoke(main, ["inspect", str(clm_dir), "--no-verify", "--rows", "0"])
    assert r.exit_code == 0 and "skipped" in r.output and "row 0" not in r.output, r.output
