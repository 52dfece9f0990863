"""`dataprep export`: each format read back by its own trainer's reader (megatron-core's
`IndexedDataset`, mosaicml-streaming's `StreamingDataset`, `datasets`/pyarrow for Parquet) gives
exactly the documents of the shards, as `ShardSet.documents()` (the shard reader's own, row by
row) rebuilds them; and the output directory's promises: checksums, resume, refusals.

Each format is also checked against its published layout without the reader (the `*_layout`
tests), so that a missing reader leaves the bytes tested. The readers are installed by
`make install` (`pip install --no-deps megatron-core mosaicml-streaming`); a test that needs one
is skipped only when the import fails, with the reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from s3server import S3Server

import dataprep
from dataprep import storage
from dataprep.cli import main
from dataprep.export import (
    FORMATS,
    JOURNAL,
    ExportError,
    _BinWriter,
    _Lock,
    _MdsWriter,
    _MegatronWriter,
    _ParquetWriter,
    export,
    read_bin,
    read_export,
)

SPLITS = ("train", "val")


def _import(module: str) -> Any:
    """The module, or a skip that says why (the readers come from `make install`)."""
    try:
        with warnings.catch_warnings():
            # megatron-core warns at import (no Transformer Engine or Apex, deprecated imports
            # of its own modules): about itself, not about reading an indexed dataset.
            warnings.simplefilter("ignore")
            return __import__(module, fromlist=["_"])
    except Exception as e:  # an import can fail with anything from a missing dependency
        pytest.skip(
            f"{module} does not import here ({type(e).__name__}: {e}); `make install` installs it"
        )


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, demo_corpus: Path, trained: tuple[Path, Any]
) -> Path:
    """Causal shards of the demo corpus: several shards, a padded last row, both splits."""
    out = tmp_path_factory.mktemp("export") / "shards"
    dataprep.tokenize(demo_corpus, trained[0], out, seq_len=96, val_fraction=0.2, shard_size="40KB")
    m = dataprep.Manifest.read(out)
    assert len(m.splits["train"].shards) > 1 and m.splits["val"].rows > 0
    return out


@pytest.fixture(scope="module")
def documents(shards: Path) -> dict[str, list[list[int]]]:
    """The documents each split holds, from the shard reader."""
    return {s: [d.tolist() for d in dataprep.ShardSet(shards, s).documents()] for s in SPLITS}


def _digests(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


# --- megatron -----------------------------------------------------------------------------


def _read_megatron_idx(path: Path) -> tuple[np.dtype[Any], Any, Any, Any]:
    """The `.idx` layout of megatron/core/datasets/indexed_dataset.py (`_IndexWriter`)."""
    raw = path.read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack("<Q", raw[9:17])
    assert version == 1
    code = raw[17]
    dtype = np.dtype({8: "uint16", 4: "int32"}[code])
    n, docs = struct.unpack("<QQ", raw[18:34])
    at = 34
    lengths = np.frombuffer(raw, "<i4", n, at)
    pointers = np.frombuffer(raw, "<i8", n, at + 4 * n)
    indices = np.frombuffer(raw, "<i8", docs, at + 12 * n)
    assert len(raw) == at + 12 * n + 8 * docs
    return dtype, lengths, pointers, indices


def test_megatron_layout(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path
) -> None:
    export(shards, tmp_path, "megatron")
    for split in SPLITS:
        dtype, lengths, pointers, indices = _read_megatron_idx(tmp_path / f"{split}.idx")
        docs = documents[split]
        assert dtype == np.uint16  # a 1,000-id vocabulary
        assert lengths.tolist() == [len(d) for d in docs]
        assert pointers.tolist() == (np.cumsum([0, *lengths[:-1]]) * 2).tolist()
        assert indices.tolist() == list(range(len(docs) + 1))
        tokens = np.fromfile(tmp_path / f"{split}.bin", dtype)
        assert tokens.tolist() == [t for d in docs for t in d]


def test_megatron_reader(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path
) -> None:
    mod = _import("megatron.core.datasets.indexed_dataset")
    export(shards, tmp_path, "megatron")
    for split in SPLITS:
        ds = mod.IndexedDataset(str(tmp_path / split))
        docs = documents[split]
        assert len(ds) == len(docs)
        assert ds.document_indices.tolist() == list(range(len(docs) + 1))
        assert [ds[i].tolist() for i in range(len(ds))] == docs
        # A piece of a document, as GPTDataset reads its samples across document boundaries.
        assert ds.get(1, offset=2, length=3).tolist() == docs[1][2:5]


def test_megatron_builder_bytes(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path
) -> None:
    """Byte for byte what Megatron's own writer (`IndexedDatasetBuilder`, as
    `tools/preprocess_data.py` drives it: one item per document, then `end_document`) writes."""
    mod = _import("megatron.core.datasets.indexed_dataset")
    torch = _import("torch")
    export(shards, tmp_path / "ours", "megatron")
    for split in SPLITS:
        prefix = tmp_path / f"theirs-{split}"
        builder = mod.IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
        for doc in documents[split]:
            builder.add_item(torch.tensor(doc, dtype=torch.int64))
            builder.end_document()
        builder.finalize(f"{prefix}.idx")
        for ext in ("bin", "idx"):
            ours = (tmp_path / "ours" / f"{split}.{ext}").read_bytes()
            assert ours == Path(f"{prefix}.{ext}").read_bytes(), (split, ext)


# --- mds ----------------------------------------------------------------------------------


def _read_mds(split_dir: Path) -> list[list[int]]:
    """MDS shards decoded by their layout (streaming/base/format/mds): no reader involved."""
    index = json.loads((split_dir / "index.json").read_text())
    assert index["version"] == 2
    out: list[list[int]] = []
    for shard in index["shards"]:
        assert shard["column_encodings"] == ["ndarray:uint16"] and shard["zip_data"] is None
        raw = (split_dir / shard["raw_data"]["basename"]).read_bytes()
        assert len(raw) == shard["raw_data"]["bytes"]
        # A sample larger than the limit gets a shard of its own.
        assert len(raw) <= shard["size_limit"] or shard["samples"] == 1
        n = int(np.frombuffer(raw, np.uint32, 1)[0])
        assert n == shard["samples"]
        offsets = np.frombuffer(raw, np.uint32, n + 1, 4)
        for a, b in itertools.pairwise(offsets):
            sample = raw[a:b]
            (size,) = struct.unpack("<I", sample[:4])
            datum = sample[4:]
            assert size == len(datum)
            ndim, shape_code = datum[0] >> 2, datum[0] & 3
            assert ndim == 1
            width = 1 << shape_code
            length = int.from_bytes(datum[1 : 1 + width], "little")
            values = np.frombuffer(datum[1 + width :], np.uint16)
            assert values.size == length
            out.append(values.tolist())
    return out


def test_mds_layout(shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path) -> None:
    summary = export(shards, tmp_path, "mds", mds_shard_bytes=4096)
    assert len(summary["splits"]["train"]["files"]) > 3  # several shards and the index
    for split in SPLITS:
        assert _read_mds(tmp_path / split) == documents[split]


def test_mds_reader(shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path) -> None:
    streaming = _import("streaming")
    # Above the largest sample: MDSWriter writes an empty shard before a sample larger than
    # its limit (we do not), so that the byte comparison below holds.
    limit = max(2 * len(d) for d in documents["train"]) + 1024
    summary = export(shards, tmp_path / "ours", "mds", mds_shard_bytes=limit)
    assert len(summary["splits"]["train"]["files"]) > 2  # several shards and the index
    for split in SPLITS:
        ds = streaming.StreamingDataset(
            local=str(tmp_path / "ours"), split=split, shuffle=False, batch_size=1
        )
        assert [ds[i]["input_ids"].tolist() for i in range(len(ds))] == documents[split]
    # The same bytes as MosaicML's own writer given the same samples and size limit.
    theirs = tmp_path / "theirs" / "train"
    with streaming.MDSWriter(
        columns={"input_ids": "ndarray:uint16"}, out=str(theirs), size_limit=limit
    ) as w:
        for doc in documents["train"]:
            w.write({"input_ids": np.array(doc, np.uint16)})
    assert _digests(theirs) == _digests(tmp_path / "ours" / "train")


# --- parquet ------------------------------------------------------------------------------


def test_parquet_pyarrow(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path
) -> None:
    export(shards, tmp_path, "parquet")
    for split in SPLITS:
        table = pq.read_table(tmp_path / f"{split}.parquet")
        assert table.schema.field("input_ids").type.value_type == pa.uint16()
        assert table.column("input_ids").to_pylist() == documents[split]


def test_parquet_datasets(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path
) -> None:
    datasets = _import("datasets")
    export(shards, tmp_path / "out", "parquet")
    files = {s: str(tmp_path / "out" / f"{s}.parquet") for s in SPLITS}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    for split in SPLITS:
        assert ds[split]["input_ids"] == documents[split]


# --- bin ----------------------------------------------------------------------------------


def test_bin(shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path) -> None:
    export(shards, tmp_path, "bin")
    header = json.loads((tmp_path / "header.json").read_text())
    m = dataprep.Manifest.read(shards)
    assert header["dtype"] == "uint16" and header["tokenizer"]["sha256"] == m.tokenizer.sha256
    assert header["tokenizer"]["vocab_size"] == 1000
    for split in SPLITS:
        tokens, offsets = read_bin(tmp_path, split)
        docs = [tokens[a:b].tolist() for a, b in itertools.pairwise(offsets)]
        assert docs == documents[split]
        # nanoGPT reads the file as it is.
        flat = np.memmap(tmp_path / f"{split}.bin", dtype=np.uint16, mode="r")
        assert flat.size == header["splits"][split]["tokens"] == sum(map(len, docs))


# --- the output directory -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["megatron", "mds", "bin", "parquet"])
def test_manifest_and_rerun(shards: Path, tmp_path: Path, fmt: str) -> None:
    first = export(shards, tmp_path, fmt)
    data = read_export(tmp_path)
    listed = {f["file"] for sp in data["splits"].values() for f in sp["files"]}
    on_disk = set(_digests(tmp_path)) - {"export.json", "header.json"}
    assert listed == on_disk and not first["unchanged"]
    before = _digests(tmp_path)
    again = export(shards, tmp_path, fmt)
    assert again["unchanged"] and _digests(tmp_path) == before


@pytest.mark.parametrize("fmt", ["megatron", "mds", "parquet"])
def test_resume_after_interrupt(shards: Path, tmp_path: Path, fmt: str) -> None:
    clean = tmp_path / "clean"
    export(shards, clean, fmt)

    def stop(split: str, docs: int, tokens: int) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export(shards, out, fmt, on_split=stop)
    assert (out / JOURNAL).is_file() and not (out / "export.json").exists()
    # What a run killed while writing `val` leaves: a temporary file of a dead process.
    (out / ".val.bin.tmp-999999").write_bytes(b"partial")
    summary = export(shards, out, fmt)
    assert summary["resumed"] == ["train"]
    assert _digests(out) == _digests(clean)


def test_changed_export_is_refused(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "bin")
    with open(tmp_path / "train.bin", "r+b") as f:
        f.write(b"\xff\xff")
    with pytest.raises(ExportError, match=r"train\.bin: changed since it was written"):
        export(shards, tmp_path, "bin")
    clean = tmp_path / "clean"
    export(shards, clean, "bin")
    (clean / "header.json").write_text("{}")
    with pytest.raises(ExportError, match=r"header\.json: changed since it was written"):
        export(shards, clean, "bin")


def test_refusals(
    shards: Path, tmp_path: Path, demo_corpus: Path, specials_tokenizer: tuple[Path, Any]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"holds 'notes.txt'"):
        export(shards, other, "megatron")
    done = tmp_path / "done"
    export(shards, done, "parquet", splits=["val"])
    with pytest.raises(ExportError, match=r"holds 'val.parquet'"):
        export(shards, done, "megatron", splits=["val"])
    with pytest.raises(ExportError, match=r"holds an export of other shards or options"):
        export(shards, done, "parquet", splits=["val", "train"])
    with pytest.raises(ExportError, match=r"^--format 'arrow': not one of megatron, mds, bin"):
        export(shards, tmp_path / "x", "arrow")
    with pytest.raises(ExportError, match=r"^--split 'test': the shards have train, val"):
        export(shards, tmp_path / "x", "bin", splits=["test"])
    with pytest.raises(ExportError, match=r"^--mds-shard-bytes 10: must be between"):
        export(shards, tmp_path / "x", "mds", mds_shard_bytes=10)
    with pytest.raises(ExportError, match=r"^--mds-shard-bytes applies to --format mds only"):
        export(shards, tmp_path / "x", "bin", mds_shard_bytes=4096)
    with pytest.raises(ExportError, match="overlap"):
        export(shards, shards / "exported", "bin")
    locked = tmp_path / "locked"
    locked.mkdir()
    lock = _Lock(locked)
    try:
        with pytest.raises(ExportError, match=r"is being written by dataprep export \(pid"):
            export(shards, locked, "bin")
    finally:
        lock.release()
    mlm = tmp_path / "mlm"
    dataprep.tokenize(demo_corpus, specials_tokenizer[0], mlm, seq_len=64, objective="mlm")
    with pytest.raises(ExportError, match=r"mlm shards .* have no token stream to export"):
        export(mlm, tmp_path / "y", "megatron")


def test_corrupt_shard_is_refused(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    copy.mkdir()
    for p in shards.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    target = copy / "train-00001.arrow"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 1
    target.write_bytes(bytes(raw))
    with pytest.raises(ExportError, match=r"train-00001\.arrow: checksum mismatch"):
        export(copy, tmp_path / "out", "megatron")
    assert not any((tmp_path / "out").glob("*.bin"))


def test_cli(shards: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        main, ["export", str(shards), "--format", "bin", "--out", str(tmp_path / "a")]
    )
    assert ok.exit_code == 0, ok.output
    assert "train" in ok.output and "dtype uint16" in ok.output
    again = runner.invoke(
        main, ["export", str(shards), "--format", "bin", "--out", str(tmp_path / "a")]
    )
    assert again.exit_code == 0 and "already complete" in again.output
    val = runner.invoke(
        main,
        [
            "export",
            str(shards),
            "--format",
            "parquet",
            "--out",
            str(tmp_path / "v"),
            "--split",
            "val",
        ],
    )
    assert val.exit_code == 0 and "not exported: train" in val.output, val.output
    for args, message in [
        (["--format", "hdf5"], "error: --format 'hdf5': not one of"),
        (["--format", "mds", "--mds-shard-bytes", "lots"], "error: --mds-shard-bytes 'lots': not an integer"),
        (["--format", "mds", "--mds-shard-bytes", "-1"], "error: --mds-shard-bytes -1: must be between"),
        (["--format", "bin", "--split", "dev"], "error: --split 'dev'"),
    ]:  # fmt: skip
        bad = runner.invoke(main, ["export", str(shards), "--out", str(tmp_path / "b"), *args])
        assert bad.exit_code == 1 and message in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output


# --- s3:// --out --------------------------------------------------------------------------


@pytest.fixture
def s3_out(s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty prefix on the test server; the local build directory under `tmp_path`."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return f"{s3_env.bucket('export')}/{tmp_path.name}"


def _objects(url: str) -> dict[str, str]:
    return {
        name: hashlib.sha256(storage.read_bytes(f"{url}/{name}")).hexdigest()
        for name, _ in storage.list_files(url)
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_s3_out(shards: Path, tmp_path: Path, s3_out: str, fmt: str) -> None:
    """Every format takes an s3:// --out: the objects are the local export's files, byte for
    byte, uploaded data first, then the indexes, `export.json` last; a rerun uploads nothing."""
    opts: dict[str, Any] = {"mds_shard_bytes": 4096} if fmt == "mds" else {}
    local = tmp_path / "local"
    export(shards, local, fmt, **opts)
    order: list[str] = []
    upload = storage.upload

    def recording(src: Any, url: str) -> int:
        order.append(url.removeprefix(f"{s3_out}/{fmt}/"))
        return upload(src, url)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(storage, "upload", recording)
        summary = export(shards, f"{s3_out}/{fmt}", fmt, **opts)
    files = {k: v for k, v in _digests(local).items() if not k.startswith(".")}
    assert _objects(f"{s3_out}/{fmt}") == files
    assert summary["uploaded"] == {
        "url": f"{s3_out}/{fmt}",
        "objects": len(files),
        "bytes": sum((local / f).stat().st_size for f in files),
    }
    indexes = {"megatron": ["train.idx", "val.idx"], "mds": ["train/index.json", "val/index.json"],
               "bin": ["header.json"], "parquet": []}[fmt]  # fmt: skip
    assert order[-1] == "export.json" and order[-1 - len(indexes) : -1] == indexes
    assert sorted(order) == sorted(files)
    again = export(shards, f"{s3_out}/{fmt}", fmt, **opts)
    assert again["unchanged"] and again["uploaded"]["objects"] == 0


def test_s3_mds_streaming(
    shards: Path, documents: dict[str, list[list[int]]], tmp_path: Path, s3_out: str,
    s3_env: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """MosaicML streaming reads the MDS export from the bucket (its S3 client is boto3's)."""
    streaming = _import("streaming")
    _import("boto3")
    url = f"{s3_out}/mds"
    export(shards, url, "mds", mds_shard_bytes=4096)
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_env.endpoint)  # streaming's own variable
    for split in SPLITS:
        ds = streaming.StreamingDataset(
            remote=url, local=str(tmp_path / "mds-cache" / split), split=split, shuffle=False,
            batch_size=1,
        )  # fmt: skip
        assert [ds[i]["input_ids"].tolist() for i in range(len(ds))] == documents[split]


def test_s3_interrupted_upload(shards: Path, s3_out: str) -> None:
    """A run killed during the upload leaves no `export.json` (readers see no export); the
    rerun uploads the set again and commits it."""
    url = f"{s3_out}/megatron"
    upload = storage.upload
    calls = 0

    def failing(src: Any, dest: str) -> int:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise KeyboardInterrupt
        return upload(src, dest)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(storage, "upload", failing)
        with pytest.raises(KeyboardInterrupt):
            export(shards, url, "megatron")
    names = [n for n, _ in storage.list_files(url)]
    assert names and "export.json" not in names and not any(n.endswith(".idx") for n in names)
    summary = export(shards, url, "megatron")
    assert summary["unchanged"] and summary["uploaded"]["objects"] == 5  # 2 x (bin, idx) + 1
    assert "export.json" in _objects(url)


def test_s3_refusals(shards: Path, tmp_path: Path, s3_out: str) -> None:
    storage.upload(shards / "manifest.json", f"{s3_out}/busy/notes.txt")
    with pytest.raises(ExportError, match=r"holds 'notes.txt', which is not part of a bin export"):
        export(shards, f"{s3_out}/busy", "bin")
    export(shards, f"{s3_out}/mds", "mds", mds_shard_bytes=4096)
    with pytest.raises(ExportError, match=r"holds an export of other shards or options"):
        export(shards, f"{s3_out}/mds", "mds", mds_shard_bytes=8192)
    with pytest.raises(ExportError, match=r"^s3://b/shards: export reads a local shard directory"):
        export("s3://b/shards", tmp_path / "x", "bin")
    with pytest.raises(ExportError, match=r"^gs://b/x: gs:// is not supported"):
        export(shards, "gs://b/x", "bin")
    runner = CliRunner()
    ok = runner.invoke(main, ["export", str(shards), "--format", "parquet", "--out", f"{s3_out}/p"])
    assert ok.exit_code == 0 and "export.json last" in ok.output, ok.output
    again = runner.invoke(
        main, ["export", str(shards), "--format", "parquet", "--out", f"{s3_out}/p"]
    )
    assert again.exit_code == 0 and "nothing uploaded" in again.output, again.output
    bad = runner.invoke(main, ["export", "s3://b/shards", "--format", "bin", "--out", "o"])
    assert bad.exit_code == 1 and bad.output.startswith("error: s3://b/shards: export reads")
    assert len(bad.output.strip().splitlines()) == 1, bad.output


# --- the writers on any cut of the token stream -------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    docs=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    wide=st.booleans(),
)
def test_writers_any_chunking(
    docs: list[int], cuts: list[int], wide: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Documents of random lengths, the stream cut into random chunks (a chunk may hold no
    document start, or several): every writer gives back the documents, for uint16 and for
    uint32 ids (Megatron: int32 from 65,500 ids on)."""
    vocab = 70000 if wide else 1000
    dtype = np.dtype("uint32" if wide else "uint16")
    rng = np.random.default_rng(len(docs) * 100 + sum(cuts))
    expected = [rng.integers(0, vocab, n).astype(dtype) for n in docs]
    stream = np.concatenate(expected)
    starts = np.cumsum([0, *docs[:-1]])
    bounds = sorted({0, *np.cumsum(cuts).tolist(), stream.size} & set(range(stream.size + 1)))
    out = tmp_path_factory.mktemp("w")
    writers = [
        _MegatronWriter(out, "m", dtype, vocab),
        _BinWriter(out, "b", dtype, vocab),
        _ParquetWriter(out, "p", dtype, vocab),
        _MdsWriter(out, "s", dtype, vocab, 64),
    ]
    for w in writers:
        for a, b in itertools.pairwise(bounds):
            local = starts[(starts >= a) & (starts < b)] - a
            w.write(stream[a:b], local.astype(np.int64))
        w.close()
        w.commit()
        assert (w.documents, w.tokens) == (len(docs), stream.size)
    want = [d.tolist() for d in expected]
    mdtype, lengths, pointers, _ = _read_megatron_idx(out / "m.idx")
    assert mdtype == (np.int32 if wide else np.uint16)
    flat = np.fromfile(out / "m.bin", mdtype)
    assert [
        flat[p // mdtype.itemsize :][:n].tolist() for p, n in zip(pointers, lengths, strict=True)
    ] == want
    tokens = np.fromfile(out / "b.bin", dtype)
    offsets = np.fromfile(out / "b.offsets", "<u8")
    assert [tokens[a:b].tolist() for a, b in itertools.pairwise(offsets)] == want
    assert pq.read_table(out / "p.parquet").column("input_ids").to_pylist() == want
    if not wide:  # `_read_mds` decodes uint16
        assert _read_mds(out / "s") == want
