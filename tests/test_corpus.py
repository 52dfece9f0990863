"""Corpus readers: formats, compression, UTF-8 policies and errors, seen from Python."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dataprep

WIKI = (
    '<doc id="7" url="u" title="First">\nFirst\n\nBody one.\n</doc>\n'
    '<doc id="8" url="u" title="Second">\nSecond\n\nBody two.\n</doc>\n'
)


def texts(path: Path | list[Path], **kw: str) -> list[str]:
    paths = path if isinstance(path, list) else [path]
    docs, _ = dataprep.read_documents([str(p) for p in paths], **kw)
    return [d["text"] for d in docs]


def test_wiki_blocks_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "wiki_00").write_text(WIKI)
    docs, stats = dataprep.read_documents([str(tmp_path)])
    assert [d["title"] for d in docs] == ["First", "Second"]
    assert [d["id"] for d in docs] == ["7", "8"]
    assert docs[1]["text"] == "Second\n\nBody two."
    assert stats["documents"] == 2 and stats["files"] == 1


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_inputs_read_the_same(tmp_path: Path, opener, suffix: str) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "wiki_00"
    plain.write_text(WIKI)
    packed = tmp_path / f"wiki_01{suffix}"
    with opener(packed, "wt") as f:
        f.write(WIKI)
    assert texts(packed) == texts(plain)


def test_text_file_or_paragraphs(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\ntwo\n\n\nthree\n   \nfour")
    assert texts(p) == ["one\ntwo\n\n\nthree\n   \nfour"]
    assert texts(p, text_unit="paragraph") == ["one\ntwo", "three", "four"]


def test_jsonl_field_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"id": i, "body": f"doc {i}"}) for i in range(3)) + "\n\n")
    docs, _ = dataprep.read_documents([str(p)], jsonl_field="body")
    assert [d["text"] for d in docs] == ["doc 0", "doc 1", "doc 2"]
    assert docs[2]["id"] == "2"
    with pytest.raises(dataprep.DataprepError, match=r"d\.jsonl: line 1: no field \"text\""):
        dataprep.read_documents([str(p)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(dataprep.DataprepError, match=r"bad\.jsonl: line 2: not a JSON object"):
        dataprep.read_documents([str(bad)])


def test_parquet_column(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["a b", None, "c d"], "n": [1, 2, 3]}), p)
    assert texts(p, parquet_column="content") == ["a b", "c d"]
    with pytest.raises(dataprep.DataprepError, match=r"d\.parquet: no column \"text\""):
        dataprep.read_documents([str(p)])


@pytest.mark.parametrize("policy", ["replace", "skip", "error"])
def test_invalid_utf8_policy(tmp_path: Path, policy: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine\n\nbroken \xc3\x28 here\n\nalso fine")
    if policy == "error":
        with pytest.raises(dataprep.DataprepError, match=r"bad\.txt: invalid UTF-8 in paragraph 2"):
            dataprep.read_documents([str(p)], text_unit="paragraph", invalid_utf8=policy)
        return
    docs, stats = dataprep.read_documents([str(p)], text_unit="paragraph", invalid_utf8=policy)
    if policy == "replace":
        assert [d["text"] for d in docs][1] == "broken \ufffd( here"
        assert stats["invalid_utf8_replaced"] == 1
    else:
        assert len(docs) == 2 and stats["invalid_utf8_skipped"] == 1


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(dataprep.DataprepError, match="nope: No such file"):
        dataprep.read_documents([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(dataprep.DataprepError, match="empty: directory contains no files"):
        dataprep.read_documents([str(tmp_path / "empty")])


def test_corrupt_compressed_file_names_it(tmp_path: Path) -> None:
    p = tmp_path / "x.txt.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip")
    with pytest.raises(dataprep.DataprepError, match=r"x\.txt\.gz"):
        dataprep.read_documents([str(p)])


@pytest.mark.parametrize("policy", ["replace", "skip", "error"])
def test_lone_surrogate_follows_the_invalid_utf8_policy(tmp_path: Path, policy: str) -> None:
    p = tmp_path / "s.jsonl"
    # A pair (an emoji), an escaped backslash before "ud800" (plain text), then a lone surrogate.
    p.write_text(
        '{"text": "pair \\ud83d\\ude00 ok", "id": 1}\n'
        '{"text": "not one \\\\ud800", "id": 2}\n'
        '{"text": "lone \\ud800 here", "id": 3}\n'
    )
    if policy == "error":
        with pytest.raises(dataprep.DataprepError, match=r"s\.jsonl: line 3: lone surrogate"):
            dataprep.read_documents([str(p)], invalid_utf8=policy)
        return
    docs, stats = dataprep.read_documents([str(p)], invalid_utf8=policy)
    got = [d["text"] for d in docs]
    assert got[:2] == ["pair \U0001f600 ok", "not one \\ud800"]
    if policy == "replace":
        assert got[2] == "lone \ufffd here" and stats["invalid_utf8_replaced"] == 1
    else:
        assert len(got) == 2 and stats["invalid_utf8_skipped"] == 1


def test_binary_files_are_skipped_counted_and_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("real text")
    (tmp_path / "b.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "c.dat").write_bytes(
        bytes([0xFF, 0xFE, 0x80, 0x41]) * 1000
    )  # no NUL, mostly invalid
    (tmp_path / "d.txt").write_bytes(b"caf\xe9 au lait " * 100)  # Latin-1 text: replaced, kept
    docs, stats = dataprep.read_documents([str(tmp_path)])
    assert [d["text"][:4] for d in docs] == ["real", "caf\ufffd"]
    assert stats["binary_skipped"] == 2 and stats["files"] == 2
    assert stats["binary_skipped_paths"] == [str(tmp_path / "b.bin"), str(tmp_path / "c.dat")]
    assert stats["invalid_utf8_replaced"] == 1


def test_truncated_wiki_document_is_kept_and_counted(tmp_path: Path) -> None:
    (tmp_path / "wiki_00").write_text(WIKI + '<doc id="9" url="u" title="Cut">\nCut\n\nBody th')
    docs, stats = dataprep.read_documents([str(tmp_path)])
    assert [d["text"] for d in docs][-1] == "Cut\n\nBody th"
    assert stats["truncated_documents"] == 1
    docs, stats = dataprep.read_documents([str(tmp_path / "wiki_00")], format="wiki")
    assert len(docs) == 3 and stats["truncated_documents"] == 1
