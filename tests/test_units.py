"""Work units (`_core.tokenize_plan`, `tokenize_unit`, `tokenize_assemble`): the read and encode
stages run on slices of the inputs, the shards built from the unit files. Whatever the slicing,
the output is byte-identical to the local engine's; a unit that was altered, made for another
run, missing or out of order is refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import flip

from dataprep import _core
from dataprep._core import DataprepError

OBJECTIVES: dict[str, dict[str, Any]] = {
    "clm": {},
    "mlm": {"objective": "mlm"},
    "nsp-static": {
        "objective": "mlm",
        "layout": "nsp",
        "static_masking": True,
        "nsp_block_docs": 4,
    },
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str]) -> list[str]:
    """The demo documents spread over 5 JSONL files."""
    d = tmp_path_factory.mktemp("units-corpus")
    paths = []
    for f in range(5):
        p = d / f"part-{f}.jsonl"
        p.write_text("".join(json.dumps({"text": t}) + "\n" for t in demo_texts[f::5]))
        paths.append(str(p))
    return paths


def outputs(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def options(corpus: list[str], tokenizer: Path, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    return dict(
        inputs=corpus,
        tokenizer=str(tokenizer),
        out=str(out),
        seq_len=64,
        val_fraction=0.1,
        shard_size="4KB",
        **extra,
    )


def make_units(opts: dict[str, Any], work: Path, sizes: list[int]) -> list[tuple[str, str]]:
    plan = json.loads(_core.tokenize_plan(**opts))
    inputs = [p for p, _ in plan["inputs"]]
    assert sum(sizes) == len(inputs)
    units, at = [], 0
    for i, n in enumerate(sizes):
        path = work / f"unit-{i:05d}.bin"
        rec = json.loads(
            _core.tokenize_unit(unit_files=inputs[at : at + n], unit_out=str(path), **opts)
        )
        assert rec["config_hash"] == plan["config_hash"]
        assert [p for p, _ in rec["files"]] == inputs[at : at + n]
        units.append((str(path), rec["sha256"]))
        at += n
    return units


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("sizes", [[5], [1, 1, 1, 1, 1], [2, 3]])
def test_units_give_the_local_engines_bytes(
    tmp_path: Path,
    corpus: list[str],
    specials_tokenizer: tuple[Path, Any],
    objective: str,
    sizes: list[int],
) -> None:
    tok = specials_tokenizer[0]
    local = tmp_path / "local"
    _core.tokenize(**options(corpus, tok, local, OBJECTIVES[objective]))
    opts = options(corpus, tok, tmp_path / "units", OBJECTIVES[objective])
    units = make_units(opts, tmp_path / "work", sizes)
    manifest = json.loads(_core.tokenize_assemble(units=units, **opts))
    assert len(manifest["splits"]["train"]["shards"]) >= 2, "the test should write several shards"
    assert outputs(tmp_path / "units") == outputs(local)


def test_assemble_again_returns_the_finished_output(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    opts = options(corpus, specials_tokenizer[0], tmp_path / "units", {})
    units = make_units(opts, tmp_path / "work", [2, 3])
    first = _core.tokenize_assemble(units=units, **opts)
    before = outputs(tmp_path / "units")
    assert _core.tokenize_assemble(units=units, **opts) == first
    assert outputs(tmp_path / "units") == before


def test_altered_unit_is_refused(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    opts = options(corpus, specials_tokenizer[0], tmp_path / "out", {})
    units = make_units(opts, tmp_path / "work", [2, 3])
    flip(Path(units[1][0]))
    with pytest.raises(DataprepError, match=r"unit-00001\.bin.*SHA-256 differs"):
        _core.tokenize_assemble(units=units, **opts)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_unit_of_another_run_is_refused(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    tok = specials_tokenizer[0]
    other = make_units(options(corpus, tok, tmp_path / "o", {"seed": 9}), tmp_path / "w1", [5])
    opts = options(corpus, tok, tmp_path / "out", {})
    with pytest.raises(DataprepError, match="made for other options"):
        _core.tokenize_assemble(units=other, **opts)
    assert not list((tmp_path / "out").glob("*.arrow"))


def test_units_must_cover_the_inputs_in_order(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    opts = options(corpus, specials_tokenizer[0], tmp_path / "out", {})
    units = make_units(opts, tmp_path / "work", [2, 3])
    with pytest.raises(
        ValueError, match=r"unit-00001\.bin: its files are not the run's inputs from input 0"
    ):
        _core.tokenize_assemble(units=units[::-1], **opts)
    assert not list((tmp_path / "out").glob("*.arrow"))  # refused before any of it was used
    with pytest.raises(ValueError, match="the 1 work units cover 2 input files, not the run's 5"):
        _core.tokenize_assemble(units=units[:1], **opts)
    assert not (tmp_path / "out" / "manifest.json").exists()
    # What the short run wrote is kept with its journal: the full set finishes it, same bytes.
    _core.tokenize_assemble(units=units, **opts)
    _core.tokenize(**options(corpus, specials_tokenizer[0], tmp_path / "local", {}))
    assert outputs(tmp_path / "out") == outputs(tmp_path / "local")


def test_units_are_pulled_as_the_shards_are_built(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    """A driver hands units over as they finish: the core pulls the next one only when it has
    used the ones before (so a slow unit is awaited, in order), and an error the driver raises
    ends the run with its message."""
    opts = options(corpus, specials_tokenizer[0], tmp_path / "out", {})
    units = make_units(opts, tmp_path / "work", [1, 1, 1, 1, 1])
    pulled: list[int] = []

    def driver(fail_at: int | None) -> Any:
        for i, u in enumerate(units):
            if i == fail_at:
                raise ValueError("unit 3 failed: s3://bucket/x.gz: corrupt input")
            pulled.append(i)
            yield u

    with pytest.raises(ValueError, match=r"^unit 3 failed: s3://bucket/x\.gz: corrupt input$"):
        _core.tokenize_assemble(units=driver(3), **opts)
    assert pulled == [0, 1, 2]
    pulled.clear()
    _core.tokenize_assemble(units=driver(None), **opts)
    assert pulled == [0, 1, 2, 3, 4]
    _core.tokenize(**options(corpus, specials_tokenizer[0], tmp_path / "local", {}))
    assert outputs(tmp_path / "out") == outputs(tmp_path / "local")


def test_unit_files_must_be_consecutive_inputs(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    opts = options(corpus, specials_tokenizer[0], tmp_path / "out", {})
    with pytest.raises(ValueError, match="not a run of consecutive inputs"):
        _core.tokenize_unit(unit_files=[corpus[0], corpus[2]], unit_out=str(tmp_path / "u"), **opts)
    outside = tmp_path / "other.txt"
    outside.write_text("not an input\n")
    with pytest.raises(ValueError, match="not a run of consecutive inputs"):
        _core.tokenize_unit(unit_files=[str(outside)], unit_out=str(tmp_path / "u"), **opts)


def test_dedup_with_units_is_refused(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    opts = options(corpus, specials_tokenizer[0], tmp_path / "out", {"dedup": "exact"})
    with pytest.raises(ValueError, match="--dedup is not supported with work units"):
        _core.tokenize_unit(unit_files=corpus[:1], unit_out=str(tmp_path / "u"), **opts)


def test_damaged_input_names_the_file(tmp_path: Path, specials_tokenizer: tuple[Path, Any]) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00broken")
    opts = options([str(bad)], specials_tokenizer[0], tmp_path / "out", {})
    with pytest.raises(DataprepError, match=r"bad\.jsonl\.gz"):
        _core.tokenize_unit(unit_files=[str(bad)], unit_out=str(tmp_path / "u"), **opts)
    assert not (tmp_path / "u").exists()


# train-bpe: pieces counted per unit, summed and merged on one machine.


def bpe_options(corpus: list[str], out: Path, holdout_every: int) -> dict[str, Any]:
    return dict(
        inputs=corpus,
        out=str(out),
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        holdout_every=holdout_every,
        tiktoken=True,
    )


def count_units(opts: dict[str, Any], work: Path, sizes: list[int]) -> list[tuple[str, str]]:
    inputs = [p for p, _ in json.loads(_core.train_bpe_plan(**opts))["inputs"]]
    units, at, first = [], 0, 0
    for i, n in enumerate(sizes):
        path = work / f"count-{i:05d}.bin"
        files = inputs[at : at + n]
        rec = json.loads(
            _core.train_bpe_unit(unit_files=files, first_index=first, unit_out=str(path), **opts)
        )
        assert rec["documents"] == _core.train_bpe_documents(unit_files=files, **opts)
        units.append((str(path), rec["sha256"]))
        at, first = at + n, first + rec["documents"]
    return units


@pytest.mark.parametrize("holdout_every", [0, 3])
@pytest.mark.parametrize("sizes", [[5], [1, 1, 1, 1, 1], [3, 2]])
def test_train_bpe_units_give_the_local_tokenizer(
    tmp_path: Path, corpus: list[str], holdout_every: int, sizes: list[int]
) -> None:
    _, local_stats = _core.train_bpe(
        **bpe_options(corpus, tmp_path / "l" / "tok.json", holdout_every)
    )
    opts = bpe_options(corpus, tmp_path / "u" / "tok.json", holdout_every)
    _, stats = _core.train_bpe_merge(units=count_units(opts, tmp_path / "w", sizes), **opts)
    assert outputs(tmp_path / "u") == outputs(tmp_path / "l")
    for key in ("documents", "unique_words", "merges", "holdout_documents", "holdout_tokens"):
        assert stats[key] == local_stats[key], key
    assert (stats["holdout_documents"] > 0) == (holdout_every > 0)


def test_train_bpe_unit_at_the_wrong_index_is_refused(tmp_path: Path, corpus: list[str]) -> None:
    opts = bpe_options(corpus, tmp_path / "tok.json", 3)
    inputs = [p for p, _ in json.loads(_core.train_bpe_plan(**opts))["inputs"]]
    units = []
    for i, files in enumerate([inputs[:2], inputs[2:]]):
        path = tmp_path / f"c{i}"
        rec = json.loads(
            _core.train_bpe_unit(unit_files=files, first_index=0, unit_out=str(path), **opts)
        )
        units.append((str(path), rec["sha256"]))
    with pytest.raises(
        DataprepError, match=r"c1: work unit was counted from document 0, but the units"
    ):
        _core.train_bpe_merge(units=units, **opts)
    assert not (tmp_path / "tok.json").exists()


def test_train_bpe_units_are_checked(tmp_path: Path, corpus: list[str]) -> None:
    opts = bpe_options(corpus, tmp_path / "tok.json", 0)
    units = count_units(opts, tmp_path / "w", [2, 3])
    with pytest.raises(ValueError, match="cover 2 input files, not the run's 5"):
        _core.train_bpe_merge(units=units[:1], **opts)
    other = count_units({**opts, "pattern": "cl100k"}, tmp_path / "w2", [5])
    with pytest.raises(DataprepError, match="made for other options"):
        _core.train_bpe_merge(units=other, **opts)
    # An altered unit is refused before it is read.
    flip(Path(units[0][0]))
    with pytest.raises(DataprepError, match="SHA-256 differs"):
        _core.train_bpe_merge(units=units, **opts)
    assert not (tmp_path / "tok.json").exists()


# Listings: the inputs as the Python layer lists remote objects, with staged local copies.


def listing_of(
    corpus: list[str], local: set[int] | None = None
) -> list[tuple[str, int, str | None]]:
    """The corpus files named as objects of a bucket; local copies for `local` (default all)."""
    return [
        (
            f"s3://bucket/corpus/{Path(p).name}",
            Path(p).stat().st_size,
            p if local is None or i in local else None,
        )
        for i, p in enumerate(corpus)
    ]


def test_listed_inputs_are_named_as_listed_and_units_read_only_their_copies(
    tmp_path: Path, corpus: list[str], specials_tokenizer: tuple[Path, Any]
) -> None:
    tok = specials_tokenizer[0]
    one = {**options(["s3://bucket/corpus"], tok, tmp_path / "one", {})}
    manifest = json.loads(_core.tokenize(listing=listing_of(corpus), **one))
    assert [i["path"] for i in manifest["inputs"]] == [n for n, _, _ in listing_of(corpus)]
    assert manifest["config"]["inputs"] == ["s3://bucket/corpus"]

    opts = options(["s3://bucket/corpus"], tok, tmp_path / "units", {})
    plan = json.loads(_core.tokenize_plan(listing=listing_of(corpus, set()), **opts))
    names = [n for n, _ in plan["inputs"]]
    units = []
    for i, (a, b) in enumerate([(0, 2), (2, 5)]):
        path = tmp_path / f"u{i}"
        rec = json.loads(
            _core.tokenize_unit(
                unit_files=names[a:b],
                unit_out=str(path),
                listing=listing_of(corpus, set(range(a, b))),
                **opts,
            )
        )
        units.append((str(path), rec["sha256"]))
    _core.tokenize_assemble(units=units, listing=listing_of(corpus, set()), **opts)
    assert outputs(tmp_path / "units") == outputs(tmp_path / "one")
    with pytest.raises(ValueError, match=r"part-2\.jsonl has no local copy"):
        _core.tokenize_unit(
            unit_files=names[2:3],
            unit_out=str(tmp_path / "x"),
            listing=listing_of(corpus, {0}),
            **opts,
        )


def test_listed_input_errors_name_the_object(
    tmp_path: Path, specials_tokenizer: tuple[Path, Any]
) -> None:
    bad = tmp_path / "stage" / "bad.jsonl.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"\x1f\x8b\x08\x00broken")
    opts = options(["s3://bucket/in"], specials_tokenizer[0], tmp_path / "out", {})
    listing = [("s3://bucket/in/bad.jsonl.gz", bad.stat().st_size, str(bad))]
    with pytest.raises(DataprepError, match=r"^s3://bucket/in/bad\.jsonl\.gz: "):
        _core.tokenize(listing=listing, **opts)
    with pytest.raises(
        DataprepError, match=r"s3://bucket/in/bad\.jsonl\.gz: local copy .* has \d+ bytes, not 1"
    ):
        _core.tokenize(listing=[(listing[0][0], 1, str(bad))], **opts)
