"""`s3://` inputs and outputs of `tokenize` and `train-bpe` (dataprep.remote) against a real
S3-compatible server (tests/s3server.py): remote prefixes are read in the order a local
directory is, outputs appear with their commit object last, and the bytes are the local run's
(the manifest names the objects it read)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from faultkit import dataprep_cmd
from s3server import S3Server

import dataprep
from dataprep import _core, remote, storage

FILES = {
    "a/b.jsonl": ["first file of a subdirectory"] * 3,
    "a-c.jsonl": ["a file whose name sorts before a/ as a string"] * 2,
    ".hidden/x.jsonl": ["never read"],
    "a/.skip.jsonl": ["never read either"],
    "z.jsonl": ["last"] * 4,
}


def _corpus(root: Path, demo_texts: list[str]) -> Path:
    for i, (name, texts) in enumerate(FILES.items()):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        docs = [
            f"{t} {k}. " + demo_texts[(i * 7 + k) % len(demo_texts)] for k, t in enumerate(texts)
        ]
        p.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return root


def _upload(root: Path, url: str) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            storage.upload(p, storage.join(url, p.relative_to(root).as_posix()))


@pytest.fixture
def corpus(s3_env: S3Server, tmp_path: Path, demo_texts: list[str]) -> tuple[Path, str]:
    local = _corpus(tmp_path / "corpus", demo_texts)
    url = f"{s3_env.bucket('remote-io')}/{tmp_path.name}/corpus"
    _upload(local, url)
    return local, url


def test_a_prefix_is_listed_in_the_order_a_directory_is_read(corpus: tuple[Path, str]) -> None:
    local, url = corpus
    listed = [(name.removeprefix(url + "/"), size) for name, size in remote.listing([url])]
    found = [
        (Path(p).relative_to(local).as_posix(), size) for p, size in _core.discover([str(local)])
    ]
    assert listed == found
    assert [n for n, _ in listed] == ["a/b.jsonl", "a-c.jsonl", "z.jsonl"]
    assert remote.listing([f"{url}/z.jsonl"]) == [(f"{url}/z.jsonl", found[-1][1])]
    with pytest.raises(dataprep.DataprepError, match=r"corpus/nothing: no such object"):
        remote.listing([f"{url}/nothing"])


def test_tokenize_and_train_bpe_from_and_to_object_storage(
    corpus: tuple[Path, str], tmp_path: Path, specials_tokenizer: tuple[Path, object]
) -> None:
    local, url = corpus
    tok = str(specials_tokenizer[0])
    out_url = f"{url.rsplit('/', 1)[0]}/shards"
    args = ["--tokenizer", tok, "--seq-len", "32", "--val-fraction", "0.2", "--shard-size", "2KB"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run(
        dataprep_cmd(["tokenize", url, *args, "--out", out_url]),
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    dataprep.tokenize(
        str(local), tok, tmp_path / "local", seq_len=32, val_fraction=0.2, shard_size="2KB"
    )
    names = [n for n, _ in storage.list_files(out_url)]
    assert names == sorted(
        p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith(".")
    )
    for name in names:
        if name.endswith(".arrow"):
            assert (
                storage.read_bytes(f"{out_url}/{name}") == (tmp_path / "local" / name).read_bytes()
            )
    manifest = json.loads(storage.read_bytes(f"{out_url}/manifest.json"))
    assert [i["path"] for i in manifest["inputs"]] == [n for n, _ in remote.listing([url])]
    # The staged copies are gone once the run succeeded; the shards read back as the local ones.
    assert not list((tmp_path / "cache" / "dataprep" / "inputs").rglob("*.jsonl"))
    remote_set = dataprep.ShardSet(out_url, cache=tmp_path / "shard-cache")
    local_set = dataprep.ShardSet(tmp_path / "local")
    assert len(remote_set) == len(local_set) > 0
    assert [remote_set.decode(i) for i in range(len(remote_set))] == [
        local_set.decode(i) for i in range(len(local_set))
    ]

    # train-bpe: the tokenizer files carry no input path, so they are the local run's bytes.
    tok_url = f"{out_url}-tok/tokenizer.json"
    run = subprocess.run(
        dataprep_cmd(["train-bpe", url, "--vocab-size", "300", "--tiktoken", "--out", tok_url]),
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    dataprep.train_bpe(str(local), 300, out=tmp_path / "tok" / "tokenizer.json", tiktoken=True)
    for name in ("tokenizer.json", "tokenizer.tiktoken", "tokenizer.tiktoken.json"):
        assert storage.read_bytes(f"{out_url}-tok/{name}") == (tmp_path / "tok" / name).read_bytes()


def test_a_tokenizer_in_object_storage_is_refused(corpus: tuple[Path, str], tmp_path: Path) -> None:
    _, url = corpus
    run = subprocess.run(
        dataprep_cmd(
            ["tokenize", url, "--tokenizer", f"{url}/tok.json", "--out", str(tmp_path / "o")]
        ),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].endswith("download it first"), run.stderr


def test_dedup_on_object_storage_is_refused(tmp_path: Path) -> None:
    """dedup reads and writes local paths only: an s3:// input or --out is one line naming it."""
    for args in (
        ["s3://bucket/corpus", "--out", str(tmp_path / "o")],
        [str(tmp_path), "--out", "s3://bucket/o"],
    ):
        run = subprocess.run(dataprep_cmd(["dedup", *args]), capture_output=True, text=True)
        assert run.returncode == 1
        assert run.stderr.strip().splitlines()[-1].startswith("error: s3://bucket/"), run.stderr
        assert "s3:// is not supported yet" in run.stderr
