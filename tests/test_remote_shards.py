"""Shards read from object storage (`ShardSet("s3://...")`, dataprep/shard_cache.py) against a
real S3-compatible server: the trainer's loaders yield exactly what a local copy yields, and a
shard that does not match its manifest is refused before any of its rows is used."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import flip
from s3server import S3Server

import dataprep
from dataprep import storage
from dataprep.cli import main as cli
from train import mixture
from train.data import ShardSet, make_eval_loader, make_loader

SEQ_LEN = 64


@pytest.fixture(scope="module")
def local_shards(
    tmp_path_factory: pytest.TempPathFactory,
    demo_corpus: Path,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
) -> Path:
    out = tmp_path_factory.mktemp("remote") / "clm"
    dataprep.tokenize(
        demo_corpus, specials_tokenizer[0], out, seq_len=SEQ_LEN, val_fraction=0.1, threads=1,
        shard_size="12KB",
    )  # fmt: skip
    assert len(ShardSet(out).files) >= 4  # several shards: the order of use matters
    return out


@pytest.fixture
def remote(s3_env: S3Server, local_shards: Path, request: pytest.FixtureRequest) -> str:
    """The local shards uploaded to a prefix of their own."""
    url = f"{s3_env.bucket('shards')}/{request.node.name.replace('[', '-').strip(']')}"
    storage.upload_set(local_shards, url)
    return url


def _batches(loader: Iterator[dict[str, torch.Tensor]] | object) -> list[dict[str, torch.Tensor]]:
    return list(loader)  # type: ignore[call-overload]


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_loader_parity_remote_vs_local_two_ranks(
    remote: str, local_shards: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    kw = {"world_size": 2, "micro_batch": 4, "grad_accum": 2, "seed": 7, "epoch": 1}
    for rank in range(2):
        here = _batches(make_loader(ShardSet(local_shards), rank=rank, **kw))
        there = _batches(make_loader(ShardSet(remote, cache=cache), rank=rank, **kw))
        _same(here, there)
        # Resume mid-epoch on a fresh process's view of the (now full) cache.
        _same(
            _batches(make_loader(ShardSet(local_shards), rank=rank, start_step=3, **kw)),
            _batches(make_loader(ShardSet(remote, cache=cache), rank=rank, start_step=3, **kw)),
        )
        ev = {"rank": rank, "world_size": 2, "micro_batch": 4}
        _same(
            _batches(make_eval_loader(ShardSet(local_shards, "val"), **ev)),
            _batches(make_eval_loader(ShardSet(remote, "val", cache=cache), **ev)),
        )
    # A DataLoader worker process (forked), and a set pickled as under `spawn`.
    forked = ShardSet(remote, cache=cache)
    loader = make_loader(forked, rank=0, num_workers=1, **kw)
    assert forked.remote is not None
    forked.remote.join()  # no fetch thread alive at fork (Python 3.12 warns about those)
    _same(_batches(make_loader(ShardSet(local_shards), rank=0, **kw)), _batches(loader))
    copy = pickle.loads(pickle.dumps(ShardSet(remote, cache=cache)))
    assert copy.remote is not None and copy.remote.url == remote
    rows = list(range(copy.num_rows))
    assert (
        copy.gather(rows)["input_ids"] == ShardSet(local_shards).gather(rows)["input_ids"]
    ).all()
    # The cache is a byte-identical local copy: manifest, tokenizer and every shard.
    mirror = cache / "shards" / remote.split("/")[-1]
    for p in local_shards.iterdir():
        if not p.name.startswith("."):
            assert (mirror / p.name).read_bytes() == p.read_bytes(), p.name


def test_mixture_of_remote_and_local_sets(remote: str, local_shards: Path, tmp_path: Path) -> None:
    specs = mixture.parse_specs((f"{remote}:0.75", f"{local_shards}:0.25"))
    assert [s.path for s in specs] == [remote, os.fspath(local_shards)]
    here = [ShardSet(local_shards), ShardSet(local_shards)]
    there = [ShardSet(remote, cache=tmp_path / "c"), ShardSet(local_shards)]
    mixture.check_sets(there)
    plan = mixture.MixturePlan(
        [s.num_rows for s in here], [0.75, 0.25], world_size=1, grad_accum=1, micro_batch=4
    )
    take = 6

    def first(sets: list[ShardSet]) -> list[dict[str, torch.Tensor]]:
        it = iter(mixture.make_loader(sets, plan, rank=0))
        return [next(it) for _ in range(take)]

    _same(first(here), first(there))


def test_cached_shards_are_reused_and_a_damaged_one_fetched_again(
    remote: str, local_shards: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    s = ShardSet(remote, cache=cache)
    assert s.verify() == []  # downloads every shard
    stamps = {p.name: p.stat().st_mtime_ns for p in s.files}
    again = ShardSet(remote, cache=cache)
    again.fetch_ahead()
    assert again.verify() == []
    assert {p.name: p.stat().st_mtime_ns for p in again.files} == stamps  # hashed, not fetched
    flip(again.files[1])
    third = ShardSet(remote, cache=cache)
    rows = third.gather(list(range(third.num_rows)))
    want = ShardSet(local_shards).gather(list(range(third.num_rows)))
    assert all((rows[k] == want[k]).all() for k in want)
    assert third.files[1].read_bytes() == (local_shards / third.files[1].name).read_bytes()


def test_corrupted_remote_shard_is_refused_before_use(
    remote: str, local_shards: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(local_shards, bad)
    name = ShardSet(bad).files[2].name
    flip(bad / name)
    storage.upload(bad / name, f"{remote}/{name}")  # the manifest still has the old SHA-256
    s = ShardSet(remote, cache=tmp_path / "cache")
    loader = make_loader(s, rank=0, world_size=1, micro_batch=4, grad_accum=1, seed=0, epoch=0)
    with pytest.raises(dataprep.DataprepError) as e:
        _batches(loader)
    msg = str(e.value)
    assert msg.startswith(f"{remote}/{name}: checksum mismatch (sha256 "), msg
    assert msg.endswith(f"does not match {remote}/manifest.json") and "\n" not in msg
    assert s.remote is not None
    s.remote.join()
    assert not (s.directory / name).exists()  # never renamed into the cache
    assert not [p for p in s.directory.iterdir() if p.name.endswith(".part")]


def test_remote_set_errors(s3_env: S3Server, local_shards: Path, tmp_path: Path) -> None:
    base = s3_env.bucket("shards")
    with pytest.raises(FileNotFoundError, match=r"^s3://shards/none/manifest\.json: no manifest"):
        ShardSet(f"{base}/none", cache=tmp_path)
    with pytest.raises(ValueError, match="a shard cache is for s3:// shard sets"):
        ShardSet(local_shards, cache=tmp_path)
    raw = (local_shards / "manifest.json").read_bytes()
    (tmp_path / "m").write_bytes(raw.replace(b'"seq_len": 64', b'"seq_len": 65'))
    storage.upload(tmp_path / "m", f"{base}/edited/manifest.json")
    with pytest.raises(ValueError, match=r"^s3://shards/edited/manifest\.json: checksum mismatch"):
        ShardSet(f"{base}/edited", cache=tmp_path)


def test_inspect_remote(remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["inspect", remote, "--rows", "1"])
    assert result.exit_code == 0, result.output
    assert remote in result.output and "checksums" in result.output and "OK" in result.output
    assert (tmp_path / "dataprep" / "shards" / "shards").is_dir()
    result = CliRunner().invoke(cli, ["inspect", "gs://bucket/x"])
    assert result.exit_code == 1
    assert result.output.startswith("error: gs://bucket/x: gs:// is not supported")


def test_trainer_runs_on_remote_shards(
    remote: str, local_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from train import train as trainer

    common = ["--model", "tiny", "--device", "cpu", "--micro-batch", "4", "--max-steps", "2",
              "--eval-every", "0", "--log-every", "1"]  # fmt: skip
    cache = tmp_path / "cache"
    code = trainer.main([*common, "--shards", remote, "--shard-cache", str(cache),
                         "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (cache / "shards" / remote.split("/")[-1] / "manifest.json").is_file()
    code = trainer.main([*common, "--shards", str(local_shards), "--shard-cache", str(cache),
                         "--out", str(tmp_path / "run2")])  # fmt: skip
    assert code == 1
    assert "--shard-cache: no --shards is an s3:// URL" in capsys.readouterr().err
