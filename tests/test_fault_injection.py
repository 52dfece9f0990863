"""Fault injection (issue 12): kill -9 at random moments, flipped bytes, a full disk, and random or
truncated input bytes, for every command. CI-sized; `bench/fault_injection.py` runs the same
faults many more times and writes the figures of RELIABILITY.md.

Random choices come from FAULT_SEED (printed in pytest's header; set it to reproduce a failure).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FAULT_SEED, flip
from faultkit import (
    COMMANDS,
    POLICIES,
    SAMPLE,
    TRAINER_ARGS,
    TRAINER_ENV,
    VALID,
    command,
    dataprep_cmd,
    digest_for,
    flip_byte,
    kill_trials,
    make_corpus,
    out_arg,
    read_or_refuse,
    run_with_fsize_limit,
    trainer_cmd,
    trainer_digest,
    tree_digest,
)
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import dataprep
from dataprep.cli import main

KILL_TRIALS = 3  # per command here; `make faults` runs 20


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """This test's random source: FAULT_SEED and the test's name."""
    return random.Random(f"{FAULT_SEED}-{request.node.name}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str]) -> Path:
    return make_corpus(tmp_path_factory.mktemp("fault-corpus"), demo_texts)


@pytest.mark.parametrize("name", COMMANDS)
def test_kill_9_at_random_moments_then_rerun_gives_identical_output(
    name: str,
    corpus: Path,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
    rng: random.Random,
    tmp_path: Path,
) -> None:
    args = command(name, corpus, specials_tokenizer[0])
    tally = kill_trials(
        name,
        lambda out: dataprep_cmd([*args, *out_arg(name, out), "--threads", "1"]),
        tmp_path,
        KILL_TRIALS,
        rng,
        FAULT_SEED,
        digest=digest_for(name),
    )
    assert tally.lost == 0 and tally.trials == KILL_TRIALS


def test_dedup_removes_the_temporaries_of_a_killed_run(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "dd"
    out.mkdir()
    # What a dedup killed while writing part0.jsonl leaves (found by the kill trials).
    (out / ".part0.jsonl.tmp-999999").write_text('{"text": "half a')
    args = [*command("dedup", corpus, Path()), "--threads", "1", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def clm_shards(
    tmp_path_factory: pytest.TempPathFactory,
    corpus: Path,
    specials_tokenizer: tuple[Path, dataprep.Tokenizer],
) -> Path:
    out = tmp_path_factory.mktemp("fault-shards") / "clm"
    dataprep.tokenize(
        corpus, specials_tokenizer[0], out, seq_len=64, val_fraction=0.05, shard_size="64KB"
    )
    return out


def test_kill_9_of_two_gloo_ranks_then_resume_gives_identical_final_state(
    clm_shards: Path, rng: random.Random, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    tally = kill_trials(
        "train (2 gloo ranks)",
        lambda out: trainer_cmd([*TRAINER_ARGS, "--shards", str(clm_shards), "--out", str(out)]),
        tmp_path,
        1,
        rng,
        FAULT_SEED,
        digest=trainer_digest,
        env=TRAINER_ENV,
    )
    assert tally.lost == 0


# --- flipped bytes ---------------------------------------------------------------------------


def inspect(d: Path) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["inspect", str(d), "--rows", "0"])
    return r.exit_code, r.output


def test_a_flipped_byte_in_a_shard_or_the_tokenizer_copy_is_named(
    clm_shards: Path, rng: random.Random, tmp_path: Path
) -> None:
    d = shutil.copytree(clm_shards, tmp_path / "shards")
    files = sorted(
        p for p in d.iterdir() if p.suffix in (".arrow", ".json") and p.name != "manifest.json"
    )
    for _ in range(20):
        victim = rng.choice(files)
        original = victim.read_bytes()
        offset = flip_byte(victim, rng)
        code, out = inspect(d)
        where = f"{victim.name} byte {offset} (FAULT_SEED={FAULT_SEED})"
        assert code == 1, where
        assert f"{victim}: checksum mismatch" in out.replace("\n", ""), (where, out)
        victim.write_bytes(original)
    assert inspect(d)[0] == 0


def manifest_offsets(raw: bytes, rng: random.Random, n: int) -> list[int]:
    """Random offsets in what the manifest's reader checks: the shards' and the tokenizer's
    SHA-256 values, and the field names (an unknown field is refused)."""
    text = raw.decode()
    spans = []
    doc = json.loads(text)
    hashes = [doc["tokenizer"]["sha256"]] + [
        s["sha256"] for sp in doc["splits"].values() for s in sp["shards"]
    ]
    for h in hashes:
        at = text.index(h)
        spans.append((at, at + len(h)))
    for key in ("schema_version", "splits", "shards", "sha256", "rows", "tokenizer"):
        at = text.index(f'"{key}"')
        spans.append((at + 1, at + 1 + len(key)))
    return [rng.randrange(*rng.choice(spans)) for _ in range(n)]


def test_a_flipped_byte_in_the_manifests_checksums_or_fields_is_detected(
    clm_shards: Path, rng: random.Random, tmp_path: Path
) -> None:
    d = shutil.copytree(clm_shards, tmp_path / "shards")
    manifest = d / "manifest.json"
    original = manifest.read_bytes()
    for offset in manifest_offsets(original, rng, 20):
        flip(manifest, offset=offset)
        code, out = inspect(d)
        assert code == 1, f"manifest byte {offset} (FAULT_SEED={FAULT_SEED})"
        assert str(d) in out.replace("\n", ""), out
        manifest.write_bytes(original)


@pytest.mark.parametrize("field", ['"config_hash": "', '"vocab_size": ', '"read": '])
def test_a_flipped_byte_in_an_unchecked_manifest_value_is_detected(
    clm_shards: Path, tmp_path: Path, field: str
) -> None:
    d = shutil.copytree(clm_shards, tmp_path / "shards")
    manifest = d / "manifest.json"
    flip(manifest, offset=manifest.read_bytes().index(field.encode()) + len(field))
    code, out = inspect(d)
    assert code == 1 and "manifest.json" in out


def test_the_trainer_refuses_a_flipped_shard_or_tokenizer_byte(
    clm_shards: Path, rng: random.Random, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from train import train as trainer

    d = shutil.copytree(clm_shards, tmp_path / "shards")
    victim = rng.choice(sorted(p for p in d.iterdir() if p.name != "manifest.json"))
    offset = flip_byte(victim, rng)
    code = trainer.main([*TRAINER_ARGS, "--shards", str(d), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and f"{victim.name}: checksum mismatch" in err, (victim, offset, err)
    assert "Traceback" not in err


def test_a_flipped_byte_in_a_checkpoint_is_named(rng: random.Random, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from train import checkpoint

    state = {"step": 1, "model": {"w": torch.arange(64, dtype=torch.float32)}, "data": {}}
    path = checkpoint.save(tmp_path, 1, state, {"step": 1, "data": {}}, keep_last=3)
    originals = {p: p.read_bytes() for p in (path / "state.pt", path / "meta.json")}
    for _ in range(30):
        victim = rng.choice(sorted(originals))
        offset = flip_byte(victim, rng)
        with pytest.raises(checkpoint.CorruptCheckpoint, match=victim.name) as e:
            checkpoint.load(path)
        assert str(path) in str(e.value), (victim, offset, e.value)
        victim.write_bytes(originals[victim])
    assert checkpoint.load(path)["step"] == 1


# --- a full disk: RLIMIT_FSIZE ---------------------------------------------------------------


def assert_one_line_error(proc: subprocess.CompletedProcess[str], under: Path) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0], proc.stderr
    assert f"error: {under}" in errors[0], errors[0]


def test_tokenize_out_of_space_keeps_finished_shards_and_resumes(
    corpus: Path, specials_tokenizer: tuple[Path, dataprep.Tokenizer], tmp_path: Path
) -> None:
    args = [*command("tokenize-clm", corpus, specials_tokenizer[0]), "--threads", "1"]
    ref = tmp_path / "ref"
    assert CliRunner().invoke(main, [*args, "--out", str(ref)]).exit_code == 0
    shards = sorted(ref.glob("train-*.arrow"))
    # The smallest limit past the tokenizer copy and the first shard: a later, larger shard fails.
    limit = max((ref / "tokenizer.json").stat().st_size, shards[0].stat().st_size) + 1
    assert any(p.stat().st_size > limit for p in shards[1:]), "no shard larger than the first"
    out = tmp_path / "out"
    proc = run_with_fsize_limit(dataprep_cmd([*args, "--out", str(out)]), limit)
    assert_one_line_error(proc, out)
    kept = tree_digest(out)
    want = tree_digest(ref)
    finished = [p for p in kept if p.endswith(".arrow") and not p.startswith(".")]
    assert finished and all(kept[p] == want[p] for p in finished), finished
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert tree_digest(out) == want


def test_train_bpe_out_of_space_keeps_the_previous_tokenizer(corpus: Path, tmp_path: Path) -> None:
    args = [*command("train-bpe", corpus, Path()), "--threads", "1"]
    out = tmp_path / "tok" / "tokenizer.json"
    assert CliRunner().invoke(main, [*args, "--out", str(out)]).exit_code == 0
    before = tree_digest(out.parent)
    assert len(before) == 3
    bigger = [*args, "--vocab-size", "900", "--out", str(out)]
    proc = run_with_fsize_limit(dataprep_cmd(bigger), out.stat().st_size // 2)
    assert_one_line_error(proc, out.parent)
    assert tree_digest(out.parent) == before
    # The next run writes the new set whole.
    assert CliRunner().invoke(main, bigger).exit_code == 0
    after = tree_digest(out.parent)
    assert len(after) == 3 and after != before


def test_dedup_out_of_space_keeps_the_previous_output(corpus: Path, tmp_path: Path) -> None:
    args = [*command("dedup", corpus, Path()), "--threads", "1"]
    out = tmp_path / "dd"
    assert CliRunner().invoke(main, [*args, "--out", str(out)]).exit_code == 0
    before = tree_digest(out)
    proc = run_with_fsize_limit(dataprep_cmd([*args, "--out", str(out)]), 100_000)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert tree_digest(out) == before


def test_dedup_out_of_space_names_the_output(corpus: Path, tmp_path: Path) -> None:
    args = [*command("dedup", corpus, Path()), "--threads", "1"]
    out = tmp_path / "dd"
    assert_one_line_error(
        run_with_fsize_limit(dataprep_cmd([*args, "--out", str(out)]), 100_000), out
    )


# --- readers: random and truncated bytes -----------------------------------------------------


def test_the_valid_samples_read(tmp_path: Path) -> None:
    """The samples the property tests cut and flip are read whole when intact."""
    for name, (raw, fmt) in VALID.items():
        (tmp_path / name).write_bytes(raw)
        unit = {"text_unit": "paragraph"} if fmt == "text" else {}
        docs, _ = dataprep.read_documents([str(tmp_path / name)], format=fmt, **unit)
        assert len(docs) == len(SAMPLE) * (2 if fmt == "text" else 1), name


PROPERTY = settings(
    max_examples=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


@seed(FAULT_SEED)
@PROPERTY
@given(
    name=st.sampled_from(sorted(VALID)),
    policy=st.sampled_from(POLICIES),
    raw=st.binary(max_size=2048),
)
def test_random_bytes_never_panic(name: str, policy: str, raw: bytes) -> None:
    read_or_refuse(name, raw, VALID[name][1], policy)


@seed(FAULT_SEED)
@PROPERTY
@given(
    name=st.sampled_from(sorted(VALID)),
    policy=st.sampled_from(POLICIES),
    cut=st.floats(0, 1, exclude_max=True),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=3),
)
def test_truncated_or_flipped_files_never_panic(
    name: str, policy: str, cut: float, flips: list[tuple[float, int]]
) -> None:
    valid, fmt = VALID[name]
    raw = bytearray(valid[: int(cut * len(valid))])
    for where, bit in flips:
        if raw:
            raw[int(where * len(raw))] ^= 1 << bit
    read_or_refuse(name, bytes(raw), fmt, policy)
